package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/tagway/tagway/gateway/units"
)

// ProxyRoute serves one third-party script through the gateway's first-party
// origin. Only the configured upstream URL is ever fetched: the request's
// path must equal Path exactly (no prefixes, dot segments or encodings), its
// query and headers are never forwarded, and upstream redirects are refused.
type ProxyRoute struct {
	// Path is the public path, e.g. /v/tt.js.
	Path string `yaml:"path"`
	// Upstream is the one URL fetched for it (http or https).
	Upstream string `yaml:"upstream"`
	// TTL is how long a fetched copy is served before it is revalidated.
	// Default 1h.
	TTL units.Duration `yaml:"ttl"`
	// Stale is how long past its TTL a copy may still be served while the
	// upstream fails. Default 24h.
	Stale units.Duration `yaml:"stale"`
	// MaxBytes caps the upstream response. Default 2MiB.
	MaxBytes units.ByteSize `yaml:"max_bytes"`
}

func (r *ProxyRoute) setDefaults() {
	if r.TTL == 0 {
		r.TTL = units.Duration(time.Hour)
	}
	if r.Stale == 0 {
		r.Stale = units.Duration(24 * time.Hour)
	}
	if r.MaxBytes == 0 {
		r.MaxBytes = 2 << 20
	}
}

func (r *ProxyRoute) validate(key string, reserved map[string]bool) error {
	switch {
	case !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "%?#\\ ") || strings.Contains(r.Path, "//") ||
		strings.Contains(r.Path, "/./") || strings.Contains(r.Path, "/../") || strings.HasSuffix(r.Path, "/..") || strings.HasSuffix(r.Path, "/."):
		return fmt.Errorf("%s.path: %q must be a plain absolute path such as /v/tt.js", key, r.Path)
	case reserved[r.Path]:
		return fmt.Errorf("%s.path: %q is already served", key, r.Path)
	}
	u, err := url.Parse(r.Upstream)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%s.upstream: %q must be an absolute http(s) URL without credentials", key, r.Upstream)
	}
	if r.TTL.D() < time.Second || r.Stale.D() < 0 || r.MaxBytes < 1 || r.MaxBytes > 64<<20 {
		return fmt.Errorf("%s: ttl must be at least 1s, stale not negative, max_bytes between 1 and 64MiB", key)
	}
	return nil
}

// proxyEntry is a cached upstream response.
type proxyEntry struct {
	body         []byte
	contentType  string
	etag         string // ours: a hash of the body
	upstreamETag string
	lastModified string
	fetched      time.Time
}

// tagProxy serves the configured routes. Safe for concurrent use.
type tagProxy struct {
	routes map[string]*ProxyRoute
	cache  *lru.Cache[string, *proxyEntry]
	client *http.Client
	now    func() time.Time
	mu     map[string]*sync.Mutex // one fetch at a time per route
	m      *prometheus.CounterVec // result
}

// Errors of the upstream fetch (logged, counted; the client gets 502).
var (
	errProxyRedirect = errors.New("proxy: upstream redirected (refused)")
	errProxyTooLarge = errors.New("proxy: upstream response too large")
)

func newTagProxy(routes []ProxyRoute, now func() time.Time, reg prometheus.Registerer) *tagProxy {
	p := &tagProxy{routes: map[string]*ProxyRoute{}, now: now, mu: map[string]*sync.Mutex{}}
	for i := range routes {
		p.routes[routes[i].Path] = &routes[i]
		p.mu[routes[i].Path] = &sync.Mutex{}
	}
	p.cache, _ = lru.New[string, *proxyEntry](max(len(routes), 1))
	p.client = &http.Client{
		Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errProxyRedirect
		},
	}
	p.m = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tagway_proxy_requests_total", Help: "Tag proxy requests by result: hit, miss, revalidated, stale, error.",
	}, []string{"result"})
	reg.MustRegister(p.m)
	for _, r := range []string{"hit", "miss", "revalidated", "stale", "error"} {
		p.m.WithLabelValues(r)
	}
	return p
}

