package forward

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tagway/tagway/gateway/units"
)

// routerAcks records what the router answers JetStream for each delivery:
// the reply subject of a delivery carries its delivery count
// ($JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>),
// the body the answer ("" or +ACK, -NAK, …).
type routerAcks struct {
	mu               sync.Mutex
	naks             int
	acks             map[string]int // stream sequence → acks
	redeliveredAcked int
}

func watchRouterAcks(t *testing.T, p *pipe) *routerAcks {
	t.Helper()
	r := &routerAcks{acks: map[string]int{}}
	sub, err := p.b.Conn().Subscribe("$JS.ACK.TW_EVENTS."+RouteConsumer+".>", func(m *nats.Msg) {
		tok := strings.Split(m.Subject, ".")
		if len(tok) < 7 {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		switch body := string(m.Data); {
		case strings.HasPrefix(body, "-NAK"):
			r.naks++
		case body == "" || body == "+ACK":
			r.acks[tok[5]]++
			if tok[4] != "1" {
				r.redeliveredAcked++
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := p.b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *routerAcks) counts() (naks, acked, redelivered int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.naks, len(r.acks), r.redeliveredAcked
}

// A conversion waits out its hold in memory: JetStream delivers it once,
// and the router acknowledges that delivery after the hold, without a nak
// and a redelivery in between.
func TestHoldWaitsInMemoryWithoutRedelivery(t *testing.T) {
	p := newPipe(t, only("tiktok"))
	acks := watchRouterAcks(t, p)
	sent := time.Now()
	for range 5 {
		p.publish(conv{name: "CompletePayment"})
	}
	waitFor(t, 5*time.Second, "conversions held in memory", func() bool { return p.metric("tagway_forward_held_in_memory") == 5 })
	waitFor(t, 10*time.Second, "deliveries", func() bool { return len(p.tiktok.EventIDs()) == 5 })
	waitFor(t, 5*time.Second, "the router's acks", func() bool { _, a, _ := acks.counts(); return a == 5 })
	if naks, _, redelivered := acks.counts(); naks != 0 || redelivered != 0 {
		t.Fatalf("%d naks and %d acks of redeliveries: the hold went through JetStream", naks, redelivered)
	}
	for _, r := range p.tiktok.Log() {
		if r.Time.Sub(sent) < 300*time.Millisecond {
			t.Fatalf("a request %s after the conversions, before their 300ms hold ended", r.Time.Sub(sent))
		}
	}
	if n := p.metric("tagway_forward_held_in_memory"); n != 0 {
		t.Fatalf("%v still held in memory after delivery", n)
	}
	if n := p.metric("tagway_forward_routed_total", "outcome", "held"); n != 5 {
		t.Fatalf("held counted %v times, want 5 (once per conversion)", n)
	}
}

// Beyond held_in_memory a conversion waits in JetStream (NakWithDelay) and
// still goes out once, after its hold.
func TestHoldBeyondMemoryLimitWaitsInJetStream(t *testing.T) {
	p := newPipe(t, only("tiktok"), func(p *pipe) { p.cfg.HeldInMemory = 2 })
	acks := watchRouterAcks(t, p)
	sent := time.Now()
	for range 6 {
		p.publish(conv{name: "CompletePayment"})
	}
	waitFor(t, 10*time.Second, "deliveries", func() bool { return len(p.tiktok.EventIDs()) == 6 })
	waitFor(t, 5*time.Second, "the router's acks", func() bool { _, a, _ := acks.counts(); return a == 6 })
	naks, _, redelivered := acks.counts()
	if naks != 4 || redelivered != 4 {
		t.Fatalf("%d naks, %d redeliveries acknowledged; want 4 and 4 (2 of 6 held in memory)", naks, redelivered)
	}
	for id, n := range p.tiktok.EventIDs() {
		if n != 1 {
			t.Fatalf("%s sent %d times", id, n)
		}
	}
	for _, r := range p.tiktok.Log() {
		if r.Time.Sub(sent) < 300*time.Millisecond {
			t.Fatalf("a request %s after the conversions, before their 300ms hold ended", r.Time.Sub(sent))
		}
	}
}

// Shutdown hands the conversions it holds back to JetStream for the rest of
// their hold: the next forwarder sends them when the hold ends, not after
// the router's AckWait (hold + 30 s).
func TestShutdownReturnsHeldConversions(t *testing.T) {
	const hold = 2 * time.Second
	p := newPipe(t, only("tiktok"), each(func(d *Destination) { d.Hold = units.Duration(hold) }))
	sent := time.Now()
	p.publish(conv{name: "CompletePayment", id: "o1"})
	p.publish(conv{name: "CompletePayment", id: "o2"})
	waitFor(t, 5*time.Second, "conversions held in memory", func() bool { return p.metric("tagway_forward_held_in_memory") == 2 })
	p.restart()
	waitFor(t, hold+5*time.Second, "deliveries after the restart", func() bool {
		ids := p.tiktok.EventIDs()
		return ids["o1"] == 1 && ids["o2"] == 1
	})
	if el := time.Since(sent); el < hold {
		t.Fatalf("delivered %s after publishing, before the %s hold ended", el, hold)
	}
}
