package bus_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/units"
)

func TestPublishBatchAcksAndDuplicates(t *testing.T) {
	b := bustest.OpenEmbedded(t)
	msgs := []bus.Msg{
		{Subject: "tw.events.s.A", MsgID: "s|A|1", Data: []byte(`{"n":1}`)},
		{Subject: "tw.events.s.A", MsgID: "s|A|2", Data: []byte(`{"n":2}`)},
		{Subject: "tw.events.s.A", MsgID: "s|A|1", Data: []byte(`{"n":1}`)}, // same id
		{Subject: "elsewhere", MsgID: "x", Data: []byte(`{}`)},              // no stream
	}
	acks := make([]bus.Ack, len(msgs))
	b.PublishBatch(context.Background(), msgs, acks)
	if acks[0].Err != nil || acks[1].Err != nil || acks[0].Duplicate || acks[1].Duplicate || acks[0].Seq == acks[1].Seq {
		t.Fatalf("acks: %+v", acks[:2])
	}
	if acks[2].Err != nil || !acks[2].Duplicate {
		t.Fatalf("same Nats-Msg-Id: %+v", acks[2])
	}
	if !errors.Is(acks[3].Err, bus.ErrUnavailable) {
		t.Fatalf("subject without a stream: %+v", acks[3])
	}
	if got := len(bustest.ReadStream(t, b.JetStream(), bus.EventsStream)); got != 2 {
		t.Fatalf("stream holds %d messages, want 2", got)
	}
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b.PublishBatch(context.Background(), msgs[:1], acks[:1])
	if !errors.Is(acks[0].Err, bus.ErrClosed) {
		t.Fatalf("publish after Close: %+v", acks[0])
	}
}

