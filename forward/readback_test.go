package forward

import (
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"

	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/kv"
	"github.com/tagway/tagway/gateway/units"
)

func storedMark(t *testing.T, db *badger.DB) uint64 {
	t.Helper()
	seq, err := kv.GetUint64(db, markKey)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// A conversion published on TW_FORWARD whose ack never reached JetStream
// (the process died) is redelivered after the restart, long after a 100 ms
// duplicate window: the read-back keeps its payload single.
func TestRestartBetweenPublishAndAckPublishesOnce(t *testing.T) {
	slack, lag := routeAckSlack, markLag
	routeAckSlack, markLag = time.Second, 300*time.Millisecond
	t.Cleanup(func() { routeAckSlack, markLag = slack, lag })
	p := newPipe(t, only("hook"), func(p *pipe) {
		p.cfg.Stream.DuplicateWindow = units.Duration(100 * time.Millisecond)
	})
	p.publish(conv{name: "CompletePayment", id: "first", anon: "a1"})
	waitFor(t, 10*time.Second, "the first conversion", func() bool { return p.hook.count("first") == 1 })
	// The mark moves once the start's AckWait (hold + slack) and markLag
	// have passed.
	waitFor(t, 10*time.Second, "a stored mark", func() bool { return storedMark(t, p.store.DB()) > 0 })

	p.f.dropAcks.Store(true)
	p.publish(conv{name: "CompletePayment", id: "second", anon: "a2"})
	waitFor(t, 10*time.Second, "the second conversion", func() bool { return p.hook.count("second") == 1 })
	p.restart()
	// Redelivered after the router's AckWait (1.3 s here) and routed again.
	waitFor(t, 10*time.Second, "the redelivery", func() bool {
		return p.metric("tagway_forward_republish_skipped_total", "destination", "hook") == 1
	})
	p.publish(conv{name: "CompletePayment", id: "third", anon: "a3"})
	waitFor(t, 10*time.Second, "the third conversion", func() bool { return p.hook.count("third") == 1 })
	n := map[string]int{}
	for _, m := range bustest.ReadStream(t, p.js, ForwardStream) {
		n[m.Header.Get(nats.MsgIdHdr)]++
	}
	for id, c := range n {
		if c != 1 {
			t.Errorf("TW_FORWARD holds %s %d times", id, c)
		}
	}
	if len(n) != 3 || p.hook.count("second") != 1 {
		t.Fatalf("TW_FORWARD ids %v; the webhook got the second conversion %d times", n, p.hook.count("second"))
	}
}
