// Package gateway is Tagway's public HTTP edge (fasthttp): it receives browser
// batches (POST /e), no-script pixels (GET /p.gif) and server batches
// (POST /v1/events), validates them with errors that name the field, sets the
// first-party _tw_id cookie, hashes personal data on arrival, runs the consent
// and dedup steps, and publishes each accepted event to JetStream, answering
// 2xx only after every PubAck of the request has arrived.
//
// It also serves the admin listener (admin.go): /healthz, /readyz, /metrics
// and /debug/pprof/.
//
// Metrics (Prometheus, names prefixed tagway_): http_requests_total{route,code},
// http_request_duration_seconds{route}, http_in_flight_requests,
// events_total{source,disposition}, rejections_total{route,reason},
// event_field_warnings_total, server_events_without_event_id_total,
// publish_duration_seconds, batch_events{source}.
//
// Logs: component=gateway; refused requests at debug, unavailability at warn.
// Personal data never reaches a log line (event.User implements LogValuer).
//
// A *Gateway is safe for concurrent use.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/dedup"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/tag"
)

// Publisher stores messages durably. *bus.Bus implements it.
type Publisher interface {
	// PublishBatch publishes msgs and waits for every acknowledgement;
	// acks[i] is the outcome of msgs[i].
	PublishBatch(ctx context.Context, msgs []bus.Msg, acks []bus.Ack)
	// Connected reports whether publishing can succeed now.
	Connected() bool
}

var _ Publisher = (*bus.Bus)(nil)

// ConsentDecider decides, from an envelope's signals, where the user is and
// what is known of the profile, which uses consent allows, and fills
// env.Consent. *consent.Engine implements it. A nil outcome means "not
// decided" (PassConsent).
type ConsentDecider interface {
	Decide(env *event.Envelope, geo consent.Geo) (*consent.Outcome, error)
	// Published reports whether the outcome's tw.consent message was stored.
	Published(o *consent.Outcome, ok bool) error
}

var _ ConsentDecider = (*consent.Engine)(nil)

// Deduper decides, per request, which events are first copies. *dedup.Store
// implements it through DedupStore; a partitioned implementation can replace
// it without touching the edge (DESIGN.md, scale-out).
type Deduper interface {
	Begin() DedupBatch
}

// DedupBatch is one request's dedup work: CheckAll the request's events at
// once (nil entries skipped), publish what the verdicts say, Settle each
// verdict with its outcome, then Finish once.
type DedupBatch interface {
	CheckAll(ctx context.Context, envs []*event.Envelope) ([]*dedup.Verdict, []error)
	Settle(v *dedup.Verdict, stored bool)
	// Detach takes a First whose publish got no answer out of the batch:
	// Finish leaves its claim pending until the Pending is resolved. Nil
	// when the implementation cannot hold a claim that long.
	Detach(v *dedup.Verdict) *dedup.Pending
	Finish() error
}

// DedupStore adapts a *dedup.Store to Deduper.
func DedupStore(s *dedup.Store) Deduper { return storeDeduper{s} }

type storeDeduper struct{ s *dedup.Store }

func (d storeDeduper) Begin() DedupBatch { return d.s.Begin() }

var _ DedupBatch = (*dedup.Batch)(nil)

// PassConsent decides nothing: env.Consent.Decided stays false and the
// signals are carried as received. Used when no engine is configured (tests
// of the edge alone); consumers must treat undecided envelopes as not
// consented.
type PassConsent struct{}

// Decide does nothing.
func (PassConsent) Decide(*event.Envelope, consent.Geo) (*consent.Outcome, error) { return nil, nil }

// Published does nothing.
func (PassConsent) Published(*consent.Outcome, bool) error { return nil }

// noDedup is used when Deps.Dedup is nil: every keyed event is a first
// copy; only JetStream's short Nats-Msg-Id window catches retries.
type noDedup struct{}

func (noDedup) Begin() DedupBatch { return noDedup{} }
func (noDedup) CheckAll(_ context.Context, envs []*event.Envelope) ([]*dedup.Verdict, []error) {
	vs := make([]*dedup.Verdict, len(envs))
	for i, e := range envs {
		switch {
		case e == nil:
		case e.EventIDAssigned:
			vs[i] = &dedup.Verdict{Kind: dedup.Unkeyed}
		default:
			vs[i] = &dedup.Verdict{Kind: dedup.First}
		}
	}
	return vs, make([]error, len(envs))
}
func (noDedup) Settle(*dedup.Verdict, bool)          {}
func (noDedup) Detach(*dedup.Verdict) *dedup.Pending { return nil }
func (noDedup) Finish() error                        { return nil }

