// Package bustest runs real NATS JetStream servers in process for tests, on
// random loopback ports and temporary directories, the way nats-server's own
// RunBasicJetStreamServer does.
package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/bus"
)

// RunServer starts a JetStream-enabled nats-server on 127.0.0.1 with its store
// in dir (t.TempDir() when dir is ""). port -1 picks a free port. The server
// is shut down when the test ends.
func RunServer(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoSigs: true, NoLog: true, DisableJetStreamBanner: true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// OpenEmbedded opens a Bus on an embedded, in-process-only server with its
// JetStream store under a temp dir, closed when the test ends.
func OpenEmbedded(t testing.TB) *bus.Bus {
	t.Helper()
	return OpenEmbeddedWith(t, bus.Config{})
}

// OpenEmbeddedWith is OpenEmbedded with cfg (its Listen is forced to "off").
func OpenEmbeddedWith(t testing.TB, cfg bus.Config) *bus.Bus {
	t.Helper()
	cfg.Listen = "off"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, cfg, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("bus: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Msg is a message read back from a stream.
type Msg struct {
	Subject string
	Data    []byte
	Header  nats.Header
	Seq     uint64
}

// ReadStream returns every message stored in stream, in order.
func ReadStream(t testing.TB, js jetstream.JetStream, stream string) []Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := info.State.Msgs
	out := make([]Msg, 0, n)
	if n == 0 {
		return out
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for uint64(len(out)) < n {
		batch, err := c.Fetch(int(min(n-uint64(len(out)), 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			out = append(out, Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers(), Seq: md.Sequence.Stream})
			got++
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if got == 0 {
			t.Fatalf("read %d of %d messages from %s", len(out), n, stream)
		}
	}
	return out
}
