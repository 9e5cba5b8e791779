package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/netip"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/gateway/event"
)

// ---- POST /e ---------------------------------------------------------------

func (g *Gateway) serveBrowser(ctx *fasthttp.RequestCtx, rid string) {
	if ctx.IsOptions() {
		g.preflight(ctx, rid)
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST, OPTIONS")
		g.refuse(ctx, routeBrowser, rid, reqErr(reasonMethodNotAllowed, "", "use POST"))
		return
	}
	// sendBeacon with a string body sends text/plain; fetch sends JSON.
	if len(ctx.Request.Header.ContentType()) > 0 && !mediaType(ctx, "application/json", "text/plain") {
		g.refuse(ctx, routeBrowser, rid, reqErr(reasonUnsupportedMedia, "Content-Type", "Content-Type must be application/json or text/plain"))
		return
	}
	now := g.now()
	ip := g.clientIP(ctx)
	if !g.ipLim.allow(ip.String(), *g.cfg.Limits.IPRate, now) {
		g.refuse(ctx, routeBrowser, rid, reqErr(reasonRateLimited, "", "too many requests from this address"))
		return
	}
	body, rerr := g.body(ctx, int(g.cfg.Limits.BrowserBody), false)
	if rerr != nil {
		g.refuse(ctx, routeBrowser, rid, rerr)
		return
	}
	var b batchIn
	if rerr := parseBatch(body, &b); rerr != nil {
		g.refuse(ctx, routeBrowser, rid, rerr)
		return
	}
	site := g.cfg.site(b.Site)
	if site == nil {
		g.refuse(ctx, routeBrowser, rid, reqErr(reasonUnknownSite, "site", "site: unknown site id"))
		return
	}
	if !g.cors(ctx, site) {
		g.refuse(ctx, routeBrowser, rid, reqErr(reasonOriginNotAllowed, "Origin", "this origin may not send events for this site"))
		return
	}
	if rerr := g.checkCount(len(b.Data), g.cfg.Limits.BrowserEvents); rerr != nil {
		g.refuse(ctx, routeBrowser, rid, rerr)
		return
	}
	if f, m := checkBatchConsent(b.Consent); f != "" {
		g.refuse(ctx, routeBrowser, rid, reqErr(reasonInvalidField, f, f+": "+m))
		return
	}
	ri := g.browserInfo(ctx, site, &b, ip.String(), now)
	ans, status := g.process(context.Background(), routeBrowser, ri, len(b.Data), g.rawDecoder(b.Data))
	ans.RequestID = rid
	if status == 503 {
		ctx.Response.Header.Set("Retry-After", "2")
	}
	writeJSON(ctx, status, &ans)
}

func (g *Gateway) browserInfo(ctx *fasthttp.RequestCtx, site *Site, b *batchIn, ip string, now time.Time) *reqInfo {
	fromBody := ""
	if b.User != nil {
		fromBody = b.User.AnonID
	}
	return &reqInfo{
		source:    event.SourceBrowser,
		site:      site.ID,
		now:       now,
		anonID:    g.anonID(ctx, site, fromBody),
		ip:        event.TruncateIP(ip),
		userAgent: clip(string(ctx.Request.Header.UserAgent()), 512),
		gpcHeader: bytes.Equal(ctx.Request.Header.Peek("Sec-GPC"), []byte("1")),
		user:      b.User,
		consent:   b.Consent,
		geo:       g.geoOf(ctx, ip),
	}
}

// geoOf is the trusted header's geo, else the database's for the client IP
// (the full address, still only in memory).
func (g *Gateway) geoOf(ctx *fasthttp.RequestCtx, ip string) consent.Geo {
	geo := g.geo(ctx)
	if geo.Country == "" && g.geoDB != nil {
		if a, err := netip.ParseAddr(ip); err == nil {
			if found, err := g.geoDB.Lookup(a); err == nil {
				geo = found
			}
		}
	}
	return geo
}

// cors checks the Origin of a browser batch against the site and sets the
// CORS answer headers. A request without Origin (not from a browser page) is
// let through; the tag served first-party is same-origin.
func (g *Gateway) cors(ctx *fasthttp.RequestCtx, site *Site) bool {
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return true
	}
	if !originAllowed(site.Origins, origin, ctx.Host()) {
		return false
	}
	h := &ctx.Response.Header
	h.SetBytesV("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
	return true
}

func originAllowed(allowed []string, origin, host []byte) bool {
	o := strings.ToLower(string(origin))
	for _, a := range allowed {
		if a == "*" || a == o {
			return true
		}
	}
	// Same origin: the page and the gateway share a host.
	if i := strings.Index(o, "://"); i >= 0 && strings.EqualFold(o[i+3:], string(host)) {
		return true
	}
	return false
}