// GeoLookup finds where an IP address is (*consent.GeoDB implements it).
type GeoLookup interface {
	Lookup(ip netip.Addr) (consent.Geo, error)
}

var _ GeoLookup = (*consent.GeoDB)(nil)

// Deps are what the gateway uses but does not own.
type Deps struct {
	Publisher Publisher      // required
	Consent   ConsentDecider // nil: PassConsent
	Dedup     Deduper        // nil: no dedup beyond JetStream's Nats-Msg-Id window
	// GeoDB is consulted when no trusted geo header says where the user is:
	// the browser's IP, or the customer IP a server event carries. nil: none.
	GeoDB  GeoLookup
	Logger *slog.Logger
	// Registry receives the gateway's metrics; nil: a private registry.
	Registry prometheus.Registerer
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// DuplicateWindow is the events stream's Nats-Msg-Id window. When it is
	// set (with Dedup), an event whose PubAck did not come keeps its dedup
	// claim while the gateway publishes it again within that window, and
	// learns whether it was stored (unsure.go). Zero: the claim is released
	// at once, and only the broker's window catches the sender's retry.
	DuplicateWindow time.Duration
	// PublishWait bounds one PublishBatch (the bus's publish_timeout plus its
	// one second of slack). Default 6s.
	PublishWait time.Duration
}

// Gateway is the public edge.
type Gateway struct {
	cfg     Config
	pub     Publisher
	consent ConsentDecider
	dedup   Deduper
	geoDB   GeoLookup
	log     *slog.Logger
	m       *metrics
	now     func() time.Time
	ipLim   *limiters
	keyLim  *limiters
	// anyOrigin is true when some site allows every origin ("*").
	origins   map[string]bool
	anyOrigin bool
	proxy     *tagProxy
	tag       *tag.Asset
	// siteRoutes maps a site's own paths (SitePaths) to what they serve.
	siteRoutes map[string]siteRoute
	demo       *demoLog  // demo mode only
	unsure     *resolver // nil without Deps.DuplicateWindow or a dedup store

	connMu sync.Mutex
	conns  map[net.Conn]int // open connections → handlers running on them

	srv      *fasthttp.Server
	ln       net.Listener
	serveErr chan error
	started  atomic.Bool
	stopOnce sync.Once
	stopErr  error
}

// New checks cfg and returns a gateway that is not yet listening.
func New(cfg Config, deps Deps) (*Gateway, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Publisher == nil {
		return nil, errors.New("gateway: a publisher is required")
	}
	g := &Gateway{
		cfg: cfg, pub: deps.Publisher, consent: deps.Consent, dedup: deps.Dedup, geoDB: deps.GeoDB,
		log: deps.Logger, now: deps.Now,
		ipLim: newLimiters(), keyLim: newLimiters(),
		origins: map[string]bool{}, serveErr: make(chan error, 1),
	}
	if g.consent == nil {
		g.consent = PassConsent{}
	}
	if g.dedup == nil {
		g.dedup = noDedup{}
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.log = g.log.With("component", "gateway")
	if g.now == nil {
		g.now = time.Now
	}
	reg := deps.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	g.m = newMetrics(reg)
	if deps.DuplicateWindow > 0 && deps.Dedup != nil {
		wait := deps.PublishWait
		if wait <= 0 {
			wait = 6 * time.Second
		}
		g.unsure = newResolver(g.pub, deps.DuplicateWindow, wait, g.log, reg)
	}
	g.proxy = newTagProxy(cfg.Proxy, g.now, reg)
	asset, err := tag.Build("/e")
	if err != nil {
		return nil, err
	}
	g.tag = asset
	if cfg.DemoPage {
		g.demo = newDemoLog()
	}
	g.siteRoutes = map[string]siteRoute{}
	for _, site := range cfg.Sites {
		tagPath, batch, pixel := site.Paths.routes()
		if tagPath == "" {
			continue
		}
		a, err := tag.Build(batch)
		if err != nil {
			return nil, err
		}
		g.siteRoutes[tagPath] = siteRoute{kind: routeTag, asset: a}
		g.siteRoutes[batch] = siteRoute{kind: routeBrowser}
		g.siteRoutes[pixel] = siteRoute{kind: routePixel}
	}
	for _, s := range cfg.Sites {
		for _, o := range s.Origins {
			if o == "*" {
				g.anyOrigin = true
			}
			g.origins[o] = true
		}
	}
	l := cfg.Limits
	g.srv = &fasthttp.Server{
		Handler:               g.handle,
		Name:                  "tagway",
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		// Bodies up to 4× the largest limit are read so the sender gets a JSON
		// 413 naming the limit; beyond that fasthttp closes the connection.
		MaxRequestBodySize: 4 * int(max(l.ServerBody, l.BrowserBody)),
		ReadTimeout:        l.ReadTimeout.D(),
		WriteTimeout:       l.WriteTimeout.D(),
		IdleTimeout:        l.IdleTimeout.D(),
		MaxConnsPerIP:      0,
		Concurrency:        l.MaxConns,
		CloseOnShutdown:    true,
		ConnState:          g.trackConn,
		Logger:             fasthttpLogger{g.log},
	}
	g.conns = map[net.Conn]int{}
	return g, nil
}

// siteRoute is what a site's own path serves.
type siteRoute struct {
	kind  string     // routeTag, routeBrowser or routePixel
	asset *tag.Asset // the site's tag variant (routeTag)
}

// Start listens on cfg.Listen and serves in the background.
func (g *Gateway) Start() error {
	if !g.started.CompareAndSwap(false, true) {
		return errors.New("gateway: already started")
	}
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", g.cfg.Listen, err)
	}
	g.ln = ln
	go func() {
		var err error
		if g.cfg.TLS.CertFile != "" {
			err = g.srv.ServeTLS(ln, g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile)
		} else {
			err = g.srv.Serve(ln)
		}
		g.serveErr <- err
	}()
	return nil
}

