package gateway

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/tagway/tagway/gateway/tag"
)

// serveTag answers GET /t.js: the minified tag, br or gzip by
// Accept-Encoding (precompressed at start-up), a strong ETag per encoding,
// 304 on If-None-Match, a cache lifetime of five minutes.
func (g *Gateway) serveTag(ctx *fasthttp.RequestCtx, rid string) { g.serveTagAsset(ctx, rid, g.tag) }

// serveTagAsset serves one tag variant.
func (g *Gateway) serveTagAsset(ctx *fasthttp.RequestCtx, rid string, a *tag.Asset) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		g.refuse(ctx, routeTag, rid, reqErr(reasonMethodNotAllowed, "", "use GET"))
		return
	}
	body, enc, etag := a.JS, "", a.ETag
	ae := ctx.Request.Header.Peek("Accept-Encoding")
	switch {
	case acceptsEncoding(ae, "br"):
		body, enc, etag = a.Brotli, "br", a.ETag[:len(a.ETag)-1]+`-br"`
	case acceptsEncoding(ae, "gzip"):
		body, enc, etag = a.Gzip, "gzip", a.ETag[:len(a.ETag)-1]+`-gz"`
	}
	h := &ctx.Response.Header
	h.Set("Vary", "Accept-Encoding")
	h.Set("ETag", etag)
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 && etagMatches(inm, etag) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetContentType("text/javascript; charset=utf-8")
	if enc != "" {
		h.Set("Content-Encoding", enc)
	}
	if ctx.IsHead() {
		h.SetContentLength(len(body))
		ctx.Response.SkipBody = true
		return
	}
	ctx.SetBody(body)
}

// acceptsEncoding reports whether an Accept-Encoding value allows enc: it
// is listed with no q-value, or with one above zero.
func acceptsEncoding(ae []byte, enc string) bool {
	for _, part := range strings.Split(string(ae), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), enc) {
			continue
		}
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return false
				}
				q = f
			}
		}
		return q > 0
	}
	return false
}

// etagMatches reports whether an If-None-Match list names etag (or is *).
func etagMatches(inm []byte, etag string) bool {
	for _, t := range bytes.Split(inm, []byte(",")) {
		t = bytes.TrimSpace(t)
		if string(t) == "*" || string(t) == etag || string(bytes.TrimPrefix(t, []byte("W/"))) == etag {
			return true
		}
	}
	return false
}
