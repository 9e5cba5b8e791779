package segments

import (
	"context"
	"fmt"
	dto "github.com/prometheus/client_model/go"
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
	t.Run("default", func(t *testing.T) { crashBetweenPublishAndCommit(t, "") })
	// The redelivery comes a second later, long after a 100 ms duplicate
	// window: only reading TW_AUDIENCE back at start keeps the delta single.
	t.Run("window-shorter-than-the-outage", func(t *testing.T) {
		crashBetweenPublishAndCommit(t, "audience: {duplicate_window: 100ms}\n")
	})
}

func crashBetweenPublishAndCommit(t *testing.T, extra string) {
	r := newRig(t, extra+"ack_wait: 1s\n"+cartRules+`
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
	waitCrashed(t, r)                                                                      // the next commit "crashes"
	r.clk.Add(time.Second)                                                                 // the replay happens later: a different "at"
	r.restart()
	r.waitApplied(last) // redelivered after ack_wait and applied again
	r.expect()          // the same add, not published again
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

// Events delivered to an engine that died before applying them are applied
// by the next one, even when newer events reach it first. (With AckAll, the
// newer events' acknowledgement would otherwise acknowledge the older ones
// too before their redelivery: a SIGKILL test lost the first events so.)
func TestDeliveredButUnappliedSurviveNewerAcks(t *testing.T) {
	r := newRig(t, "ack_wait: 1s\n"+cartRules)
	r.e.mu.Lock()
	r.e.crashBeforeCommit = func() bool { return true }
	r.e.mu.Unlock()
	a := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "d1"})
	r.expect(want{"add", "cart_abandoners_7d", "a:d1", a, time.Time{}, ""})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitCrashed(t, r) // the commit "crashes"; from now on the engine applies nothing
	// Delivered to the dead engine, never applied, never published.
	lost := r.publishEvent(ctx, ev{name: "AddToCart", anon: "d2"})
	waitDelivered(t, r, lost)
	r.restart()
	b := r.clk.Add(time.Minute)
	r.send(ev{name: "AddToCart", anon: "d3"})
	r.e.mu.Lock()
	if err := r.e.commit(); err != nil { // acknowledges d3's message at once
		t.Fatal(err)
	}
	r.e.mu.Unlock()
	r.clk.Add(time.Second)
	time.Sleep(1500 * time.Millisecond) // past ack_wait: a redelivery would have come
	var got []Delta
	for deadline := time.Now().Add(5 * time.Second); len(got) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = append(got, r.newDeltas()...)
	}
	have := map[string]bool{}
	for _, d := range got {
		have[d.Profile] = true
	}
	if !have["a:d2"] || !have["a:d3"] || len(got) != 2 {
		t.Fatalf("after the restart (d3 at %v): %+v; want one add each for a:d2 and a:d3", b, got)
	}
	members(t, r.allDeltas())
}

// waitDelivered waits until the events consumer has delivered seq.
func waitDelivered(t *testing.T, r *rig, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		c, err := r.js.Consumer(ctx, eventsStream, EventsConsumer)
		if err != nil {
			t.Fatal(err)
		}
		if c.CachedInfo().Delivered.Stream >= seq {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("seq %d never delivered", seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A batch that fails (its deltas cannot be published) is dropped and
// applied again from the consumer's ack floor, before anything newer is
// acknowledged, without waiting for AckWait.
func TestFailedBatchIsReappliedBeforeNewerAcks(t *testing.T) {
	r := newRig(t, "ack_wait: 1h\n"+cartRules)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.js.DeleteStream(ctx, AudienceStream); err != nil {
		t.Fatal(err)
	}
	a := r.clk.Now()
	failed := r.publishEvent(ctx, ev{name: "AddToCart", anon: "f1"})
	for counterValue(r.e.m.errors) == 0 { // the batch failed
		if ctx.Err() != nil {
			t.Fatal("the batch did not fail")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.e.createAudienceStream(ctx); err != nil {
		t.Fatal(err)
	}
	r.send(ev{name: "AddToCart", anon: "f2"})
	if r.e.Applied() < failed {
		t.Fatalf("applied %d, want at least %d", r.e.Applied(), failed)
	}
	r.expect(want{"add", "cart_abandoners_7d", "a:f1", a, time.Time{}, ""}, want{"add", "cart_abandoners_7d", "a:f2", a, time.Time{}, ""})
	r.e.mu.Lock()
	err := r.e.commit()
	r.e.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	r.restart() // nothing left over
	r.expect()
	members(t, r.allDeltas())
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// waitCrashed waits until the engine's simulated crash (crashBeforeCommit)
// has happened.
func waitCrashed(t *testing.T, r *rig) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.e.mu.Lock()
		crashed := r.e.crashed
		r.e.mu.Unlock()
		if crashed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no crash")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// While a batch's deltas await their PubAcks the engine applies the next
// batch; a profile's deltas still reach TW_AUDIENCE in the order they were
// made, each once. With a backlog in batches of 2, a profile's AddToCart
// (an add) and its purchase (a remove) often fall in consecutive batches:
// the remove is made while the add is in flight.
func TestDeltasInOrderWhileInFlight(t *testing.T) {
	r := newRig(t, "batch: 2\nlinger: 1ms\nmax_uncommitted: 100000\ncommit: 1m\n"+cartRules)
	r.close() // a backlog: every event waits when the engine starts
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 300
	// Two messages apart, a profile's events never share a batch of 2.
	for i := range n {
		p := fmt.Sprintf("p%d", i)
		r.publishEvent(ctx, ev{name: "AddToCart", anon: p})
		r.publishEvent(ctx, ev{name: "PageView", anon: "other"})
		r.publishEvent(ctx, ev{name: "CompletePayment", anon: p})
	}
	last := r.publishEvent(ctx, ev{name: "PageView", anon: "other"})
	r.open()
	r.waitApplied(last)
	r.e.mu.Lock()
	made := r.e.madeInFlight
	err := r.e.commit()
	r.e.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if made == 0 {
		t.Fatalf("no profile was given a delta while its earlier one was in flight: the case is not exercised (%d deltas)", len(r.allDeltas()))
	}
	ds := r.allDeltas()
	m := members(t, ds) // fails on a remove before its add, or a second add
	adds := 0
	for _, d := range ds {
		if d.Op == "add" {
			adds++
		}
	}
	if in := inSet(m["cart_abandoners_7d"]); len(in) != 0 || adds != n || len(ds) != 2*n {
		t.Fatalf("%d deltas, %d adds; still members: %v", len(ds), adds, in)
	}
	t.Logf("%d profiles added and removed, %d given a delta while one was in flight", adds, made)
}