// A server that comes back without its store (a new node, a memory-only
// test server) gets its streams again, without restarting Tagway; while it
// is away, publishes fail at once instead of waiting.
func TestStreamsRecreatedAfterReconnect(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ns := bustest.RunServer(t, port, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{URL: ns.ClientURL(), PublishTimeout: units.Duration(2 * time.Second)}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Embedded() || b.ClientURL() != ns.ClientURL() {
		t.Fatalf("external bus reports embedded=%v url=%s", b.Embedded(), b.ClientURL())
	}
	ns.Shutdown()
	ns.WaitForShutdown()

	acks := make([]bus.Ack, 1)
	start := time.Now()
	b.PublishBatch(context.Background(), []bus.Msg{{Subject: "tw.events.s.A", MsgID: "1", Data: []byte("{}")}}, acks)
	if !errors.Is(acks[0].Err, bus.ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("publish while disconnected: %+v after %v", acks[0], time.Since(start))
	}

	bustest.RunServer(t, port, t.TempDir()) // empty store: no streams
	deadline := time.Now().Add(20 * time.Second)
	for b.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("stream not re-created: %v", b.Ready(context.Background()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.PublishBatch(context.Background(), []bus.Msg{{Subject: "tw.events.s.A", MsgID: "2", Data: []byte("{}")}}, acks)
	if acks[0].Err != nil {
		t.Fatalf("publish after the stream came back: %v", acks[0].Err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c    bus.Config
		want string
	}{
		{bus.Config{Listen: "nohost"}, "nats.listen:"},
		{bus.Config{Listen: "127.0.0.1:99999"}, "nats.listen:"},
		{bus.Config{Events: bus.StreamConfig{Replicas: 7}}, "nats.events.replicas:"},
		{bus.Config{Events: bus.StreamConfig{MaxAge: units.Duration(time.Minute), DuplicateWindow: units.Duration(time.Hour)}}, "nats.events.duplicate_window:"},
	} {
		tc.c.SetDefaults()
		if err := tc.c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.c, err, tc.want)
		}
	}
	var c bus.Config
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.PublishTimeout.D() != 5*time.Second || c.Events.MaxAge.D() != 7*24*time.Hour || c.Events.DuplicateWindow.D() != 15*time.Second {
		t.Fatalf("defaults: %+v %v", c, err)
	}
}

// The embedded server listens where it is told, so other programs can subscribe.
func TestEmbeddedListens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{Listen: "127.0.0.1:0"}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !b.Embedded() || !strings.HasPrefix(b.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("client url %q", b.ClientURL())
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(b.ClientURL(), "nats://"))
	if err != nil {
		t.Fatalf("embedded server not listening: %v", err)
	}
	c.Close()
	// Tagway's own connections stay in process (buffered: pipe.go).
	js, err := b.Connect("segments")
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range []*nats.Conn{b.Conn(), js.Conn()} {
		if addr := nc.ConnectedAddr(); addr != "pipe" {
			t.Fatalf("a connection to %q, want the in-process pipe", addr)
		}
	}
}

// Connect gives a consumer its own connection to the same server, named for
// it; Shutdown closes it, and a closed bus gives none.
func TestConnectOpensAnOwnConnection(t *testing.T) {
	b := bustest.OpenEmbedded(t)
	js, err := b.Connect("segments")
	if err != nil {
		t.Fatal(err)
	}
	nc := js.Conn()
	if nc == b.Conn() || !nc.IsConnected() || nc.Opts.Name != "tagway-segments" {
		t.Fatalf("connection %p (name %q, connected %v), the bus's is %p", nc, nc.Opts.Name, nc.IsConnected(), b.Conn())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, "tw.events.shop.PageView", []byte(`{}`)); err != nil {
		t.Fatalf("publishing on TW_EVENTS over the new connection: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !nc.IsClosed() {
		t.Fatal("Shutdown left the consumer's connection open")
	}
	if _, err := b.Connect("forward"); err == nil {
		t.Fatal("a closed bus opened a connection")
	}
}

// BenchmarkPublishBatch is the edge's durable hand-off: batches of 20
// events published at once from several requests, each waiting for its
// PubAcks (the embedded server stores them on disk).
func BenchmarkPublishBatch(b *testing.B) {
	bs := bustest.OpenEmbedded(b)
	data := []byte(strings.Repeat("x", 600)) // an envelope's size
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // 32 requests in flight, as the load test's closed loop
	cpu0 := cpuSeconds()
	b.RunParallel(func(pb *testing.PB) {
		msgs, acks := make([]bus.Msg, 20), make([]bus.Ack, 20)
		for pb.Next() {
			for i := range msgs {
				msgs[i] = bus.Msg{Subject: "tw.events.s.A", MsgID: strconv.FormatInt(n.Add(1), 10), Data: data}
			}
			bs.PublishBatch(context.Background(), msgs, acks)
			for _, a := range acks {
				if a.Err != nil {
					b.Fatal(a.Err)
				}
			}
		}
	})
	b.ReportMetric(float64(b.N*20)/b.Elapsed().Seconds(), "msgs/s")
	// The process's CPU (broker and client) per message stored.
	b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N*20)*1e6, "cpu-µs/msg")
}

// The embedded server caches no subject matches: Tagway's subjects are
// mostly seen once (PubAck inboxes, JetStream ack subjects), and filling
// the cache took the account's write lock at nearly every match.
func TestEmbeddedCachesNoSubjectMatches(t *testing.T) {
	b := bustest.OpenEmbedded(t)
	msgs := make([]bus.Msg, 200)
	for i := range msgs {
		msgs[i] = bus.Msg{Subject: "tw.events.s.E" + strconv.Itoa(i%7), MsgID: "s|E|" + strconv.Itoa(i), Data: []byte(`{}`)}
	}
	acks := make([]bus.Ack, len(msgs))
	b.PublishBatch(context.Background(), msgs, acks)
	for i, a := range acks {
		if a.Err != nil {
			t.Fatalf("ack %d: %v", i, a.Err)
		}
	}
	n, err := bus.SublistCache(b)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("the embedded server cached %d subject matches, want none", n)
	}
}
