package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/units"
)

// upstream is a local stand-in for a vendor's CDN.
type upstream struct {
	srv      *httptest.Server
	hits     atomic.Int64
	down     atomic.Bool
	body     atomic.Value // string
	lastPath atomic.Value // string: path?query of the last request
	lastHdr  atomic.Value // http.Header
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.body.Store("console.log('vendor v1')")
	mux := http.NewServeMux()
	mux.HandleFunc("/events.js", func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.lastPath.Store(r.URL.RequestURI())
		u.lastHdr.Store(r.Header.Clone())
		if u.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		body := u.body.Load().(string)
		etag := `"v-` + body[len(body)-4:] + `"`
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = io.WriteString(w, body)
	})
	mux.HandleFunc("/big.js", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 2000))
	})
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	return u
}

func startProxyGateway(t *testing.T, routes []ProxyRoute, c *clock) *testGW {
	t.Helper()
	tg := startGateway(t, nil)
	_ = tg.g.Shutdown(t.Context())
	cfg := tg.g.cfg
	cfg.Proxy = routes
	reg := prometheus.NewRegistry()
	g, err := New(cfg, Deps{Publisher: bustest.OpenEmbedded(t), Registry: reg, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(t.Context()) })
	return &testGW{g: g, url: "http://" + g.Addr().String(), reg: reg}
}

