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
