package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/forward/forwardtest"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/units"
)

// The acceptance tests: chaos, dead letters and replay,
// withdrawal of consent during the hold, and restarts mid-delivery. Each
// runs the real forwarder on an embedded JetStream and Badger against the
// fakes (pipeline_helpers_test.go).

// fake is what the tests read from either fake API.
type fake interface {
	EventIDs() map[string]int
	WaitEventIDs(n int, timeout time.Duration) bool
	Log() []forwardtest.Request
	Requests() int
	Accepted() int
	Events() int
	SetChaos(forwardtest.Chaos)
	RejectEvents(func(string) bool)
	Accept()
}

func (p *pipe) fakes() map[string]fake { return map[string]fake{"tiktok": p.tiktok, "meta": p.meta} }

// bodyEventIDs returns the event_ids in a request body's data[], which
// both APIs share; the fakes leave Request.EventIDs empty for requests
// they failed by chaos.
func bodyEventIDs(body []byte) []string {
	var b struct {
		Data []struct {
			EventID string `json:"event_id"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &b)
	ids := make([]string, len(b.Data))
	for i, e := range b.Data {
		ids[i] = e.EventID
	}
	return ids
}

// publishAll publishes convs from workers goroutines at once.
func (p *pipe) publishAll(t *testing.T, workers int, convs []conv) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(convs); i += workers {
				if _, err := p.tryPublish(convs[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// checkAll fails unless f accepted exactly the event_ids want (each at
// least once), and returns the wire duplicates: accepted deliveries beyond
// the first.
func checkAll(t *testing.T, name string, f fake, want []string) (dups int) {
	t.Helper()
	got := f.EventIDs()
	var missing, extra []string
	for _, id := range want {
		if got[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range got {
		if !slices.Contains(want, id) {
			extra = append(extra, id)
		}
		dups += n - 1
	}
	if len(missing) > 0 || len(extra) > 0 {
		slices.Sort(missing)
		slices.Sort(extra)
		t.Errorf("%s: %d of %d conversions missing (first: %v), %d unexpected (%v)", name, len(missing), len(want), missing[:min(len(missing), 10)], len(extra), extra[:min(len(extra), 10)])
	}
	return dups
}

// Half the requests to both APIs fail (500, 429 with Retry-After: 1,
// requests held past the client's timeout, dropped connections) while a
// few thousand conversions are published at once: every one of them
// reaches both APIs, none is lost, and the forwarder's metrics agree with
// what the fakes saw.
func TestChaosDeliversEveryConversion(t *testing.T) {
	if testing.Short() {
		t.Skip("a chaos run of 3000 conversions; not in -short")
	}
	const n = 3000
	start := time.Now()
	p := newPipe(t, only("tiktok", "meta"), each(func(d *Destination) {
		d.BatchSize = 100
		d.Timeout = units.Duration(500 * time.Millisecond)
		d.MinBackoff, d.MaxBackoff = units.Duration(50*time.Millisecond), units.Duration(1500*time.Millisecond)
	}))
	kinds := []forwardtest.ChaosKind{forwardtest.Status500, forwardtest.Status429, forwardtest.Timeout, forwardtest.DropConnection}
	seed := uint64(time.Now().UnixNano())
	t.Logf("chaos seed %d", seed)
	p.tiktok.SetChaos(forwardtest.Chaos{Rate: 0.5, Seed: seed, Kinds: kinds, RetryAfter: time.Second, Hold: 2 * time.Second})
	p.meta.SetChaos(forwardtest.Chaos{Rate: 0.5, Seed: seed + 1, Kinds: kinds, RetryAfter: time.Second, Hold: 2 * time.Second})

	convs := make([]conv, n)
	want := make([]string, n)
	for i := range convs {
		want[i] = fmt.Sprintf("c%04d", i)
		convs[i] = conv{name: "CompletePayment", id: want[i], anon: fmt.Sprintf("b%d", i%97), allowed: []string{"forward:tiktok", "forward:meta"}}
	}
	p.publishAll(t, 8, convs)
	published := time.Since(start)
	deadline := time.Now().Add(45 * time.Second)
	for name, f := range p.fakes() {
		if !f.WaitEventIDs(n, time.Until(deadline)) {
			t.Errorf("%s: %d of %d conversions after 45s", name, len(f.EventIDs()), n)
		}
	}
	delivered := time.Since(start)

	for _, name := range []string{"tiktok", "meta"} {
		f := p.fakes()[name]
		dups := checkAll(t, name, f, want)
		// What the fake saw, by kind of failure; and Retry-After was
		// honoured: no event of a 429 was sent again within the second.
		log := f.Log()
		byKind := map[forwardtest.ChaosKind]int{}
		early := 0
		for i, r := range log {
			byKind[r.Chaos]++
			if r.Chaos != forwardtest.Status429 {
				continue
			}
			ids := bodyEventIDs(r.Body)
		next:
			for _, later := range log[i+1:] {
				for _, id := range bodyEventIDs(later.Body) {
					if slices.Contains(ids, id) {
						if later.Time.Sub(r.Time) < 900*time.Millisecond {
							early++
						}
						break next
					}
				}
			}
		}
		t.Logf("%s: %d requests (%d accepted), chaos %v; %d events accepted for %d conversions: %d wire duplicates",
			name, len(log), f.Accepted(), byKind, f.Events(), n, dups)
		for _, k := range kinds {
			if byKind[k] == 0 {
				t.Errorf("%s: no %s chaos happened; the run did not test it", name, k)
			}
		}
		if failed := len(log) - f.Accepted(); failed < len(log)/3 {
			t.Errorf("%s: only %d of %d requests failed; chaos was not ~50%%", name, failed, len(log))
		}
		if early > 0 {
			t.Errorf("%s: %d requests retried events of a 429 before its Retry-After (1s)", name, early)
		}

		// The forwarder's own account agrees with the fake's.
		pub := p.metric("tagway_forward_published_total", "destination", name)
		del := p.metric("tagway_forward_delivered_total", "destination", name)
		ret := p.metric("tagway_forward_retried_total", "destination", name)
		dead := p.metric("tagway_forward_dead_lettered_total", "destination", name)
		if pub != n || del < pub || del > float64(f.Events()) || ret == 0 || dead != 0 {
			t.Errorf("%s metrics: published %v delivered %v retried %v dead %v; want published %d ≤ delivered ≤ %d events the fake accepted, retried > 0, no dead letters",
				name, pub, del, ret, dead, n, f.Events())
		}
		waitFor(t, 5*time.Second, name+" request metrics to match the fake", func() bool {
			return p.metric("tagway_forward_requests_total", "destination", name) == float64(f.Requests())
		})
		if ok := p.metric("tagway_forward_requests_total", "destination", name, "outcome", "ok"); ok == 0 || ok > float64(f.Accepted()) ||
			p.metric("tagway_forward_requests_total", "destination", name, "outcome", "rejected") != 0 {
			t.Errorf("%s: %v requests ok by the forwarder's count, %d accepted by the fake, %v rejected", name, ok, f.Accepted(),
				p.metric("tagway_forward_requests_total", "destination", name, "outcome", "rejected"))
		}
	}
	t.Logf("published %d conversions in %s; all delivered to both after %s", n, published.Round(time.Millisecond), delivered.Round(time.Millisecond))
}

// deadLetters reads dest's dead letters through the forwarder.
func (p *pipe) deadLetters(t *testing.T, dest string, since time.Time) []DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []DeadLetter
	if err := p.f.DeadLetters(ctx, dest, since, func(dl DeadLetter, _ jetstream.Msg) error {
		out = append(out, dl)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func (p *pipe) replay(t *testing.T, dest string, since time.Time) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := p.f.Replay(ctx, dest, since)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func deadIDs(dls []DeadLetter) []string {
	var ids []string
	for _, dl := range dls {
		ids = append(ids, dl.EventID)
	}
	return ids
}

// batch returns n conversions g<tag><i> with bad in the middle.
func batch(tag string, n int, bad string) ([]conv, []string) {
	var convs []conv
	var good []string
	for i := range n {
		id := fmt.Sprintf("g%s%02d", tag, i)
		if i == n/2 {
			id = bad
		} else {
			good = append(good, id)
		}
		convs = append(convs, conv{name: "CompletePayment", id: id, anon: "b" + id, allowed: []string{"forward:tiktok", "forward:meta"}})
	}
	return convs, good
}

// One event the API refuses (a parameter error) is bisected out of its
// batch and dead-lettered with the answer, while the rest of the batch is
// delivered; DeadLetters lists it, Replay sends it again once the API
// accepts, only once, and honours since.
func TestRejectedConversionIsDeadLetteredAndReplayed(t *testing.T) {
	p := newPipe(t, only("tiktok", "meta"), each(func(d *Destination) {
		// One worker and a long linger: the conversions published
		// together are fetched as one batch.
		d.Concurrency = 1
		d.Linger = units.Duration(time.Second)
	}))
	for _, f := range p.fakes() {
		f.RejectEvents(func(id string) bool { return id == "bad1" || id == "bad2" })
	}
	convs, good := batch("a", 31, "bad1")
	p.publishAll(t, 1, convs)
	for name, f := range p.fakes() {
		waitFor(t, 15*time.Second, name+": the good events and one dead letter", func() bool {
			got := f.EventIDs()
			for _, id := range good {
				if got[id] == 0 {
					return false
				}
			}
			return p.metric("tagway_forward_dead_lettered_total", "destination", name, "reason", "rejected") == 1
		})
		if got := f.EventIDs(); got["bad1"] != 0 || len(got) != len(good) {
			t.Errorf("%s accepted %d events (bad1 %d times), want the %d good ones", name, len(got), got["bad1"], len(good))
		}
		// bad1 was refused in a request with the others first: bisection.
		withOthers, requests := false, 0
		for _, r := range f.Log() {
			if slices.Contains(r.EventIDs, "bad1") {
				requests++
				withOthers = withOthers || len(r.EventIDs) > 1
			}
		}
		if !withOthers || requests < 3 {
			t.Errorf("%s: bad1 was in %d requests, with other events: %v; want it bisected out of its batch", name, requests, withOthers)
		}
	}

	// The dead letters on tw.forward.dead.<dest>, with the answer.
	wantStatus := map[string]string{"tiktok": "200", "meta": "400"} // TikTok answers errors with HTTP 200 and a code
	wantReason := map[string]string{"tiktok": `"code":40002`, "meta": `"code":100`}
	deadAt := time.Now()
	for _, name := range []string{"tiktok", "meta"} {
		var dead []bustest.Msg
		for _, m := range bustest.ReadStream(t, p.js, ForwardStream) {
			if m.Subject == DeadSubject(name) {
				dead = append(dead, m)
			}
		}
		if len(dead) != 1 {
			t.Fatalf("%d dead letters on %s, want 1", len(dead), DeadSubject(name))
		}
		h := dead[0].Header
		if h.Get(HeaderEventID) != "bad1" || h.Get(HeaderDeadSubject) != Subject(name, "CompletePayment") ||
			h.Get(HeaderDeadStatus) != wantStatus[name] || !strings.Contains(h.Get(HeaderDeadReason), wantReason[name]) ||
			!strings.Contains(h.Get(HeaderDeadReason), "RejectEvents") || h.Get(HeaderDeadAt) == "" || h.Get(HeaderSite) != "shop" {
			t.Errorf("%s dead letter headers: %v", name, h)
		}
		if ids := bodyEventIDs([]byte(`{"data":[` + string(dead[0].Data) + `]}`)); len(ids) != 1 || ids[0] != "bad1" {
			t.Errorf("%s dead letter payload: %s", name, dead[0].Data)
		}
		dls := p.deadLetters(t, name, time.Time{})
		if len(dls) != 1 || dls[0].EventID != "bad1" || dls[0].Event != "CompletePayment" || dls[0].Subject != Subject(name, "CompletePayment") ||
			fmt.Sprint(dls[0].Status) != wantStatus[name] || !strings.Contains(dls[0].Reason, wantReason[name]) ||
			dls[0].At.IsZero() || dls[0].At.After(deadAt) || dls[0].Seq != dead[0].Seq {
			t.Errorf("%s DeadLetters: %+v", name, dls)
		}
	}

	// A second batch, dead-lettered later: since tells them apart.
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	convs, good2 := batch("b", 9, "bad2")
	p.publishAll(t, 1, convs)
	for name, f := range p.fakes() {
		waitFor(t, 15*time.Second, name+": the second batch", func() bool {
			got := f.EventIDs()
			for _, id := range good2 {
				if got[id] == 0 {
					return false
				}
			}
			return p.metric("tagway_forward_dead_lettered_total", "destination", name, "reason", "rejected") == 2
		})
		if got := deadIDs(p.deadLetters(t, name, time.Time{})); !slices.Equal(got, []string{"bad1", "bad2"}) {
			t.Errorf("%s: all dead letters %v, want [bad1 bad2] (oldest first)", name, got)
		}
		if got := deadIDs(p.deadLetters(t, name, since)); !slices.Equal(got, []string{"bad2"}) {
			t.Errorf("%s: dead letters since %s: %v, want [bad2]", name, since.Format(time.RFC3339Nano), got)
		}
		if got := p.deadLetters(t, name, time.Now().Add(time.Minute)); len(got) != 0 {
			t.Errorf("%s: dead letters since a minute ahead: %v", name, deadIDs(got))
		}
	}

	// Replay while the API still refuses: the letter comes back dead, and
	// is listed once.
	if n := p.replay(t, "meta", since); n != 1 {
		t.Fatalf("replaying meta since: %d, want 1", n)
	}
	waitFor(t, 15*time.Second, "meta's replayed bad2 dead again", func() bool {
		return p.metric("tagway_forward_dead_lettered_total", "destination", "meta", "reason", "rejected") == 3
	})
	if got := deadIDs(p.deadLetters(t, "meta", time.Time{})); !slices.Equal(got, []string{"bad1", "bad2"}) {
		t.Errorf("meta dead letters after a refused replay: %v, want [bad1 bad2]", got)
	}

	// The API is fixed: a replay since sends only bad2, then one without
	// since sends bad1; nothing is left to replay after.
	for name, f := range p.fakes() {
		f.Accept()
		if n := p.replay(t, name, since); n != 1 {
			t.Errorf("%s: Replay since = %d, want 1", name, n)
		}
		waitFor(t, 15*time.Second, name+": bad2 replayed", func() bool { return f.EventIDs()["bad2"] == 1 })
		if got := deadIDs(p.deadLetters(t, name, time.Time{})); !slices.Equal(got, []string{"bad1"}) {
			t.Errorf("%s: dead letters after replaying since: %v, want [bad1]", name, got)
		}
		if n := p.replay(t, name, time.Time{}); n != 1 {
			t.Errorf("%s: Replay = %d, want 1", name, n)
		}
		waitFor(t, 15*time.Second, name+": bad1 replayed", func() bool { return f.EventIDs()["bad1"] == 1 })
		if n := p.replay(t, name, time.Time{}); n != 0 {
			t.Errorf("%s: second Replay = %d, want 0", name, n)
		}
		if got := p.deadLetters(t, name, time.Time{}); len(got) != 0 {
			t.Errorf("%s: dead letters left: %v", name, deadIDs(got))
		}
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would show now
	for name, f := range p.fakes() {
		for id, n := range f.EventIDs() {
			if n != 1 {
				t.Errorf("%s accepted %s %d times", name, id, n)
			}
		}
		if got := p.metric("tagway_forward_delivered_total", "destination", name); got != float64(len(good)+len(good2)+2) {
			t.Errorf("%s: delivered %v, want %d", name, got, len(good)+len(good2)+2)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.f.Replay(ctx, "nope", time.Time{}); !errors.Is(err, ErrUnknownDestination) {
		t.Errorf("Replay of an unknown destination: %v", err)
	}
}

// A wrong access token dead-letters the whole batch at once: every event
// would fail alike, so the batch is not bisected.
func TestAuthenticationFailureDeadLettersTheBatch(t *testing.T) {
	p := newPipe(t, only("tiktok", "meta"), func(p *pipe) {
		p.env["WRONG"] = "not-the-token"
		for i := range p.dests {
			p.dests[i].AccessTokenEnv = "WRONG"
			p.dests[i].Concurrency = 1
			p.dests[i].Linger = units.Duration(time.Second)
		}
	})
	convs, good := batch("a", 32, "x")
	p.publishAll(t, 1, convs)
	all := append(good, "x")
	wantReason := map[string]string{"tiktok": `"code":40105`, "meta": `"code":190`}
	for name, f := range p.fakes() {
		waitFor(t, 15*time.Second, name+": every conversion dead-lettered", func() bool {
			return p.metric("tagway_forward_dead_lettered_total", "destination", name, "reason", "rejected") == float64(len(all))
		})
		dls := p.deadLetters(t, name, time.Time{})
		got := deadIDs(dls)
		slices.Sort(got)
		slices.Sort(all)
		if !slices.Equal(got, all) {
			t.Errorf("%s dead letters: %v, want %v", name, got, all)
		}
		for _, dl := range dls {
			if !strings.Contains(dl.Reason, wantReason[name]) {
				t.Errorf("%s dead letter %s: reason %q, want %s", name, dl.EventID, dl.Reason, wantReason[name])
				break
			}
		}
		// One request per batch (a batch may straddle two fetches);
		// bisection would have taken 63.
		if f.Requests() > 3 || f.Accepted() != 0 {
			t.Errorf("%s saw %d requests (%d accepted) for %d conversions, want one or two, none accepted", name, f.Requests(), f.Accepted(), len(all))
		}
		if r := p.metric("tagway_forward_requests_total", "destination", name, "outcome", "rejected"); r != float64(f.Requests()) {
			t.Errorf("%s: %v requests rejected by the forwarder's count, the fake saw %d", name, r, f.Requests())
		}
	}
}

// Consent withdrawn during the hold: nothing more of that profile reaches
// TikTok, the skip is counted and audited; other profiles are delivered,
// and so is Meta, which the profile still allows.
func TestWithdrawnConsentIsNotDelivered(t *testing.T) {
	const hold = time.Second
	p := newPipe(t, each(func(d *Destination) { d.Hold = units.Duration(hold) }))
	start := time.Now()
	a1 := p.publish(conv{name: "CompletePayment", id: "a1", anon: "ba"})
	p.publish(conv{name: "AddToCart", id: "a2", anon: "ba"})
	b1 := p.publish(conv{name: "CompletePayment", id: "b1", anon: "bb"})
	p.consent.set(a1.Profile, "forward:tiktok", false)
	p.consent.set(b1.Profile, "forward:tiktok", true) // a known state that allows
	if el := time.Since(start); el >= hold/2 {
		t.Fatalf("consent was withdrawn %s after the conversions, not during their %s hold", el, hold)
	}
	waitFor(t, 10*time.Second, "the allowed deliveries", func() bool {
		m, tt := p.meta.EventIDs(), p.tiktok.EventIDs()
		return m["a1"] == 1 && m["a2"] == 1 && m["b1"] == 1 && tt["b1"] == 1 && p.hook.count("a1") == 1
	})
	// The skips were decided in the same batches; give a late one time.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) &&
		p.metric("tagway_forward_skipped_total", "destination", "tiktok") < 2; {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a late delivery would show now
	for _, r := range p.tiktok.Log() {
		for _, id := range bodyEventIDs(r.Body) {
			if id == "a1" || id == "a2" {
				t.Errorf("TikTok got %s of the profile that withdrew consent, %s after its conversions", id, r.Time.Sub(start))
			}
		}
	}
	if got := p.tiktok.EventIDs(); len(got) != 1 {
		t.Errorf("TikTok accepted %v, want only b1", got)
	}
	if got := p.metric("tagway_forward_skipped_total", "destination", "tiktok", "reason", "consent_withdrawn"); got != 2 {
		t.Errorf("tagway_forward_skipped_total{tiktok,consent_withdrawn} = %v, want 2", got)
	}
	if got := p.metric("tagway_forward_skipped_total", "destination", "meta") + p.metric("tagway_forward_skipped_total", "destination", "hook"); got != 0 {
		t.Errorf("%v skips counted for meta and hook, want 0", got)
	}
	if got := p.metric("tagway_forward_delivered_total", "destination", "tiktok"); got != 1 {
		t.Errorf("tiktok delivered %v, want 1", got)
	}
	p.consent.mu.Lock()
	skipped := slices.Sorted(slices.Values(p.consent.skipped))
	p.consent.mu.Unlock()
	if !slices.Equal(skipped, []string{"tiktok|a1", "tiktok|a2"}) {
		t.Errorf("audited skips %v, want tiktok|a1 and tiktok|a2", skipped)
	}
}

// Restarting the forwarder (Shutdown, New, Start on the same NATS and
// Badger) four times while conversions are being published, routed and
// delivered loses none, and sends none twice.
func TestRestartMidDeliveryLosesNothing(t *testing.T) {
	const n = 1500
	p := newPipe(t, only("tiktok", "meta"), each(func(d *Destination) {
		d.BatchSize, d.Concurrency = 50, 2 // the harness's 2s timeout
		// Workers spend most of their time in a fetch, so a restart often
		// catches one that returns messages as Shutdown begins.
		d.Linger = units.Duration(500 * time.Millisecond)
	}))
	// Some failures, so requests, retries and backoffs are in flight when
	// the forwarder stops.
	kinds := []forwardtest.ChaosKind{forwardtest.Status500, forwardtest.Timeout, forwardtest.DropConnection}
	p.tiktok.SetChaos(forwardtest.Chaos{Rate: 0.2, Seed: 7, Kinds: kinds, Hold: 3 * time.Second})
	p.meta.SetChaos(forwardtest.Chaos{Rate: 0.2, Seed: 8, Kinds: kinds, Hold: 3 * time.Second})
	want := make([]string, n)
	convs := make([]conv, n)
	for i := range convs {
		want[i] = fmt.Sprintf("r%04d", i)
		convs[i] = conv{name: "CompletePayment", id: want[i], anon: fmt.Sprintf("b%d", i%31), allowed: []string{"forward:tiktok", "forward:meta"}}
	}
	// Published in the background, through the restarts.
	done := make(chan struct{})
	var perr error
	go func() {
		defer close(done)
		for i, c := range convs {
			if _, err := p.tryPublish(c); err != nil {
				perr = err
				return
			}
			if i%50 == 49 {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	start := time.Now()
	for i, at := range []int{100, 400, 700, 1000} {
		if !p.tiktok.WaitEventIDs(at, 20*time.Second) {
			t.Fatalf("restart %d: tiktok has %d conversions, waited for %d", i+1, len(p.tiktok.EventIDs()), at)
		}
		tt, mt := len(p.tiktok.EventIDs()), len(p.meta.EventIDs())
		if tt == n && mt == n {
			t.Fatalf("restart %d: everything was delivered already; the restart is not mid-delivery", i+1)
		}
		t.Logf("restart %d after %s: tiktok has %d, meta %d of %d", i+1, time.Since(start).Round(time.Millisecond), tt, mt, n)
		p.restart()
	}
	<-done
	if perr != nil {
		t.Fatal(perr)
	}
	deadline := time.Now().Add(20 * time.Second)
	for name, f := range p.fakes() {
		if !f.WaitEventIDs(n, time.Until(deadline)) {
			t.Errorf("%s: %d of %d conversions after the restarts", name, len(f.EventIDs()), n)
		}
	}
	if t.Failed() {
		p.logConsumers(t)
		p.logRouted(t, want)
	}
	for _, name := range slices.Sorted(maps.Keys(p.fakes())) {
		f := p.fakes()[name]
		dups := checkAll(t, name, f, want)
		t.Logf("%s: %d requests, %d events accepted for %d conversions: %d wire duplicates", name, f.Requests(), f.Events(), n, dups)
		// Shutdown lets the requests in flight finish: a batch the API
		// accepted is not sent again after the restart. (Chaos never
		// accepts a request it fails, and no answer is slower than the 2s
		// timeout, so nothing else duplicates.)
		if dups != 0 {
			t.Errorf("%s: %d wire duplicates across the restarts, want 0", name, dups)
		}
	}
	t.Logf("all delivered %s after the first publish", time.Since(start).Round(time.Millisecond))
}

// logConsumers logs the forward consumers' state, to tell on a failure
// where conversions wait.
func (p *pipe) logConsumers(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs := [][2]string{{eventsStream, RouteConsumer}}
	for _, d := range p.dests {
		cs = append(cs, [2]string{ForwardStream, DeliverConsumerPrefix + d.Name})
	}
	for _, c := range cs {
		cons, err := p.js.Consumer(ctx, c[0], c[1])
		if err != nil {
			t.Logf("consumer %s: %v", c[1], err)
			continue
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Logf("consumer %s: %v", c[1], err)
			continue
		}
		t.Logf("consumer %s: pending %d, ack pending %d, redelivered %d, waiting pulls %d, delivered seq %d, ack floor %d",
			c[1], info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting, info.Delivered.Stream, info.AckFloor.Stream)
	}
	if st, err := p.js.Stream(ctx, ForwardStream); err == nil {
		if info, err := st.Info(ctx, jetstream.WithSubjectFilter("tw.forward.>")); err == nil {
			t.Logf("stream %s: %d messages, by subject %v", ForwardStream, info.State.Msgs, info.State.Subjects)
		}
	}
}

// logRouted logs, for each fake, how many of the conversions it lacks were
// published on TW_FORWARD for it: routed but not delivered, or never routed.
func (p *pipe) logRouted(t *testing.T, want []string) {
	t.Helper()
	routed := map[string]map[string]int{}
	for _, m := range bustest.ReadStream(t, p.js, ForwardStream) {
		dest := strings.Split(m.Subject, ".")[2]
		if routed[dest] == nil {
			routed[dest] = map[string]int{}
		}
		routed[dest][m.Header.Get(HeaderEventID)]++
	}
	for name, f := range p.fakes() {
		got := f.EventIDs()
		var notRouted, notDelivered []string
		for _, id := range want {
			switch {
			case got[id] > 0:
			case routed[name][id] == 0:
				notRouted = append(notRouted, id)
			default:
				notDelivered = append(notDelivered, id)
			}
		}
		t.Logf("%s: %d missing never routed (%v…), %d routed but not delivered (%v…)", name,
			len(notRouted), notRouted[:min(len(notRouted), 8)], len(notDelivered), notDelivered[:min(len(notDelivered), 8)])
	}
}