// rawGet sends a request line exactly as given (Go's client would clean it).
func rawGet(t *testing.T, base, target string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + strings.Join(hdr, "\r\n")
	if len(hdr) > 0 {
		req += "\r\n"
	}
	_, _ = io.WriteString(conn, req+"\r\n")
	resp, err := http.ReadResponse(bufioReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestTagProxy(t *testing.T) {
	up := newUpstream(t)
	c := &clock{}
	c.ms.Store(testNow.UnixMilli())
	tg := startProxyGateway(t, []ProxyRoute{
		{Path: "/v/tt.js", Upstream: up.srv.URL + "/events.js", TTL: units.Duration(time.Hour), Stale: units.Duration(2 * time.Hour)},
		{Path: "/v/big.js", Upstream: up.srv.URL + "/big.js", MaxBytes: 1000},
	}, c)

	// Miss, then hit: the upstream is fetched once.
	code, h, body := rawGet(t, tg.url, "/v/tt.js")
	if code != 200 || body != "console.log('vendor v1')" || h.Get("X-Tagway-Cache") != "miss" || h.Get("Content-Type") != "text/javascript" {
		t.Fatalf("first: %d %v %q", code, h, body)
	}
	etag := h.Get("ETag")
	code, h, _ = rawGet(t, tg.url, "/v/tt.js?u=https://evil.example/x.js", "Cookie: _tw_id=secret")
	if code != 200 || h.Get("X-Tagway-Cache") != "hit" || up.hits.Load() != 1 {
		t.Fatalf("second: %d %s hits %d", code, h.Get("X-Tagway-Cache"), up.hits.Load())
	}
	if code, _, _ := rawGet(t, tg.url, "/v/tt.js", "If-None-Match: "+etag); code != 304 {
		t.Fatalf("If-None-Match: %d", code)
	}

	// Only the configured path, exactly: tricks are not routed to the proxy.
	for _, target := range []string{"/v/tt.js/", "/v//tt.js", "/v/./tt.js", "/v/x/../tt.js", "/v%2Ftt.js", "/v/tt%2Ejs", "/V/tt.js", "/v/tt.js%00", "//evil.example/v/tt.js"} {
		code, h, _ := rawGet(t, tg.url, target)
		if code == 200 || h.Get("X-Tagway-Cache") != "" {
			t.Errorf("%s: %d %s: routed to the proxy", target, code, h.Get("X-Tagway-Cache"))
		}
	}
	if up.hits.Load() != 1 {
		t.Fatalf("tricks reached the upstream: %d hits", up.hits.Load())
	}
	// An absolute-form target names another host, but only the path is
	// routed and the configured upstream is all that is ever fetched.
	if code, h, body := rawGet(t, tg.url, "http://evil.example/v/tt.js"); code != 200 || h.Get("X-Tagway-Cache") != "hit" || body != "console.log('vendor v1')" {
		t.Fatalf("absolute-form target: %d %s", code, h.Get("X-Tagway-Cache"))
	}

	// Expired: revalidated with the upstream's validator (304 upstream).
	c.advance(61 * time.Minute)
	code, h, body = rawGet(t, tg.url, "/v/tt.js", "Cookie: _tw_id=secret", "Authorization: Bearer x")
	if code != 200 || h.Get("X-Tagway-Cache") != "revalidated" || body != "console.log('vendor v1')" {
		t.Fatalf("revalidate: %d %s", code, h.Get("X-Tagway-Cache"))
	}
	if got := up.lastPath.Load().(string); got != "/events.js" {
		t.Fatalf("upstream asked for %q: the query must never be forwarded", got)
	}
	if hdr := up.lastHdr.Load().(http.Header); hdr.Get("Cookie") != "" || hdr.Get("Authorization") != "" || hdr.Get("If-None-Match") == "" {
		t.Fatalf("upstream headers: %v", hdr)
	}

	// Upstream down past the TTL: stale within the bound, then an error.
	up.down.Store(true)
	c.advance(61 * time.Minute)
	if code, h, body := rawGet(t, tg.url, "/v/tt.js"); code != 200 || h.Get("X-Tagway-Cache") != "stale" || body == "" {
		t.Fatalf("stale: %d %s", code, h.Get("X-Tagway-Cache"))
	}
	c.advance(3 * time.Hour)
	if code, _, _ := rawGet(t, tg.url, "/v/tt.js"); code != 502 {
		t.Fatalf("past the stale bound: %d", code)
	}
	// Back up with new content: a fresh miss.
	up.down.Store(false)
	up.body.Store("console.log('vendor v2')")
	if code, h, body := rawGet(t, tg.url, "/v/tt.js"); code != 200 || body != "console.log('vendor v2')" || h.Get("X-Tagway-Cache") != "miss" {
		t.Fatalf("recovered: %d %s %q", code, h.Get("X-Tagway-Cache"), body)
	}

	// Size cap.
	if code, _, _ := rawGet(t, tg.url, "/v/big.js"); code != 502 {
		t.Fatalf("oversize upstream: %d", code)
	}
	if got := tg.counter(t, "tagway_proxy_requests_total", map[string]string{"result": "stale"}); got != 1 {
		t.Errorf("stale counted %v", got)
	}
}

// A redirect, even to a URL that looks harmless, is refused: the other host
// is never contacted.
func TestTagProxyRefusesRedirects(t *testing.T) {
	var otherHits atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { otherHits.Add(1) }))
	defer other.Close()
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/x.js", http.StatusFound)
	}))
	defer redir.Close()
	c := &clock{}
	c.ms.Store(testNow.UnixMilli())
	tg := startProxyGateway(t, []ProxyRoute{{Path: "/v/r.js", Upstream: redir.URL + "/r.js"}}, c)
	if code, _, _ := rawGet(t, tg.url, "/v/r.js"); code != 502 || otherHits.Load() != 0 {
		t.Fatalf("redirect: %d, other host hit %d times", code, otherHits.Load())
	}
}

func TestProxyConfig(t *testing.T) {
	for _, tc := range []struct {
		r    ProxyRoute
		want string
	}{
		{ProxyRoute{Path: "v/x.js", Upstream: "https://a.example/x.js"}, "proxy[0].path"},
		{ProxyRoute{Path: "/v/../x.js", Upstream: "https://a.example/x.js"}, "proxy[0].path"},
		{ProxyRoute{Path: "/v/%2e.js", Upstream: "https://a.example/x.js"}, "proxy[0].path"},
		{ProxyRoute{Path: "/e", Upstream: "https://a.example/x.js"}, "already served"},
		{ProxyRoute{Path: "/v/x.js", Upstream: "ftp://a.example/x.js"}, "proxy[0].upstream"},
		{ProxyRoute{Path: "/v/x.js", Upstream: "https://user:pw@a.example/x.js"}, "proxy[0].upstream"},
		{ProxyRoute{Path: "/v/x.js", Upstream: "/x.js"}, "proxy[0].upstream"},
	} {
		c := Config{Proxy: []ProxyRoute{tc.r}}
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.r, err, tc.want)
		}
	}
}