// preflight answers a CORS preflight for POST /e. The site is not known yet
// (it is in the body), so the origin must be allowed by some site.
func (g *Gateway) preflight(ctx *fasthttp.RequestCtx, rid string) {
	origin := ctx.Request.Header.Peek("Origin")
	ok := len(origin) > 0 && (g.anyOrigin || g.origins[strings.ToLower(string(origin))] || originAllowed(nil, origin, ctx.Host()))
	if !ok {
		g.refuse(ctx, routeBrowser, rid, reqErr(reasonOriginNotAllowed, "Origin", "this origin may not send events"))
		return
	}
	h := &ctx.Response.Header
	h.SetBytesV("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	h.Add("Vary", "Origin")
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// ---- GET /p.gif ------------------------------------------------------------

// transparentGIF is a 1×1 transparent GIF (43 bytes).
var transparentGIF = []byte{
	0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
	0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
}

// servePixel records one event from the query string:
//
//	/p.gif?site=demo&event=PageView&event_id=…&ts=…&url=…&referrer=…
//	      &value=9.5&currency=USD&content_id=sku-1&content_type=product
//	      &tcf=…&gpp=…&gpp_sid=7,8&usp=1YNN&gpc=1&p.color=red
//
// "p.<name>" adds a custom string property. It always answers the GIF; the
// status and an X-Tagway-Error header say whether the event was stored.
func (g *Gateway) servePixel(ctx *fasthttp.RequestCtx, rid string) {
	defer func() {
		ctx.SetContentType("image/gif")
		ctx.Response.Header.Set("Cache-Control", "no-store, max-age=0")
		ctx.SetBody(transparentGIF)
	}()
	refuse := func(e *requestError) {
		g.refuse(ctx, routePixel, rid, e)
		ctx.Response.Header.Set("X-Tagway-Error", e.reason.String())
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		refuse(reqErr(reasonMethodNotAllowed, "", "use GET"))
		return
	}
	if ctx.IsHead() {
		return // headers only; a HEAD records nothing
	}
	now := g.now()
	ip := g.clientIP(ctx)
	if !g.ipLim.allow(ip.String(), *g.cfg.Limits.IPRate, now) {
		refuse(reqErr(reasonRateLimited, "", "too many requests from this address"))
		return
	}
	q := ctx.QueryArgs()
	site := g.cfg.site(string(q.Peek("site")))
	if site == nil {
		refuse(reqErr(reasonUnknownSite, "site", "site: unknown site id"))
		return
	}
	ev, c, field, msg := pixelEvent(q, ctx.Request.Header.Referer())
	if msg != "" {
		refuse(reqErr(reasonInvalidField, field, field+": "+msg))
		return
	}
	b := batchIn{Site: site.ID, Consent: c}
	if f, m := checkBatchConsent(c); f != "" {
		refuse(reqErr(reasonInvalidField, f, f+": "+m))
		return
	}
	ri := g.browserInfo(ctx, site, &b, ip.String(), now)
	ans, status := g.process(context.Background(), routePixel, ri, 1, func(_ int, out *eventIn) (string, string, reason) {
		*out = ev
		return "", "", reasonNone
	})
	ctx.SetStatusCode(status)
	if len(ans.Errors) > 0 {
		ctx.Response.Header.Set("X-Tagway-Error", ans.Errors[0].Field+": "+ans.Errors[0].Message)
	}
	if status == 503 {
		ctx.Response.Header.Set("Retry-After", "2")
	}
}

// pixelEvent builds an event from pixel query arguments.
func pixelEvent(q *fasthttp.Args, referer []byte) (ev eventIn, c *consentIn, field, msg string) {
	str := func(k string) *string {
		if !q.Has(k) {
			return nil
		}
		s := string(q.Peek(k))
		return &s
	}
	ev.Event = string(q.Peek("event"))
	ev.EventID = str("event_id")
	if ts := str("ts"); ts != nil {
		v, err := strconv.ParseFloat(*ts, 64)
		if err != nil {
			return ev, nil, "ts", "must be unix seconds or milliseconds"
		}
		ev.EventTime = &v
	}
	page := pageIn{URL: string(q.Peek("url")), Referrer: string(q.Peek("referrer")), Title: string(q.Peek("title"))}
	if page.URL == "" && validURL(string(referer)) {
		page.URL = string(referer) // an app or file referrer is not a page: ignore it
	}
	if page != (pageIn{}) {
		ev.Page = &page
	}

	props := map[string]any{}
	var custom int
	var perr string
	q.VisitAll(func(k, v []byte) {
		key := string(k)
		switch key {
		case "value", "percent", "seconds":
			if f, err := strconv.ParseFloat(string(v), 64); err == nil {
				props[key] = f
			} else {
				props[key] = string(v) // refused with the field named by validation
			}
		case "currency", "content_type", "content_id", "order_id", "query":
			props[key] = string(v)
		default:
			if name, ok := strings.CutPrefix(key, "p."); ok {
				custom++
				if name == "" || len(name) > 64 || custom > 20 {
					perr = key
					return
				}
				props[name] = string(v)
			}
		}
	})
	if perr != "" {
		return ev, nil, perr, "custom properties are p.<name> (name up to 64 bytes, at most 20)"
	}
	if len(props) > 0 {
		raw, err := json.Marshal(props)
		if err != nil {
			return ev, nil, "properties", "cannot be encoded"
		}
		ev.Properties = raw
	}

	var cs consentIn
	cs.TCF, cs.GPP, cs.USP = str("tcf"), str("gpp"), str("usp")
	if sid := str("gpp_sid"); sid != nil && *sid != "" {
		for _, p := range strings.Split(*sid, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil {
				return ev, nil, "gpp_sid", "must be section ids separated by commas"
			}
			cs.GPPSID = append(cs.GPPSID, n)
		}
	}
	if v := str("gpc"); v != nil {
		b := *v == "1" || *v == "true"
		cs.GPC = &b
	}
	if cs.TCF != nil || cs.GPP != nil || cs.USP != nil || cs.GPC != nil || cs.GPPSID != nil {
		c = &cs
	}
	return ev, c, "", ""
}

// matchKey returns the source whose key_sha256 is the SHA-256 of key. Every
// source is compared, in constant time, so timing says nothing about which
// (or whether one) matched.
func matchKey(sources []Source, key []byte) *Source {
	if len(key) == 0 {
		return nil
	}
	sum := sha256.Sum256(key)
	var found *Source
	for i := range sources {
		if subtle.ConstantTimeCompare(sum[:], sources[i].keyHash[:]) == 1 {
			found = &sources[i]
		}
	}
	return found
}
