package forward

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/event"
)

// Holding. A conversion waits out its destinations' hold (the other copy
// may still bring identifiers) before it is routed. Up to held_in_memory
// conversions wait in memory, unacknowledged: JetStream still counts each
// against the router's MaxAckPending and, should the process die,
// redelivers it once the router's AckWait (the longest hold plus
// routeAckSlack) has passed: at most routeAckSlack after its hold would have
// ended. Beyond held_in_memory a conversion goes back to JetStream with
// NakWithDelay (durable, no memory) for the rest of its hold.
//
// The load run's profile is why: with every hold a NakWithDelay, each
// conversion cost the broker a nak, a timed redelivery read back from the
// stream, and the router a second delivery and decode: two of the dozen
// broker messages a server event costs. The in-memory hold costs a heap
// entry, the message and its decoded envelope (~3 KiB), which is routed
// when the hold ends without being decoded again.

// routeAckSlack is what the router's AckWait allows beyond the longest hold:
// the wait for the PubAcks (routePubAckTimeout) and some. A variable only
// so that tests need not wait 30 s for a redelivery.
var routeAckSlack = 30 * time.Second

// routePubAckTimeout bounds the wait for a conversion's PubAcks.
const routePubAckTimeout = 10 * time.Second

type heldMsg struct {
	m   jetstream.Msg
	env *event.Envelope // m's, decoded: routed without decoding it again
	at  time.Time       // when the hold ends
}

type heldHeap []heldMsg

func (h heldHeap) Len() int           { return len(h) }
func (h heldHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h heldHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *heldHeap) Push(x any)        { *h = append(*h, x.(heldMsg)) }
func (h *heldHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = heldMsg{}
	*h = old[:len(old)-1]
	return x
}

// holdQueue orders the held conversions by the end of their hold.
type holdQueue struct {
	mu   sync.Mutex
	h    heldHeap
	wake chan struct{} // a new earliest entry; buffered 1
}

func newHoldQueue() *holdQueue { return &holdQueue{wake: make(chan struct{}, 1)} }

// push queues m until at; false when the queue already has max entries.
func (q *holdQueue) push(m jetstream.Msg, env *event.Envelope, at time.Time, max int) bool {
	q.mu.Lock()
	if len(q.h) >= max {
		q.mu.Unlock()
		return false
	}
	heap.Push(&q.h, heldMsg{m, env, at})
	first := q.h[0].m == m
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// due pops the entries whose hold ended by now (appending to out) and says
// how long until the next one ends (-1: none held).
func (q *holdQueue) due(now time.Time, out []heldMsg) ([]heldMsg, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.h) > 0 && !q.h[0].at.After(now) {
		out = append(out, heap.Pop(&q.h).(heldMsg))
	}
	if len(q.h) == 0 {
		return out, -1
	}
	return out, q.h[0].at.Sub(now)
}

// drain empties the queue.
func (q *holdQueue) drain() []heldMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.h
	q.h = nil
	return out
}

func (q *holdQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.h)
}

// releaseHeld routes each held conversion when its hold ends. When ctx ends
// (Shutdown) the conversions still held go back to JetStream for the rest of
// their hold, so another gateway (or this one after a restart) sends them on
// time.
func (f *Forwarder) releaseHeld(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []heldMsg
	for {
		var next time.Duration
		due, next = f.held.due(time.Now(), due[:0])
		for i := range due {
			f.route(due[i].m, due[i].env)
			due[i] = heldMsg{}
		}
		if len(due) > 0 {
			continue // routing took time: look again before sleeping
		}
		if next < 0 {
			next = time.Hour
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			now := time.Now()
			for _, h := range f.held.drain() {
				_ = h.m.NakWithDelay(max(h.at.Sub(now), 0))
			}
			return
		case <-f.held.wake:
		case <-t.C:
		}
	}
}
