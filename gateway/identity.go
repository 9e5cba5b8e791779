package gateway

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/gateway/event"
)

// CookieName is Tagway's first-party anonymous id cookie.
const CookieName = "_tw_id"

// cookieMaxAge is 13 months (396 days), under browsers' 400-day cap.
const cookieMaxAge = 396 * 24 * time.Hour

// clientIP returns the address of the client: the peer, or, when the peer is
// a trusted proxy, the right-most X-Forwarded-For entry that is not itself a
// trusted proxy.
func (g *Gateway) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if !g.trusted(peer) {
		return peer
	}
	xff := ctx.Request.Header.Peek("X-Forwarded-For")
	for len(xff) > 0 {
		i := bytes.LastIndexByte(xff, ',')
		part := bytes.TrimSpace(xff[i+1:])
		xff = xff[:max(i, 0)]
		a, err := netip.ParseAddr(string(part))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !g.trusted(a) {
			return a
		}
		if i < 0 {
			break
		}
	}
	return peer
}

func (g *Gateway) trusted(a netip.Addr) bool {
	for _, p := range g.cfg.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// secure reports whether the browser reached us over HTTPS: TLS here, or a
// trusted proxy that says X-Forwarded-Proto: https.
func (g *Gateway) secure(ctx *fasthttp.RequestCtx) bool {
	if ctx.IsTLS() {
		return true
	}
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return g.trusted(peer.Unmap()) && bytes.EqualFold(ctx.Request.Header.Peek("X-Forwarded-Proto"), []byte("https"))
}

// anonID reads the _tw_id cookie, falling back to an id the tag sent (when
// cookies are blocked it keeps one in storage), then to a new one. It always
// (re)sets the cookie so its 13 months start again.
func (g *Gateway) anonID(ctx *fasthttp.RequestCtx, site *Site, fromBody string) string {
	id := string(ctx.Request.Header.Cookie(CookieName))
	if !event.IsAnonID(id) {
		id = fromBody
		if !event.IsAnonID(id) {
			id = event.NewAnonID()
		}
	}
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(CookieName)
	c.SetValue(id)
	c.SetPath("/")
	c.SetMaxAge(int(cookieMaxAge / time.Second))
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	c.SetSecure(g.secure(ctx))
	if site != nil && site.CookieDomain != "" {
		c.SetDomain(site.CookieDomain)
	}
	ctx.Response.Header.SetCookie(c)
	return id
}

// geo reads the trusted geo headers: only a trusted proxy may say where the
// user is (a client could otherwise claim a country without consent law).
func (g *Gateway) geo(ctx *fasthttp.RequestCtx) consent.Geo {
	if g.cfg.GeoCountryHeader == "" {
		return consent.Geo{}
	}
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	if !g.trusted(peer.Unmap()) {
		return consent.Geo{}
	}
	geo := consent.Geo{Country: string(ctx.Request.Header.Peek(g.cfg.GeoCountryHeader))}
	if g.cfg.GeoRegionHeader != "" {
		geo.Region = string(ctx.Request.Header.Peek(g.cfg.GeoRegionHeader))
	}
	if len(geo.Country) > 8 || len(geo.Region) > 16 {
		return consent.Geo{}
	}
	return geo
}
