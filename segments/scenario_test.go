package segments

import (
	"testing"
	"time"
)

const day = 24 * time.Hour

const cartRules = `
rules:
  - name: cart_abandoners_7d
    min_size: 1
    include: {event: AddToCart, within: 7d}
    exclude: {event: CompletePayment, within: 30d}
`

// An AddToCart makes a cart abandoner at once; the profile leaves exactly
// 7 days after its last AddToCart (published at the first sweep after).
func TestScenarioCartAbandonerLeavesAfter7Days(t *testing.T) {
	r := newRig(t, cartRules)
	atc := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "u1"})
	r.expect(want{"add", "cart_abandoners_7d", "a:u1", atc, time.Time{}, "event AddToCart"})

	// A second AddToCart two days later moves the exit.
	r.clk.Add(2 * day)
	atc2 := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "u1"})
	r.expect()

	exit := atc2.Truncate(time.Second).Add(time.Second).Add(7 * day)
	r.clk.Add(7*day - time.Minute)
	r.sweep()
	r.expect() // one minute before: still in

	now := r.clk.Add(2 * time.Minute) // the sweep tick after the exit
	r.sweep()
	r.expect(want{"remove", "cart_abandoners_7d", "a:u1", now, exit, "window"})
	if now.Sub(exit) > time.Minute {
		t.Fatalf("published %s after the exit", now.Sub(exit))
	}
	r.sweep()
	r.expect()
}

// A purchase removes a cart abandoner at once; AddToCart within 30 days of
// a purchase does not make one; 30 days after the purchase it does again.
func TestScenarioCartAbandonerPurchase(t *testing.T) {
	r := newRig(t, cartRules)
	a := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "u2"})
	r.expect(want{"add", "cart_abandoners_7d", "a:u2", a, time.Time{}, "event AddToCart"})
	p := r.clk.Add(time.Hour)
	r.send(ev{name: "CompletePayment", anon: "u2"})
	r.expect(want{"remove", "cart_abandoners_7d", "a:u2", p, time.Time{}, "event CompletePayment"})

	r.clk.Add(25 * day)
	r.send(ev{name: "AddToCart", anon: "u2"}) // purchase 25 days ago: excluded
	r.expect()
	// The purchase leaves the 30-day exclusion 30 days after it, while the
	// AddToCart (5 days old then) still counts: the profile enters.
	enter := p.Truncate(time.Second).Add(time.Second).Add(30 * day)
	r.clk.Add(5*day - 30*time.Minute)
	r.sweep()
	r.expect()
	now := r.clk.Add(31 * time.Minute)
	r.sweep()
	r.expect(want{"add", "cart_abandoners_7d", "a:u2", now, enter, "window"})
}
