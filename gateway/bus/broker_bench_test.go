package bus_test

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
)

// What the embedded broker costs per message delivered on this machine, in
// CPU time of the whole process (server and client): a message stored in
// TW_EVENTS delivered to a durable pull consumer and acknowledged, every
// 256th (AckAll, as segments does) or each (as forward does). Its cost per
// message stored is BenchmarkPublishBatch's. The README's budget argument
// multiplies these by the messages a server event stores and the
// deliveries it costs.

func BenchmarkBrokerDeliver(b *testing.B) {
	for _, tc := range []struct {
		name   string
		policy jetstream.AckPolicy
		every  int
	}{{"ack=all/256", jetstream.AckAllPolicy, 256}, {"ack=each", jetstream.AckExplicitPolicy, 1}} {
		b.Run(tc.name, func(b *testing.B) {
			bs := bustest.OpenEmbedded(b)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := bs.EnsureStreams(ctx); err != nil {
				b.Fatal(err)
			}
			publish(b, bs, b.N, []byte(strings.Repeat("x", 600)))
			js, err := bs.Connect("bench")
			if err != nil {
				b.Fatal(err)
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, bus.EventsStream, jetstream.ConsumerConfig{
				Durable: "bench", AckPolicy: tc.policy, DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 4096,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuSeconds()
			got, done := 0, make(chan struct{})
			cc, err := cons.Consume(func(m jetstream.Msg) {
				got++
				if got%tc.every == 0 || got == b.N {
					_ = m.Ack()
				}
				if got == b.N {
					close(done)
				}
			}, jetstream.PullMaxMessages(512))
			if err != nil {
				b.Fatal(err)
			}
			select {
			case <-done:
			case <-ctx.Done():
				b.Fatalf("%d of %d delivered", got, b.N)
			}
			b.StopTimer()
			cpu := cpuSeconds() - cpu0
			cc.Stop()
			b.ReportMetric(cpu/float64(b.N)*1e6, "cpu-µs/msg")
		})
	}
}

// publish stores n messages on TW_EVENTS in groups of 20, each with its id.
func publish(b *testing.B, bs *bus.Bus, n int, data []byte) {
	b.Helper()
	msgs, acks := make([]bus.Msg, 0, 20), make([]bus.Ack, 20)
	for i := 0; i < n; i += 20 {
		msgs = msgs[:0]
		for j := i; j < min(i+20, n); j++ {
			msgs = append(msgs, bus.Msg{Subject: "tw.events.s.A", MsgID: "s|A|" + strconv.Itoa(j), Data: data})
		}
		bs.PublishBatch(context.Background(), msgs, acks[:len(msgs)])
		for _, a := range acks[:len(msgs)] {
			if a.Err != nil {
				b.Fatal(a.Err)
			}
		}
	}
}

// cpuSeconds is the process's user and system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
