package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
)

func newPublisher(t *testing.T, timeout time.Duration, maxPending int) (*bus.Publisher, *bus.Bus) {
	t.Helper()
	b := bustest.OpenEmbedded(t)
	js, err := b.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	p, err := bus.NewPublisher(js.Conn(), timeout, maxPending)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p, b
}

// silent answers nothing on subj: a message there is sent, and never
// acknowledged (no "no responders" either: somebody listens).
func silent(t *testing.T, b *bus.Bus, subj string) {
	t.Helper()
	sub, err := b.Conn().SubscribeSync(subj)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
}

// Many goroutines publish at once, with the callback and the waiting
// form: every message is stored once, each gets its own sequence, and each
// group's callback runs exactly once with all its outcomes.
func TestPublisherConcurrent(t *testing.T) {
	p, b := newPublisher(t, 5*time.Second, 64) // fewer slots than messages in flight: publishes wait for room
	const workers, batches, size = 8, 25, 7
	var mu sync.Mutex
	seqs := map[uint64]bool{}
	record := func(acks []bus.Ack) error {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range acks {
			if a.Err != nil || a.Duplicate || a.Seq == 0 || seqs[a.Seq] {
				return fmt.Errorf("ack %+v (sequences so far %d)", a, len(seqs))
			}
			seqs[a.Seq] = true
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*batches)
	var calls atomic.Int32
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range batches {
				msgs := make([]bus.Msg, size)
				for i := range msgs {
					msgs[i] = bus.Msg{Subject: "tw.events.s.A", MsgID: fmt.Sprintf("%d-%d-%d", w, n, i), Data: []byte(`{}`)}
				}
				if n%2 == 0 {
					acks := make([]bus.Ack, size)
					p.PublishWait(context.Background(), msgs, acks)
					if err := record(acks); err != nil {
						errs <- err
					}
					continue
				}
				done := make(chan struct{})
				p.Publish(msgs, func(acks []bus.Ack) {
					calls.Add(1)
					if err := record(acks); err != nil {
						errs <- err
					}
					close(done) // a second call would panic
				})
				<-done
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := workers * batches * size
	if len(seqs) != want || int(calls.Load()) != workers*(batches/2) {
		t.Fatalf("%d sequences for %d messages, %d callbacks", len(seqs), want, calls.Load())
	}
	if got := len(bustest.ReadStream(t, b.JetStream(), bus.EventsStream)); got != want {
		t.Fatalf("stream holds %d messages, want %d", got, want)
	}
	if n := p.Pending(); n != 0 {
		t.Fatalf("%d still pending", n)
	}
}

// A message whose PubAck never comes is Unsure after the timeout; the
// others of its group are answered as they come.
func TestPublisherTimeout(t *testing.T) {
	p, b := newPublisher(t, 300*time.Millisecond, 16)
	silent(t, b, "quiet.x")
	acks := make([]bus.Ack, 2)
	start := time.Now()
	p.PublishWait(context.Background(), []bus.Msg{{Subject: "quiet.x", MsgID: "q"}, {Subject: "tw.events.s.A", MsgID: "a"}}, acks)
	took := time.Since(start)
	if !errors.Is(acks[0].Err, bus.ErrUnavailable) || !acks[0].Unsure {
		t.Errorf("unanswered: %+v", acks[0])
	}
	if acks[1].Err != nil || acks[1].Seq == 0 {
		t.Errorf("answered: %+v", acks[1])
	}
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Errorf("took %v with a 300ms timeout", took)
	}
}

// A waiter whose context ends gets Unsure for what is still pending, and
// nothing writes its acks after it returns (the race detector watches).
func TestPublisherContext(t *testing.T) {
	p, b := newPublisher(t, 10*time.Second, 16)
	silent(t, b, "quiet.x")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	acks := make([]bus.Ack, 3)
	start := time.Now()
	p.PublishWait(ctx, []bus.Msg{{Subject: "quiet.x", MsgID: "1"}, {Subject: "tw.events.s.A", MsgID: "2"}, {Subject: "quiet.x", MsgID: "3"}}, acks)
	if time.Since(start) > 2*time.Second {
		t.Fatalf("returned after %v", time.Since(start))
	}
	if !acks[0].Unsure || !acks[2].Unsure || acks[1].Err != nil {
		t.Fatalf("acks %+v", acks)
	}
	for i := range acks {
		acks[i] = bus.Ack{} // the caller reuses them
	}
	time.Sleep(50 * time.Millisecond)
	if n := p.Pending(); n != 0 {
		t.Fatalf("%d pending after the waiter gave up", n)
	}
}

// Past max_pending a publish waits briefly for room, then fails: not
// Unsure, the message was never sent.
func TestPublisherMaxPending(t *testing.T) {
	p, b := newPublisher(t, 5*time.Second, 2)
	silent(t, b, "quiet.x")
	var calls atomic.Int32
	p.Publish([]bus.Msg{{Subject: "quiet.x"}, {Subject: "quiet.x"}}, func([]bus.Ack) { calls.Add(1) })
	acks := make([]bus.Ack, 1)
	start := time.Now()
	p.PublishWait(context.Background(), []bus.Msg{{Subject: "tw.events.s.A", MsgID: "late"}}, acks)
	if !errors.Is(acks[0].Err, bus.ErrUnavailable) || acks[0].Unsure || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("third publish with 2 slots taken: %+v after %v", acks[0], time.Since(start))
	}
	// Close gives up on the two silent ones: the callback runs, Unsure.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); err == nil {
		t.Error("Close with unacknowledged messages reported nothing")
	}
	if calls.Load() != 1 {
		t.Fatalf("callback ran %d times", calls.Load())
	}
	p.PublishWait(context.Background(), []bus.Msg{{Subject: "tw.events.s.A", MsgID: "after"}}, acks)
	if !errors.Is(acks[0].Err, bus.ErrClosed) {
		t.Fatalf("after Close: %+v", acks[0])
	}
}

// Extra headers travel with the message, beside the Nats-Msg-Id.
func TestPublisherHeaders(t *testing.T) {
	p, b := newPublisher(t, 5*time.Second, 16)
	h := nats.Header{"Tw-Site": {"shop"}}
	acks := make([]bus.Ack, 2)
	p.PublishWait(context.Background(), []bus.Msg{
		{Subject: "tw.events.s.A", MsgID: "h1", Data: []byte(`{}`), Header: h},
		{Subject: "tw.events.s.A", MsgID: "h1", Data: []byte(`{}`)},
	}, acks)
	if acks[0].Err != nil || acks[1].Err != nil || !acks[1].Duplicate || acks[1].Seq != acks[0].Seq {
		t.Fatalf("acks %+v", acks)
	}
	got := bustest.ReadStream(t, b.JetStream(), bus.EventsStream)
	if len(got) != 1 || got[0].Header.Get("Tw-Site") != "shop" || got[0].Header.Get(nats.MsgIdHdr) != "h1" {
		t.Fatalf("stored %+v", got)
	}
	if _, ok := h[nats.MsgIdHdr]; ok || len(h) != 1 {
		t.Fatalf("the caller's header was left changed: %v", h)
	}
}
