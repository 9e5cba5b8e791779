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

// sec is when an event at t leaves a window w: Tagway keeps seconds, so the
// exit is at the end of the event's second.
func exitAt(t time.Time, w time.Duration) time.Time {
	return t.Truncate(time.Second).Add(time.Second).Add(w)
}

func TestScenarioCheckoutWithoutPurchase(t *testing.T) {
	r := newRig(t, `
rules:
  - name: checkout_7d_no_purchase
    min_size: 1
    include: {event: InitiateCheckout, within: 7d}
    exclude: {event: CompletePayment, within: 7d}
`)
	c := r.clk.Now()
	r.send(ev{name: "InitiateCheckout", anon: "c1"}, ev{name: "InitiateCheckout", anon: "c2"})
	r.expect(want{"add", "checkout_7d_no_purchase", "a:c1", c, time.Time{}, "event InitiateCheckout"},
		want{"add", "checkout_7d_no_purchase", "a:c2", c, time.Time{}, "event InitiateCheckout"})
	p := r.clk.Add(2 * day)
	r.send(ev{name: "CompletePayment", anon: "c2"})
	r.expect(want{"remove", "checkout_7d_no_purchase", "a:c2", p, time.Time{}, "event CompletePayment"})
	now := r.clk.Add(5*day + time.Minute)
	r.sweep()
	r.expect(want{"remove", "checkout_7d_no_purchase", "a:c1", now, exitAt(c, 7*day), "window"})
	// c2's purchase leaves its window after the checkout left its own: no add.
	r.clk.Add(10 * day)
	r.sweep()
	r.expect()
}

func TestScenarioProductAndPricingViewers(t *testing.T) {
	r := newRig(t, `
rules:
  - name: pricing_or_product_14d
    min_size: 1
    include:
      any:
        - {event: PageView, within: 14d, where: "page.url contains /pricing"}
        - {event: ViewContent, within: 14d, where: "contents.content_id in [sku-1, sku-2]"}
`)
	r.send(ev{name: "PageView", anon: "v1", url: "https://shop.example/about"},
		ev{name: "ViewContent", anon: "v2", props: `{"contents":[{"content_id":"sku-9"}]}`})
	r.expect()
	a := r.clk.Add(time.Hour)
	r.send(ev{name: "PageView", anon: "v1", url: "https://shop.example/pricing?plan=pro"},
		ev{name: "ViewContent", anon: "v2", props: `{"contents":[{"content_id":"sku-3"},{"content_id":"sku-2"}]}`})
	r.expect(want{"add", "pricing_or_product_14d", "a:v1", a, time.Time{}, "event PageView"},
		want{"add", "pricing_or_product_14d", "a:v2", a, time.Time{}, "event ViewContent"})
	now := r.clk.Add(14*day + time.Minute)
	r.sweep()
	r.expect(want{"remove", "pricing_or_product_14d", "a:v1", now, exitAt(a, 14*day), "window"},
		want{"remove", "pricing_or_product_14d", "a:v2", now, exitAt(a, 14*day), "window"})
}

func TestScenarioAllVisitorsWindows(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: visitors_30d, min_size: 1, include: {event: PageView, within: 30d}}
  - {name: visitors_60d, min_size: 1, include: {event: PageView, within: 60d}}
  - {name: visitors_90d, min_size: 1, include: {event: PageView, within: 90d}}
  - {name: visitors_180d, min_size: 1, include: {event: PageView, within: 180d}}
`)
	v := r.clk.Now()
	r.send(ev{name: "PageView", anon: "w1"})
	r.expect(want{"add", "visitors_30d", "a:w1", v, time.Time{}, ""}, want{"add", "visitors_60d", "a:w1", v, time.Time{}, ""},
		want{"add", "visitors_90d", "a:w1", v, time.Time{}, ""}, want{"add", "visitors_180d", "a:w1", v, time.Time{}, ""})
	for _, d := range []int{30, 60, 90, 180} {
		r.clk.Add(-time.Minute)
		r.clk.Add(exitAt(v, time.Duration(d)*day).Sub(r.clk.Now()) - time.Second)
		r.sweep()
		r.expect()
		now := r.clk.Add(time.Minute)
		r.sweep()
		name := map[int]string{30: "visitors_30d", 60: "visitors_60d", 90: "visitors_90d", 180: "visitors_180d"}[d]
		r.expect(want{"remove", name, "a:w1", now, exitAt(v, time.Duration(d)*day), "window"})
	}
	// Nothing is kept past the longest window.
	if s, _ := r.e.load("shop", "a:w1"); s != nil && len(s.streams) != 0 {
		t.Fatalf("state still holds %v", s.streams)
	}
}

func TestScenarioFrequentVisitors(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: frequent_14d, min_size: 1, include: {event: PageView, within: 14d, count: ">= 3"}}
`)
	first := r.clk.Now()
	r.send(ev{name: "PageView", anon: "f1"})
	r.clk.Add(day)
	r.send(ev{name: "PageView", anon: "f1"})
	r.expect()
	third := r.clk.Add(day)
	r.send(ev{name: "PageView", anon: "f1"})
	r.expect(want{"add", "frequent_14d", "a:f1", third, time.Time{}, "event PageView"})
	// The first of the three leaves the window 14 days after it: out.
	now := r.clk.Add(exitAt(first, 14*day).Sub(r.clk.Now()) + 30*time.Second)
	r.sweep()
	r.expect(want{"remove", "frequent_14d", "a:f1", now, exitAt(first, 14*day), "window"})
}

