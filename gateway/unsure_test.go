package gateway

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/units"
)

// holdProxy forwards TCP between NATS clients and a server. While held,
// what the server sends (PubAcks among it) waits in the proxy, so a publish
// is stored but its acknowledgement comes late: the "unsure" case. While
// heldUp, what clients send waits too; cut drops the connections and what
// they held, so a publish never reaches the server.
type holdProxy struct {
	ln     net.Listener
	target string
	held   atomic.Bool
	heldUp atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func startHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, target: target}
	pipe := func(dst, src net.Conn, held *atomic.Bool) {
		defer dst.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			for held.Load() {
				time.Sleep(5 * time.Millisecond)
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go pipe(s, c, &p.heldUp)
			go pipe(c, s, &p.held)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	return p
}

// cut closes every connection, dropping what is held in them.
func (p *holdProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *holdProxy) url() string { return "nats://" + p.ln.Addr().String() }

// startUnsureGateway runs a gateway with a dedup store and the resolver,
// publishing through a holdProxy to a real nats-server whose events stream
// has the given duplicate window.
func startUnsureGateway(t *testing.T, window time.Duration) (*testGW, *holdProxy) {
	t.Helper()
	ns := bustest.RunServer(t, -1, "")
	p := startHoldProxy(t, ns.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := bus.Config{URL: p.url(), PublishTimeout: units.Duration(500 * time.Millisecond)}
	cfg.Events.DuplicateWindow = units.Duration(window)
	b, err := bus.Open(ctx, cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	tg := startGatewayOn(t, b, nil)
	_ = tg.g.Shutdown(context.Background())
	reg := prometheus.NewRegistry()
	dd := newDedup(t, reg, nil)
	g, err := New(tg.g.cfg, Deps{Publisher: b, Dedup: DedupStore(dd), Registry: reg,
		DuplicateWindow: window, PublishWait: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	return &testGW{g: g, bus: b, url: "http://" + g.Addr().String(), reg: reg, dedup: dd}, p
}

func (tg *testGW) waitCounter(t *testing.T, name string, labels map[string]string, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for tg.counter(t, name, labels) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v after %v, want %v", name, labels, tg.counter(t, name, labels), within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnsurePublishIsResolved: an event is stored but its PubAck comes too
// late, so the sender is told 503. The gateway keeps the event's claim and
// publishes it again until the stream answers "duplicate": the event is
// stored once, and the sender's retry — after the broker's own duplicate
// window has passed — is answered as a duplicate instead of being stored a
// second time. Releasing the claim at the 503 (the behaviour before) stores
// it twice here.
func TestUnsurePublishIsResolved(t *testing.T) {
	const window = 6 * time.Second
	tg, p := startUnsureGateway(t, window)
	body := `{"site":"shop","data":[{"event":"CompletePayment","event_id":"late-ack-1","user":{"external_id":"c-1"}}]}`

	p.held.Store(true)
	sent := time.Now()
	resp, a := tg.postServer(t, body)
	if resp.StatusCode != 503 || a.Accepted != 0 || len(a.Errors) != 1 {
		t.Fatalf("held PubAck: %d %+v, want 503 with one error", resp.StatusCode, a)
	}
	// While the first attempt is unresolved, a retry neither wins nor is lost.
	if got := tg.counter(t, "tagway_publish_unsure_pending", nil); got != 1 {
		t.Fatalf("unsure pending = %v, want 1", got)
	}
	time.Sleep(time.Second) // the resolver's first attempt is held too
	p.held.Store(false)
	tg.waitCounter(t, "tagway_publish_unsure_total", map[string]string{"outcome": "already_stored"}, 1, 5*time.Second)

	// The sender retries once the broker's window has passed.
	time.Sleep(time.Until(sent.Add(window + 500*time.Millisecond)))
	resp, a = tg.postServer(t, body)
	if resp.StatusCode != 200 || a.Accepted != 0 || a.Duplicates != 1 {
		t.Fatalf("retry after the window: %d %+v, want 200 and a duplicate", resp.StatusCode, a)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 1 || envs[0].EventID != "late-ack-1" {
		t.Fatalf("stream holds %d events, want the one event once", len(envs))
	}
	for _, o := range []string{"stored", "found", "not_found", "gave_up", "dropped", "shutdown"} {
		if got := tg.counter(t, "tagway_publish_unsure_total", map[string]string{"outcome": o}); got != 0 {
			t.Errorf("unsure %s = %v, want 0", o, got)
		}
	}
}

// TestUnsurePublishIsFoundAfterTheWindow: the PubAcks stay away until no
// re-publish could prove anything within the broker's window. The event is
// then looked for in the stream (its subject, its Nats-Msg-Id): found, its
// record is written, and a retry long after the window is a duplicate.
func TestUnsurePublishIsFoundAfterTheWindow(t *testing.T) {
	const window = 4 * time.Second
	tg, p := startUnsureGateway(t, window)
	body := `{"site":"shop","data":[{"event":"Lead","event_id":"late-ack-2"}]}`
	p.held.Store(true)
	resp, _ := tg.postServer(t, body)
	if resp.StatusCode != 503 {
		t.Fatalf("held PubAck: %d, want 503", resp.StatusCode)
	}
	// Re-publishing may go on until window - 1 s margin - 1.5 s wait.
	time.Sleep(2500 * time.Millisecond)
	p.held.Store(false)
	if got := tg.counter(t, "tagway_publish_unsure_pending", nil); got != 1 {
		t.Fatalf("unsure pending = %v while waiting to search", got)
	}
	tg.waitCounter(t, "tagway_publish_unsure_total", map[string]string{"outcome": "found"}, 1, 10*time.Second)
	resp, a := tg.postServer(t, body)
	if resp.StatusCode != 200 || a.Accepted != 0 || a.Duplicates != 1 {
		t.Fatalf("retry after the window: %d %+v, want a duplicate", resp.StatusCode, a)
	}
	if envs, _ := tg.envelopes(t); len(envs) != 1 {
		t.Fatalf("stream holds %d events, want 1", len(envs))
	}
}

// TestUnsurePublishNotFoundIsReleased: the publish never reached the server
// (the connection dropped with it). Past the window the search finds
// nothing, the claim is released, and the retry is stored, once.
func TestUnsurePublishNotFoundIsReleased(t *testing.T) {
	const window = 4 * time.Second
	tg, p := startUnsureGateway(t, window)
	body := `{"site":"shop","data":[{"event":"Lead","event_id":"never-sent"}]}`
	p.heldUp.Store(true)
	p.held.Store(true)
	resp, _ := tg.postServer(t, body)
	if resp.StatusCode != 503 {
		t.Fatalf("held publish: %d, want 503", resp.StatusCode)
	}
	time.Sleep(2500 * time.Millisecond)
	p.cut() // what was held is dropped; the client reconnects
	p.heldUp.Store(false)
	p.held.Store(false)
	tg.waitCounter(t, "tagway_publish_unsure_total", map[string]string{"outcome": "not_found"}, 1, 15*time.Second)
	resp, a := tg.postServer(t, body)
	if resp.StatusCode != 200 || a.Accepted != 1 {
		t.Fatalf("retry: %d %+v, want it accepted", resp.StatusCode, a)
	}
	if envs, _ := tg.envelopes(t); len(envs) != 1 {
		t.Fatalf("stream holds %d events, want 1", len(envs))
	}
	for _, o := range []string{"found", "stored", "already_stored", "gave_up"} {
		if got := tg.counter(t, "tagway_publish_unsure_total", map[string]string{"outcome": o}); got != 0 {
			t.Errorf("unsure %s = %v, want 0", o, got)
		}
	}
}

// TestUnsureAtShutdown: Shutdown waits for unresolved events until its
// context ends, then releases them and says so, so that the dedup store is
// not marked cleanly closed (cmd/tagway) and the next start reads them back.
func TestUnsureAtShutdown(t *testing.T) {
	tg, p := startUnsureGateway(t, 10*time.Second)
	p.held.Store(true)
	resp, _ := tg.postServer(t, `{"site":"shop","data":[{"event":"Lead","event_id":"late-ack-3"}]}`)
	if resp.StatusCode != 503 {
		t.Fatalf("held PubAck: %d, want 503", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := tg.g.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "still unresolved at the deadline: 1;") {
		t.Fatalf("Shutdown = %v, want it to report the unresolved event", err)
	}
	if got := tg.counter(t, "tagway_publish_unsure_total", map[string]string{"outcome": "shutdown"}); got != 1 {
		t.Fatalf("unsure shutdown = %v, want 1", got)
	}
}
