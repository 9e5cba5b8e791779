package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestTagServing(t *testing.T) {
	tg := startGateway(t, nil)
	get := func(hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", tg.url+"/t.js", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		tr := &http.Transport{DisableCompression: true} // see the raw encodings
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, plain := get(nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || resp.Header.Get("Content-Encoding") != "" ||
		resp.Header.Get("Cache-Control") != "public, max-age=300" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("plain: %d %v", resp.StatusCode, resp.Header)
	}
	for _, want := range []string{"sendBeacon", "__tcfapi", "__gpp", "__uspapi", "globalPrivacyControl", "SHA-256", "ttclid", "EngagementTime", "VideoProgress"} {
		if !bytes.Contains(plain, []byte(want)) {
			t.Errorf("the minified tag lacks %q", want)
		}
	}
	if bytes.Contains(plain, []byte("never throw into the page")) {
		t.Error("the tag is not minified (comments remain)")
	}
	etag := resp.Header.Get("ETag")

	resp, gz := get(map[string]string{"Accept-Encoding": "gzip, deflate"})
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip: %v %v", err, resp.Header)
	}
	unz, _ := io.ReadAll(zr)
	if !bytes.Equal(unz, plain) {
		t.Fatal("gzip variant differs from the tag")
	}
	if len(gz) >= 6<<10 {
		t.Fatalf("the tag is %d bytes gzipped: the budget is under 6 KiB", len(gz))
	}
	t.Logf("tag: %d bytes minified, %d gzip", len(plain), len(gz))
	gzETag := resp.Header.Get("ETag")

	resp, br := get(map[string]string{"Accept-Encoding": "gzip, br;q=1.0"})
	unbr, err := fasthttp.AppendUnbrotliBytes(nil, br)
	if err != nil || resp.Header.Get("Content-Encoding") != "br" || !bytes.Equal(unbr, plain) {
		t.Fatalf("br: %v %v", err, resp.Header)
	}
	if len(br) > len(gz) {
		t.Errorf("brotli (%d) larger than gzip (%d)", len(br), len(gz))
	}
	if etag == gzETag || etag == resp.Header.Get("ETag") || !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
		t.Fatalf("etags must be strong and differ by encoding: %s %s %s", etag, gzETag, resp.Header.Get("ETag"))
	}
	// br refused with q=0 falls back to gzip.
	if resp, _ := get(map[string]string{"Accept-Encoding": "br;q=0, gzip"}); resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("br;q=0: %s", resp.Header.Get("Content-Encoding"))
	}
	// Revalidation.
	if resp, body := get(map[string]string{"If-None-Match": etag}); resp.StatusCode != 304 || len(body) != 0 {
		t.Fatalf("304: %d %d", resp.StatusCode, len(body))
	}
	if resp, _ := get(map[string]string{"If-None-Match": `"other"`}); resp.StatusCode != 200 {
		t.Fatalf("stale etag: %d", resp.StatusCode)
	}
	if resp, _ := get(map[string]string{"Accept-Encoding": "gzip", "If-None-Match": etag}); resp.StatusCode != 200 {
		t.Fatal("the identity ETag validated the gzip variant")
	}
	req, _ := http.NewRequest("POST", tg.url+"/t.js", nil)
	if resp, _ := tg.do(t, req); resp.StatusCode != 405 {
		t.Fatalf("POST /t.js: %d", resp.StatusCode)
	}
}

func TestAcceptsEncoding(t *testing.T) {
	for ae, want := range map[string]bool{"br": true, "gzip, br": true, "BR;q=0.5": true, "br;q=0": false, "br;q=0.0": false, "br;q=x": false, "gzip": false, "": false, "xbr": false} {
		if got := acceptsEncoding([]byte(ae), "br"); got != want {
			t.Errorf("acceptsEncoding(%q, br) = %v", ae, got)
		}
	}
}

// A site mounts its tag, batch and pixel under a prefix of its own, with
// names blockers do not list; its tag posts to its own batch path.
func TestSitePaths(t *testing.T) {
	tg := startGateway(t, func(c *Config) {
		c.Sites[0].Paths = SitePaths{Prefix: "/a7f3", Tag: "s.js", Batch: "c", Pixel: "i.gif"}
	})
	resp, err := http.Get(tg.url + "/a7f3/s.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"/a7f3/c"`)) || bytes.Contains(body, []byte("__TW_BATCH_PATH__")) {
		t.Fatalf("site tag: %d, batch path baked in: %v", resp.StatusCode, bytes.Contains(body, []byte(`"/a7f3/c"`)))
	}
	// The default tag posts to /e.
	resp, _ = http.Get(tg.url + "/t.js")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(`"/e"`)) {
		t.Fatal("the default tag does not post to /e")
	}
	req, _ := http.NewRequest("POST", tg.url+"/a7f3/c", strings.NewReader(`{"site":"shop","data":[{"event":"PageView"}]}`))
	req.Header.Set("Content-Type", "text/plain")
	if resp, a := tg.do(t, req); resp.StatusCode != 200 || a.Accepted != 1 {
		t.Fatalf("site batch path: %d %+v", resp.StatusCode, a)
	}
	resp, _ = http.Get(tg.url + "/a7f3/i.gif?site=shop&event=PageView")
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("site pixel path: %d", resp.StatusCode)
	}
	if envs, _ := tg.envelopes(t); len(envs) != 2 {
		t.Fatalf("%d events", len(envs))
	}
}

func TestSitePathsConfig(t *testing.T) {
	for _, tc := range []struct {
		p    SitePaths
		want string
	}{
		{SitePaths{Prefix: "/track"}, `contains "track"`},
		{SitePaths{Prefix: "/a7f3", Batch: "collect"}, `contains "collect"`},
		{SitePaths{Prefix: "/a7f3", Pixel: "pixel.gif"}, `contains "pixel"`},
		{SitePaths{Prefix: "a7f3"}, "paths.prefix"},
		{SitePaths{Prefix: "/a7f3", Tag: "../t.js"}, "plain path"},
		{SitePaths{Prefix: "/", Tag: "x.js"}, "paths.prefix"},
	} {
		c := Config{Sites: []Site{{ID: "shop", Paths: tc.p}}}
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.p, err, tc.want)
		}
	}
	c := Config{Sites: []Site{{ID: "a", Paths: SitePaths{Prefix: "/x"}}, {ID: "b", Paths: SitePaths{Prefix: "/x"}}}}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "already served") {
		t.Errorf("two sites on one path: %v", err)
	}
}
