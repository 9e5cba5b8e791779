package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/forward/forwardtest"
	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

const (
	tiktokToken = "tt-token"
	pixelCode   = "CPIXEL123"
	metaToken   = "meta-token"
	pixelID     = "1234567890"
	metaVersion = "v21.0"
)

// pipe is a forwarder on a real embedded JetStream and Badger in temp
// dirs, with fake TikTok and Meta APIs and a webhook receiver. It can be
// restarted on the same data (NATS and Badger stay; the forwarder goes).
type pipe struct {
	t       testing.TB
	b       *bus.Bus
	js      jetstream.JetStream
	store   *kv.Store
	tiktok  *forwardtest.TikTok
	meta    *forwardtest.Meta
	hook    *hookServer
	consent *fakeConsent
	dests   []Destination
	cfg     Config            // the forwarder's (zero: defaults)
	env     map[string]string // what Validate's getenv sees; options may add to it
	f       *Forwarder
	reg     *prometheus.Registry // the running forwarder's metrics (new at each open)
	n       atomic.Int64
}

type pipeOpt func(*pipe)

func newPipe(t testing.TB, opts ...pipeOpt) *pipe {
	t.Helper()
	p := &pipe{t: t, b: bustest.OpenEmbedded(t)}
	p.js = p.b.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	store, err := kv.Open(t.TempDir(), kv.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.store = store
	t.Cleanup(func() { _ = store.Close() })
	p.tiktok = forwardtest.NewTikTok(t, tiktokToken, pixelCode)
	p.meta = forwardtest.NewMeta(t, metaToken, pixelID, metaVersion)
	p.hook = newHookServer(t, "hook-secret")
	p.consent = &fakeConsent{states: map[string]bool{}}
	p.env = map[string]string{"TT": tiktokToken, "META": metaToken, "HOOK": "hook-secret"}
	fast := func(d *Destination) {
		d.Hold = 300 * 1e6 // 300ms
		d.MinBackoff, d.MaxBackoff = 50*1e6, 400*1e6
		d.Linger = 50 * 1e6
		d.Timeout = 2e9
	}
	tt := Destination{Name: "tiktok", Type: KindTikTok, BaseURL: p.tiktok.URL(), PixelCode: pixelCode, AccessTokenEnv: "TT"}
	mt := Destination{Name: "meta", Type: KindMeta, BaseURL: p.meta.URL(), PixelID: pixelID, APIVersion: metaVersion, AccessTokenEnv: "META"}
	wh := Destination{Name: "hook", Type: KindWebhook, URL: p.hook.srv.URL, SecretEnv: "HOOK", Headers: map[string]string{"X-Shop": "shop"}}
	p.dests = []Destination{tt, mt, wh}
	for i := range p.dests {
		fast(&p.dests[i])
	}
	for _, o := range opts {
		o(p)
	}
	for i := range p.dests {
		p.dests[i].SetDefaults(300e6)
		if err := p.dests[i].Validate(i, func(k string) string { return p.env[k] }); err != nil {
			t.Fatal(err)
		}
	}
	p.open()
	t.Cleanup(p.close)
	return p
}

func (p *pipe) open() {
	p.t.Helper()
	p.reg = prometheus.NewRegistry()
	f, err := New(p.cfg, p.dests, Deps{DB: p.store.DB(), JS: p.js, Consent: p.consent, Registry: p.reg, Logger: nil})
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.Start(ctx); err != nil {
		p.t.Fatal(err)
	}
	p.f = f
}

func (p *pipe) close() {
	if p.f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.f.Shutdown(ctx)
		p.f = nil
	}
}

func (p *pipe) restart() { p.t.Helper(); p.close(); p.open() }

// conv is a conversion to publish as the gateway would.
type conv struct {
	name    string
	id      string // event_id; default e<n>
	anon    string
	email   string
	source  event.Source
	allowed []string // default: every forward use
	props   string
}

// publish puts an envelope on TW_EVENTS and returns it.
func (p *pipe) publish(c conv) *event.Envelope {
	p.t.Helper()
	env, err := p.tryPublish(c)
	if err != nil {
		p.t.Fatal(err)
	}
	return env
}