// Addr is the address the gateway listens on (after Start).
func (g *Gateway) Addr() net.Addr {
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// Err returns a channel that yields an error if serving stops unexpectedly.
func (g *Gateway) Err() <-chan error { return g.serveErr }

// Shutdown stops accepting connections, closes the connections that are not
// in the middle of a request (idle keep-alives, new ones with nothing sent),
// and waits, bounded by ctx, for the requests in flight to finish (each of
// which waits for its PubAcks), then for the events whose PubAck did not
// come to be resolved (unsure.go): any still unresolved at ctx's end make it
// return an error. Safe to call twice.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.stopOnce.Do(func() {
		if g.unsure != nil {
			// After the requests: theirs may hand it more.
			defer func() {
				// An error keeps the dedup store marked in use, so the next
				// start writes the records of those that were stored.
				if n := g.unsure.stop(ctx); n > 0 && g.stopErr == nil {
					g.stopErr = fmt.Errorf("gateway: events whose PubAck did not come, still unresolved at the deadline: %d; the next start reads the last events back", n)
				}
			}()
		}
		if !g.started.Load() {
			return
		}
		done := make(chan error, 1)
		go func() { done <- g.srv.ShutdownWithContext(ctx) }()
		// fasthttp counts a new connection as idle only after 5 s and waits
		// on the others until their read timeout: browsers' keep-alive and
		// preconnected sockets would hold the drain that long.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			g.closeUnbusyConns()
			select {
			case err := <-done:
				if err != nil {
					g.stopErr = fmt.Errorf("gateway: shutdown: %w", err)
				}
				return
			case <-tick.C:
			}
		}
	})
	return g.stopErr
}

// trackConn follows connections opening and closing (fasthttp's ConnState
// hook). Its states cannot tell a busy connection: fasthttp marks a new one
// active before its first byte arrives.
func (g *Gateway) trackConn(c net.Conn, st fasthttp.ConnState) {
	g.connMu.Lock()
	defer g.connMu.Unlock()
	switch st {
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		delete(g.conns, c)
	default:
		if _, ok := g.conns[c]; !ok {
			g.conns[c] = 0
		}
	}
}

// busy marks a handler running (+1) or done (-1) on a connection.
func (g *Gateway) busy(c net.Conn, d int) {
	g.connMu.Lock()
	if _, ok := g.conns[c]; ok {
		g.conns[c] += d
	}
	g.connMu.Unlock()
}

// closeUnbusyConns closes connections with no handler running: idle
// keep-alives, preconnects that sent nothing, requests still arriving (their
// sender gets no answer and retries; nothing was acknowledged).
func (g *Gateway) closeUnbusyConns() {
	g.connMu.Lock()
	defer g.connMu.Unlock()
	for c, n := range g.conns {
		if n == 0 {
			_ = c.Close()
			delete(g.conns, c)
		}
	}
}

