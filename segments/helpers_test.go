package segments

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

// clock is the injectable clock the scenarios move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// rig is one engine on a real embedded NATS and Badger in a temp dir. It can
// be stopped and reopened on the same data (restart tests).
type rig struct {
	t     testing.TB
	b     *bus.Bus
	js    jetstream.JetStream
	dir   string
	store *kv.Store
	e     *Engine
	clk   *clock
	rules string
	read  int // deltas already returned by newDeltas
}

func newRig(t testing.TB, rules string) *rig {
	t.Helper()
	b := bustest.OpenEmbedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, b: b, js: b.JetStream(), dir: t.TempDir(), clk: &clock{t: t0}, rules: rules}
	r.open()
	t.Cleanup(r.close)
	return r
}

func parseRules(t testing.TB, rules string) Config {
	t.Helper()
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(rules))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("rules: %v", err)
	}
	cfg.SetDefaults()
	cfg.Sweep = 3600e9 // the scenarios sweep by hand
	return cfg
}

func (r *rig) open() {
	r.t.Helper()
	cfg := parseRules(r.t, r.rules)
	prog, err := cfg.Validate()
	if err != nil {
		r.t.Fatal(err)
	}
	store, err := kv.Open(r.dir, kv.Config{}, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	e, err := New(cfg, prog, Deps{DB: store.DB(), JS: r.js, Now: r.clk.Now})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		r.t.Fatal(err)
	}
	r.store, r.e = store, e
}

func (r *rig) close() {
	if r.e != nil {
		r.e.Stop()
		r.e = nil
	}
	if r.store != nil {
		_ = r.store.Close()
		r.store = nil
	}
}

func (r *rig) restart() {
	r.t.Helper()
	r.close()
	r.open()
}

// ev is an event to send: name, profile (anon id), optional fields.
type ev struct {
	name    string
	anon    string
	email   string
	at      time.Time // event time; zero: now
	props   string
	url     string
	allowed []string // nil: segments allowed
	country string
}

var nEvents int

// send publishes envelopes on TW_EVENTS as the gateway does and waits until
// the engine applied them.
func (r *rig) send(evs ...ev) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last uint64
	for _, x := range evs {
		last = r.publishEvent(ctx, x)
	}
	r.waitApplied(last)
}

// publishEvent publishes one envelope and returns its stream sequence.
func (r *rig) publishEvent(ctx context.Context, x ev) uint64 {
	r.t.Helper()
	nEvents++
	now := r.clk.Now()
	at := x.at
	if at.IsZero() {
		at = now
	}
	allowed := x.allowed
	if allowed == nil {
		allowed = []string{"measurement", "segments"}
	}
	env := event.Envelope{ID: fmt.Sprintf("%032x", nEvents), EventID: fmt.Sprintf("e%d", nEvents), Site: "shop",
		Source: event.SourceBrowser, Event: x.name, EventTime: at.UnixMilli(), ReceivedAt: now.UnixMilli(),
		User: event.User{AnonID: x.anon, EmailSHA256: x.email}, Page: event.Page{URL: x.url},
		Consent: event.Consent{Decided: true, Allowed: allowed, Jurisdiction: x.country}}
	env.Profile = event.ProfileID(&env.User)
	if x.props != "" {
		env.Properties = event.RawJSON(x.props)
	}
	data, _ := json.Marshal(&env)
	ack, err := r.js.Publish(ctx, event.Subject("shop", x.name), data)
	if err != nil {
		r.t.Fatal(err)
	}
	return ack.Sequence
}

func (r *rig) waitApplied(seq uint64) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.e.Applied() < seq {
		if time.Now().After(deadline) {
			r.t.Fatalf("engine applied %d, want %d", r.e.Applied(), seq)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// publishRaw publishes a message on another stream's subject and waits until
// it is consumed (by watching the consumer's ack floor).
func (r *rig) publishRaw(subject, consumerStream, consumer string, v any) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	data, _ := json.Marshal(v)
	ack, err := r.js.Publish(ctx, subject, data)
	if err != nil {
		r.t.Fatal(err)
	}
	for {
		c, err := r.js.Consumer(ctx, consumerStream, consumer)
		if err != nil {
			r.t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		if info.AckFloor.Stream >= ack.Sequence {
			return
		}
		if ctx.Err() != nil {
			r.t.Fatalf("%s not consumed", subject)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (r *rig) sweep() {
	r.t.Helper()
	if _, err := r.e.Sweep(); err != nil {
		r.t.Fatal(err)
	}
}

// allDeltas reads every delta on TW_AUDIENCE.
func (r *rig) allDeltas() []Delta {
	r.t.Helper()
	var out []Delta
	for _, m := range bustest.ReadStream(r.t, r.js, AudienceStream) {
		var d Delta
		if err := json.Unmarshal(m.Data, &d); err != nil {
			r.t.Fatal(err)
		}
		if m.Subject != AudienceSubject(d.Segment) {
			r.t.Fatalf("delta for %s on %s", d.Segment, m.Subject)
		}
		out = append(out, d)
	}
	return out
}

// newDeltas returns the deltas published since the last call.
func (r *rig) newDeltas() []Delta {
	r.t.Helper()
	all := r.allDeltas()
	out := all[r.read:]
	r.read = len(all)
	return out
}

// want is an expected delta: "op segment profile @time [reason]".
type want struct {
	op, seg, profile string
	at               time.Time
	due              time.Time // zero: not time-driven
	reason           string    // prefix; "" = any
}

func (r *rig) expect(ws ...want) {
	r.t.Helper()
	got := r.newDeltas()
	if len(got) != len(ws) {
		r.t.Fatalf("got %d deltas %s, want %d", len(got), fmtDeltas(got), len(ws))
	}
	// Deltas of one batch may come in any order across profiles and
	// segments; compare as sets of one batch.
	used := make([]bool, len(got))
	for _, w := range ws {
		found := false
		for i, d := range got {
			if used[i] || d.Op != w.op || d.Segment != w.seg || d.Profile != w.profile || d.At != w.at.UnixMilli() {
				continue
			}
			if !w.due.IsZero() && d.Due != w.due.UnixMilli() || w.due.IsZero() && d.Due != 0 {
				continue
			}
			if w.reason != "" && !strings.HasPrefix(d.Reason, w.reason) {
				continue
			}
			used[i], found = true, true
			break
		}
		if !found {
			r.t.Fatalf("missing delta %+v in %s", w, fmtDeltas(got))
		}
	}
}

func fmtDeltas(ds []Delta) string {
	var b strings.Builder
	b.WriteString("[")
	for _, d := range ds {
		fmt.Fprintf(&b, "\n  %s %s %s at=%s due=%s reason=%q", d.Op, d.Segment, d.Profile, msTime(d.At), msTime(d.Due), d.Reason)
	}
	b.WriteString("]")
	return b.String()
}

func sha(s string) string {
	h, _ := event.HashEmail(s)
	return h
}

func genEnvelope(props, url string) *event.Envelope {
	env := &event.Envelope{Site: "shop", Source: event.SourceBrowser, Event: "X", Page: event.Page{URL: url}}
	if props != "" {
		env.Properties = event.RawJSON(props)
	}
	return env
}