// tryPublish is publish for any goroutine: it returns the error.
func (p *pipe) tryPublish(c conv) (*event.Envelope, error) {
	n := p.n.Add(1)
	now := time.Now()
	if c.id == "" {
		c.id = fmt.Sprintf("e%d", n)
	}
	if c.source == "" {
		c.source = event.SourceBrowser
	}
	if c.allowed == nil {
		c.allowed = []string{"measurement", "forward:tiktok", "forward:meta", "forward:hook"}
	}
	if c.props == "" {
		c.props = `{"currency":"EUR","value":42.5,"contents":[{"content_id":"sku-1","quantity":1,"price":42.5}]}`
	}
	env := &event.Envelope{ID: fmt.Sprintf("%032x", n), EventID: c.id, Site: "shop", Source: c.source, Event: c.name,
		EventTime: now.UnixMilli(), ReceivedAt: now.UnixMilli(),
		User:       event.User{AnonID: c.anon, EmailSHA256: c.email, UserAgent: "Mozilla/5.0 (test)", IP: "203.0.113.0"},
		Page:       event.Page{URL: "https://shop.example/checkout"},
		Properties: event.RawJSON(c.props),
		Consent:    event.Consent{Decided: true, Allowed: c.allowed, Jurisdiction: "US-CA"}}
	env.Profile = event.ProfileID(&env.User)
	data, _ := json.Marshal(env)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.js.Publish(ctx, event.Subject("shop", c.name), data, jetstream.WithMsgID(event.DedupKey("shop", c.name, c.id))); err != nil {
		return nil, fmt.Errorf("publishing %s: %w", c.id, err)
	}
	return env, nil
}

// link publishes an identity link as deduplication does.
func (p *pipe) link(l event.IdentityLink) {
	p.t.Helper()
	l.Site = "shop"
	data, _ := json.Marshal(l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.js.Publish(ctx, event.IdentitySubject("shop"), data); err != nil {
		p.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeConsent stands in for the consent engine's current state.
type fakeConsent struct {
	mu      sync.Mutex
	states  map[string]bool // site|profile|use → allowed
	skipped []string        // destination|event_id audited
}

func (c *fakeConsent) set(profile, use string, allowed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states["shop|"+profile+"|"+use] = allowed
}

func (c *fakeConsent) CurrentUse(site, profile, use string) (bool, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.states[site+"|"+profile+"|"+use]
	return a, ok, nil
}

func (c *fakeConsent) RecordForwardSkip(site, profile, dest, eventID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skipped = append(c.skipped, dest+"|"+eventID)
	return nil
}

// hookServer receives webhooks and checks their signature.
type hookServer struct {
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	got    map[string]int // event_id → deliveries
	bodies [][]byte
	bad    int
}

func newHookServer(t testing.TB, secret string) *hookServer {
	h := &hookServer{secret: []byte(secret), got: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf [1 << 16]byte
		n, _ := readAll(r, buf[:])
		body := append([]byte(nil), buf[:n]...)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := VerifyWebhook(h.secret, r.Header.Get(WebhookSignatureHeader), body, time.Now(), DefaultWebhookTolerance); err != nil || r.Header.Get("X-Shop") != "shop" {
			h.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var env event.Envelope
		_ = json.Unmarshal(body, &env)
		h.got[env.EventID]++
		h.bodies = append(h.bodies, body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func readAll(r *http.Request, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Body.Read(buf[n:])
		n += m
		if err != nil {
			return n, nil
		}
	}
	return n, nil
}

func (h *hookServer) count(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got[id]
}

// only keeps the destinations named.
func only(names ...string) pipeOpt {
	return func(p *pipe) {
		p.dests = slices.DeleteFunc(p.dests, func(d Destination) bool { return !slices.Contains(names, d.Name) })
	}
}

// each changes every destination (after the harness's fast settings,
// before SetDefaults and Validate).
func each(fn func(*Destination)) pipeOpt {
	return func(p *pipe) {
		for i := range p.dests {
			fn(&p.dests[i])
		}
	}
}

// metric is the value of the running forwarder's counter or gauge name,
// summed over the series whose labels include those given (name=value
// pairs); 0 when none matches.
func (p *pipe) metric(name string, labels ...string) float64 {
	p.t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		p.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