// route finds the route for a request by its raw (undecoded, unnormalised)
// path, so encoded slashes and dot segments never match.
func (p *tagProxy) route(ctx *fasthttp.RequestCtx) *ProxyRoute {
	if len(p.routes) == 0 {
		return nil
	}
	return p.routes[string(ctx.Request.URI().PathOriginal())]
}

// serve answers a proxied route from the cache or the upstream and returns
// the result (hit, miss, revalidated, stale, error) and any upstream error.
func (p *tagProxy) serve(ctx *fasthttp.RequestCtx, r *ProxyRoute) (string, error) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return "error", nil
	}
	e, result, err := p.get(r)
	p.m.WithLabelValues(result).Inc()
	if e == nil {
		ctx.SetStatusCode(fasthttp.StatusBadGateway)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("upstream unavailable\n")
		return result, err
	}
	h := &ctx.Response.Header
	h.Set("ETag", e.etag)
	h.Set("X-Tagway-Cache", result)
	left := r.TTL.D() - p.now().Sub(e.fetched)
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", max(int(min(left, 5*time.Minute)/time.Second), 0)))
	if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 && string(inm) == e.etag {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return result, err
	}
	ctx.SetContentType(e.contentType)
	if !ctx.IsHead() {
		ctx.SetBody(e.body)
	}
	return result, err
}

// get returns the entry to serve, how it was obtained, and the upstream
// error if one occurred (with a stale entry, or none).
func (p *tagProxy) get(r *ProxyRoute) (*proxyEntry, string, error) {
	now := p.now()
	if e, ok := p.cache.Get(r.Path); ok && now.Sub(e.fetched) < r.TTL.D() {
		return e, "hit", nil
	}
	mu := p.mu[r.Path]
	mu.Lock()
	defer mu.Unlock()
	old, _ := p.cache.Get(r.Path)
	if old != nil && now.Sub(old.fetched) < r.TTL.D() { // fetched while we waited
		return old, "hit", nil
	}
	e, revalidated, err := p.fetch(r, old)
	switch {
	case err == nil && revalidated:
		return e, "revalidated", nil
	case err == nil:
		return e, "miss", nil
	case old != nil && now.Sub(old.fetched) < r.TTL.D()+r.Stale.D():
		return old, "stale", err
	}
	return nil, "error", err
}

// fetch gets the upstream, revalidating old when it has validators; on 304
// it returns old's content with a new fetch time and revalidated true.
func (p *tagProxy) fetch(r *ProxyRoute, old *proxyEntry) (*proxyEntry, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Upstream, nil)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("User-Agent", "tagway-proxy")
	if old != nil {
		if old.upstreamETag != "" {
			req.Header.Set("If-None-Match", old.upstreamETag)
		}
		if old.lastModified != "" {
			req.Header.Set("If-Modified-Since", old.lastModified)
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, errProxyRedirect) {
			return nil, false, errProxyRedirect
		}
		return nil, false, fmt.Errorf("proxy: upstream: %w", err)
	}
	defer resp.Body.Close()
	now := p.now()
	if resp.StatusCode == http.StatusNotModified && old != nil {
		fresh := *old // entries are immutable once cached
		fresh.fetched = now
		p.cache.Add(r.Path, &fresh)
		return &fresh, true, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("proxy: upstream answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(r.MaxBytes)+1))
	if err != nil {
		return nil, false, fmt.Errorf("proxy: reading upstream: %w", err)
	}
	if len(body) > int(r.MaxBytes) {
		return nil, false, errProxyTooLarge
	}
	sum := sha256.Sum256(body)
	e := &proxyEntry{body: body, contentType: resp.Header.Get("Content-Type"), etag: `"` + hex.EncodeToString(sum[:12]) + `"`,
		upstreamETag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified"), fetched: now}
	if e.contentType == "" {
		e.contentType = "application/octet-stream"
	}
	p.cache.Add(r.Path, e)
	return e, false, nil
}
