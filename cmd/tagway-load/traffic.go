package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// traffic makes realistic request bodies: server batches of 20 events and
// browser beacons of 1–5, over a space of profiles, and ~20 % of server
// events being the server copy of an earlier browser purchase (dedup hits).
// Consent signals come as on real sites: from the browser's CMP, the same for
// a given visitor every time (some denying), and not from backends.
type traffic struct {
	profiles int
	times    *sendTimes // when each browser profile last sent (nil: not kept)
	seq      atomic.Int64
	// purchases are browser purchase ids the server has received, each
	// copied once by a server event (seed fills it before the server runs).
	mu        sync.Mutex
	purchases []string
	copies    atomic.Int64 // server copies sent
	keep      bool         // browser purchases are kept for copies
}

// funnel is a shop's browser event mix (weights in %): most events are page
// and product views, few are purchases. Of these, the TikTok destination's
// default events forward ViewContent, AddToCart, InitiateCheckout and
// CompletePayment: 45 %.
var funnel = []struct {
	name   string
	weight int
}{{"PageView", 55}, {"ViewContent", 30}, {"AddToCart", 8}, {"InitiateCheckout", 4}, {"CompletePayment", 3}}

func pick(r *rand.Rand) string {
	n := r.IntN(100)
	for _, f := range funnel {
		if n < f.weight {
			return f.name
		}
		n -= f.weight
	}
	return funnel[0].name
}

var tcfGrant = "CP9HEwAP9HEwAAfAFCDEDwEoAPLAAEMAAAqIABuAAAAA" // IAB-encoded fixture (purposes 1-4, 7, 9, 10)

var consentMix = []string{
	``, ``, ``, // most requests carry no signal (regime none/opt-out)
	`,"consent":{"usp":"1YNN"}`,
	`,"consent":{"usp":"1YYN"}`, // sale opt-out
	`,"consent":{"gpc":true}`,
	`,"consent":{"tcf":"` + tcfGrant + `"}`,
	`,"consent":{"gpp":"DBABLA~CVVpGGGGkmVk.YA","gpp_sid":[7]}`,
}

func (t *traffic) profile(r *rand.Rand) int { return r.IntN(t.profiles) }

// browser returns a beacon of 1–5 events and the anon id to send as cookie.
func (t *traffic) browser(r *rand.Rand) (body string, anon string, events int) {
	p := t.profile(r)
	anon = fmt.Sprintf("%032x", p)
	t.times.sent(p, time.Now())
	n := 1 + r.IntN(5)
	var sb strings.Builder
	sb.WriteString(`{"site":"bench"` + consentMix[p%len(consentMix)] + `,"data":[`)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("b-%d", t.seq.Add(1))
		name := pick(r)
		if name == "CompletePayment" {
			t.kept(id)
		}
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"event":%q,"event_id":%q,"page":{"url":"https://shop.example/p/%d"},"properties":{"value":%d.5,"currency":"USD","contents":[{"content_id":"sku-%d","quantity":1,"price":9.5}]}}`,
			name, id, r.IntN(1000), r.IntN(300), r.IntN(5000))
	}
	sb.WriteString(`]}`)
	return sb.String(), anon, n
}

// server returns a batch of n server events; ~20 % copy a browser event.
func (t *traffic) server(r *rand.Rand, n int) string {
	var sb strings.Builder
	sb.WriteString(`{"site":"bench","data":[`)
	for i := 0; i < n; i++ {
		id, name := fmt.Sprintf("s-%d", t.seq.Add(1)), "Lead"
		if r.IntN(5) == 0 {
			if v, ok := t.copy(); ok {
				id, name = v, "CompletePayment"
			}
		}
		if i > 0 {
			sb.WriteByte(',')
		}
		p := t.profile(r)
		fmt.Fprintf(&sb, `{"event":%q,"event_id":%q,"user":{"email":"user%d@example.com","external_id":"cust-%d","ip":"203.0.113.%d","user_agent":"Mozilla/5.0"},"properties":{"value":%d,"currency":"EUR"}}`,
			name, id, p, p, r.IntN(250), r.IntN(500))
	}
	sb.WriteString(`]}`)
	return sb.String()
}

// kept records a browser purchase for a later server copy.
func (t *traffic) kept(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keep && len(t.purchases) < 1<<20 {
		t.purchases = append(t.purchases, id)
	}
}

// copy takes a browser purchase not copied yet, oldest first.
func (t *traffic) copy() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.purchases) == 0 {
		return "", false
	}
	id := t.purchases[0]
	t.purchases = t.purchases[1:]
	t.copies.Add(1)
	return id, true
}

// purchaseBeacon is a browser beacon of n purchases (seeding server copies).
func (t *traffic) purchaseBeacon(r *rand.Rand, n int) (body, anon string) {
	p := t.profile(r)
	anon = fmt.Sprintf("%032x", p)
	var sb strings.Builder
	sb.WriteString(`{"site":"bench"` + consentMix[p%len(consentMix)] + `,"data":[`)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("b-%d", t.seq.Add(1))
		t.kept(id)
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"event":"CompletePayment","event_id":%q,"properties":{"value":%d.5,"currency":"USD"}}`, id, r.IntN(300))
	}
	sb.WriteString(`]}`)
	return sb.String(), anon
}