// handle routes a public request.
func (g *Gateway) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	g.m.inFlight.Inc()
	defer g.m.inFlight.Dec()
	if c := ctx.Conn(); c != nil {
		g.busy(c, 1)
		defer g.busy(c, -1)
	}

	rid := requestID(ctx)
	ctx.Response.Header.Set("X-Request-Id", rid)
	route := routeOther
	if r := g.proxy.route(ctx); r != nil {
		route = routeProxy
		defer func() { g.m.request(route, ctx.Response.StatusCode(), time.Since(start).Seconds()) }()
		if result, err := g.proxy.serve(ctx, r); err != nil {
			g.log.Warn("tag proxy upstream failed", "path", r.Path, "result", result, "err", err, "request_id", rid)
		}
		return
	}
	defer func() {
		// fasthttp does not recover panics; one bad request must not take
		// the process down. Nothing was acknowledged, so nothing is lost.
		if p := recover(); p != nil {
			g.log.Error("panic serving a request", "route", route, "request_id", rid, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			g.m.rejected.WithLabelValues(route, "internal").Inc()
			ctx.Response.Reset()
			ctx.Response.Header.Set("X-Request-Id", rid)
			writeJSON(ctx, 500, map[string]any{"error": map[string]string{"code": "internal", "message": "internal error; the events of this request were not stored, retry later", "request_id": rid}})
			g.m.request(route, 500, time.Since(start).Seconds())
		}
	}()
	path := string(ctx.Path())
	if r, ok := g.siteRoutes[path]; ok { // a site's own paths
		route = r.kind
		switch r.kind {
		case routeTag:
			g.serveTagAsset(ctx, rid, r.asset)
		case routeBrowser:
			g.serveBrowser(ctx, rid)
		case routePixel:
			g.servePixel(ctx, rid)
		}
		path = ""
	}
	switch path {
	case "":
	case "/e":
		route = routeBrowser
		g.serveBrowser(ctx, rid)
	case "/p.gif":
		route = routePixel
		g.servePixel(ctx, rid)
	case "/v1/events":
		route = routeServer
		g.serveServer(ctx, rid)
	case "/t.js":
		route = routeTag
		g.serveTag(ctx, rid)
	case "/demo/events":
		if !g.cfg.DemoPage {
			g.refuse(ctx, route, rid, reqErr(reasonNotFound, "", "no such route"))
			break
		}
		route = routeTag
		g.serveDemoEvents(ctx)
	case "/demo":
		if !g.cfg.DemoPage {
			g.refuse(ctx, route, rid, reqErr(reasonNotFound, "", "no such route"))
			break
		}
		route = routeTag
		ctx.SetContentType("text/html; charset=utf-8")
		ctx.Response.Header.Set("Cache-Control", "no-store")
		ctx.SetBody(tag.DemoPage())
	default:
		g.refuse(ctx, route, rid, reqErr(reasonNotFound, "", "no such route"))
	}
	g.m.request(route, ctx.Response.StatusCode(), time.Since(start).Seconds())
}

func requestID(ctx *fasthttp.RequestCtx) string {
	if id := ctx.Request.Header.Peek("X-Request-Id"); len(id) > 0 && len(id) <= 64 && printable(string(id), 64) {
		return string(id)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// refuse answers a refused request with its status and a JSON error.
func (g *Gateway) refuse(ctx *fasthttp.RequestCtx, route, rid string, e *requestError) {
	g.m.rejected.WithLabelValues(route, e.reason.String()).Inc()
	var body errorBody
	body.Error.Code = e.reason.String()
	body.Error.Field = e.field
	body.Error.Message = e.message
	body.Error.RequestID = rid
	if e.reason == reasonUnavailable {
		ctx.Response.Header.Set("Retry-After", "2")
		g.log.Warn("request refused", "route", route, "reason", e.reason.String(), "request_id", rid, "err", e.err)
	} else {
		g.log.Debug("request refused", "route", route, "reason", e.reason.String(), "field", e.field, "request_id", rid)
	}
	if e.reason == reasonRateLimited {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	writeJSON(ctx, e.reason.status(), &body)
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // our own types always marshal
		status, b = 500, []byte(`{"error":{"code":"internal","message":"encoding the answer failed"}}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(b)
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...))
}