func TestScenarioVideoViewers75(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: video_75_30d, min_size: 1, include: {event: VideoProgress, within: 30d, where: "percent >= 75"}}
`)
	r.send(ev{name: "VideoProgress", anon: "m1", props: `{"percent":50}`})
	r.expect()
	a := r.clk.Add(time.Minute)
	r.send(ev{name: "VideoProgress", anon: "m1", props: `{"percent":75}`})
	r.expect(want{"add", "video_75_30d", "a:m1", a, time.Time{}, "event VideoProgress"})
	now := r.clk.Add(30*day + time.Minute)
	r.sweep()
	r.expect(want{"remove", "video_75_30d", "a:m1", now, exitAt(a, 30*day), "window"})
}

func TestScenarioLeads(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: leads_30d, min_size: 1, include: {event: Lead, within: 30d}}
`)
	a := r.clk.Now()
	r.send(ev{name: "Lead", anon: "l1"}, ev{name: "PageView", anon: "l2"})
	r.expect(want{"add", "leads_30d", "a:l1", a, time.Time{}, "event Lead"})
	now := r.clk.Add(30*day + time.Minute)
	r.sweep()
	r.expect(want{"remove", "leads_30d", "a:l1", now, exitAt(a, 30*day), "window"})
}

func TestScenarioHighValueCustomers(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: high_value_90d, min_size: 1, include: {event: CompletePayment, within: 90d, sum: "value >= 500"}}
`)
	p1 := r.clk.Now()
	r.send(ev{name: "CompletePayment", anon: "h1", props: `{"value":300,"currency":"EUR"}`})
	r.expect()
	p2 := r.clk.Add(10 * day)
	r.send(ev{name: "CompletePayment", anon: "h1", props: `{"value":250,"currency":"EUR"}`})
	r.expect(want{"add", "high_value_90d", "a:h1", p2, time.Time{}, "event CompletePayment"})
	// 90 days after the first purchase the sum is 250: out.
	now := r.clk.Add(exitAt(p1, 90*day).Sub(r.clk.Now()) + 10*time.Second)
	r.sweep()
	r.expect(want{"remove", "high_value_90d", "a:h1", now, exitAt(p1, 90*day), "window"})
}

func TestScenarioLapsedCustomers(t *testing.T) {
	r := newRig(t, `
rules:
  - name: lapsed_60_180
    min_size: 1
    include: {event: CompletePayment, within: 180d}
    exclude: {event: CompletePayment, within: 60d}
`)
	p := r.clk.Now()
	r.send(ev{name: "CompletePayment", anon: "x1", props: `{"value":20,"currency":"EUR"}`})
	r.expect()
	r.clk.Add(60*day - time.Minute)
	r.sweep()
	r.expect()
	now := r.clk.Add(2 * time.Minute)
	r.sweep()
	r.expect(want{"add", "lapsed_60_180", "a:x1", now, exitAt(p, 60*day), "window"})
	now = r.clk.Add(exitAt(p, 180*day).Sub(r.clk.Now()) + 20*time.Second)
	r.sweep()
	r.expect(want{"remove", "lapsed_60_180", "a:x1", now, exitAt(p, 180*day), "window"})
}

func TestScenarioProfileFilters(t *testing.T) {
	r := newRig(t, `
rules:
  - name: eu_known_visitors
    min_size: 1
    include:
      all:
        - {event: PageView, within: 30d}
        - {country: [DE, FR]}
        - any: [{has: email}, {has: phone}]
`)
	r.send(ev{name: "PageView", anon: "k1", country: "DE"}, ev{name: "PageView", anon: "k2", country: "US-CA", email: sha("k2@example.com")})
	r.expect()
	a := r.clk.Add(time.Minute)
	r.send(ev{name: "AddToCart", anon: "k1", country: "DE", email: sha("k1@example.com")})
	r.expect(want{"add", "eu_known_visitors", "a:k1", a, time.Time{}, "event AddToCart"})
	ds := r.allDeltas()
	if got := ds[len(ds)-1].Identifiers.EmailSHA256; got != sha("k1@example.com") {
		t.Fatalf("delta identifiers: email %q", got)
	}
}
