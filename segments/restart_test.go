package segments

import (
	"context"
	"testing"
	"time"
)

// The cart scenario with a restart (stop, reopen on the same data) between
// every step gives the same deltas at the same times.
func TestRestartMidScenarioSameDeltas(t *testing.T) {
	r := newRig(t, cartRules)
	a := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "r1"}, ev{name: "AddToCart", anon: "r2"})
	r.expect(want{"add", "cart_abandoners_7d", "a:r1", a, time.Time{}, ""}, want{"add", "cart_abandoners_7d", "a:r2", a, time.Time{}, ""})
	r.restart()
	p := r.clk.Add(day)
	r.send(ev{name: "CompletePayment", anon: "r2"})
	r.expect(want{"remove", "cart_abandoners_7d", "a:r2", p, time.Time{}, "event CompletePayment"})
	r.restart()
	r.clk.Add(6*day - 2*time.Minute)
	r.sweep()
	r.expect()
	r.restart()
	now := r.clk.Add(3 * time.Minute)
	r.sweep()
	r.expect(want{"remove", "cart_abandoners_7d", "a:r1", now, exitAt(a, 7*day), "window"})
	r.restart()
	r.clk.Add(40 * day)
	r.sweep()
	r.expect()
	members(t, r.allDeltas()) // no duplicate add, no remove without add
}

// A crash after a batch's deltas are published and before its state is
// stored: the restarted engine applies the redelivered events again and
// recomputes the same deltas with the same ids, which JetStream drops as
// duplicates; the events are not counted twice.
func TestCrashBetweenPublishAndCommit(t *testing.T) {
	r := newRig(t, "ack_wait: 1s\n"+cartRules+`
  - {name: carts_twice, min_size: 1, include: {event: AddToCart, within: 7d, count: ">= 3"}}
`)
	a := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "k1"})
	r.expect(want{"add", "cart_abandoners_7d", "a:k1", a, time.Time{}, ""})
	r.e.mu.Lock()
	if err := r.e.commit(); err != nil {
		t.Fatal(err)
	}
	r.e.crashBeforeCommit = func() bool { return true }
	r.e.mu.Unlock()

	b := r.clk.Add(time.Minute)
	r.send(ev{name: "AddToCart", anon: "k2"}, ev{name: "AddToCart", anon: "k1"})
	last := r.e.Applied()
	r.expect(want{"add", "cart_abandoners_7d", "a:k2", b, time.Time{}, "event AddToCart"}) // published
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for { // the next commit "crashes"
		r.e.mu.Lock()
		crashed := r.e.crashed
		r.e.mu.Unlock()
		if crashed {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no crash")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.clk.Add(time.Second) // the replay happens later: a different "at"
	r.restart()
	r.waitApplied(last) // redelivered after ack_wait and applied again
	r.expect()          // the same add, dropped by TW_AUDIENCE's duplicate window
	// k1 has two AddToCarts, not three: one more makes "carts_twice".
	s, _ := r.e.load("shop", "a:k1")
	total := 0
	for _, es := range s.streams {
		for _, x := range es {
			total += int(x.count)
		}
	}
	if total != 2 {
		t.Fatalf("k1 has %d AddToCarts recorded, want 2", total)
	}
	c := r.clk.Add(time.Minute)
	r.send(ev{name: "AddToCart", anon: "k1"})
	r.expect(want{"add", "carts_twice", "a:k1", c, time.Time{}, ""})
	members(t, r.allDeltas())
}

// A rule change at start-up: memberships are recomputed from stored state
// and only the differences are published.
func TestRuleChangeAtStartup(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: cart, min_size: 1, include: {event: AddToCart, within: 7d}}
  - {name: visitors_30d, min_size: 1, include: {event: PageView, within: 30d}}
`)
	a := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "u1"}, ev{name: "PageView", anon: "u1"})
	r.clk.Add(4 * day)
	b := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "u2"}, ev{name: "PageView", anon: "u2"}, ev{name: "PageView", anon: "u2"})
	r.expect(want{"add", "cart", "a:u1", a, time.Time{}, ""}, want{"add", "visitors_30d", "a:u1", a, time.Time{}, ""},
		want{"add", "cart", "a:u2", b, time.Time{}, ""}, want{"add", "visitors_30d", "a:u2", b, time.Time{}, ""})
	r.rules = `
rules:
  - {name: cart, min_size: 1, include: {event: AddToCart, within: 3d}}
  - {name: frequent_2, min_size: 1, include: {event: PageView, within: 30d, count: ">= 2"}}
`
	now := r.clk.Add(day)
	r.restart()
	r.expect(want{"remove", "cart", "a:u1", now, time.Time{}, "rule change"},
		want{"remove", "visitors_30d", "a:u1", now, time.Time{}, "segment removed"},
		want{"remove", "visitors_30d", "a:u2", now, time.Time{}, "segment removed"},
		want{"add", "frequent_2", "a:u2", now, time.Time{}, "rule change"})
	// The same rules again: nothing to do.
	r.restart()
	r.expect()
	if l := r.e.List(); l[0].Members != 1 || l[1].Members != 1 {
		t.Fatalf("list after the change: %+v", l)
	}
}
