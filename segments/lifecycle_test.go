package segments

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/event"
)

// members folds a delta sequence into the final membership, failing on a
// duplicate add or a remove without an add.
func members(t *testing.T, ds []Delta) map[string]map[string]bool {
	t.Helper()
	m := map[string]map[string]bool{}
	for _, d := range ds {
		if m[d.Segment] == nil {
			m[d.Segment] = map[string]bool{}
		}
		in := m[d.Segment][d.Profile]
		switch {
		case d.Op == "add" && in:
			t.Fatalf("duplicate add: %s", fmtDeltas([]Delta{d}))
		case d.Op == "remove" && !in:
			t.Fatalf("remove without add: %s", fmtDeltas([]Delta{d}))
		}
		m[d.Segment][d.Profile] = d.Op == "add"
	}
	return m
}

func inSet(m map[string]bool) []string {
	var out []string
	for k, v := range m {
		if v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Top 10 % by engagement: after a rank pass exactly the profiles at or above
// the 90th percentile are in; a newcomer is ranked on its own event.
func TestScenarioTopEngagement(t *testing.T) {
	r := newRig(t, `
rules:
  - name: top10_engaged_30d
    min_size: 1
    include: {event: EngagementTime, within: 30d, top_percent: 10, metric: "sum(seconds)"}
`)
	var evs []ev
	for i := 1; i <= 20; i++ {
		evs = append(evs, ev{name: "EngagementTime", anon: fmt.Sprintf("g%02d", i), props: fmt.Sprintf(`{"seconds":%d}`, i*10)})
	}
	r.send(evs...)
	r.clk.Add(time.Hour + time.Second)
	r.sweep() // the rank pass
	got := inSet(members(t, r.allDeltas())["top10_engaged_30d"])
	if want := []string{"a:g19", "a:g20"}; !slices.Equal(got, want) {
		t.Fatalf("top 10%% of 20 = %v, want %v", got, want)
	}
	// A newcomer with the most engagement is in at once; k becomes 3 (10 % of
	// 21, rounded up), so g19 and g20 stay.
	r.read = len(r.allDeltas())
	n := r.clk.Now()
	r.send(ev{name: "EngagementTime", anon: "g99", props: `{"seconds":1000}`})
	r.expect(want{"add", "top10_engaged_30d", "a:g99", n, time.Time{}, "event EngagementTime"})
	// Another rank pass changes nothing: g18 (180) is below g19 (190)'s bucket.
	r.clk.Add(time.Hour + time.Second)
	r.sweep()
	r.expect()
	x, err := r.e.Explain("shop", "profile", "a:g18")
	if err != nil || x == nil {
		t.Fatal(x, err)
	}
	tree := x.Segments[0].Tree
	if tree.Holds || tree.Threshold == nil || *tree.Threshold <= 180 || *tree.Threshold > 190 {
		t.Fatalf("explain g18: %+v threshold %v", tree, tree.Threshold)
	}
	// Everyone's engagement leaves the window 30 days on: all out.
	r.clk.Add(31 * day)
	r.sweep()
	if got := inSet(members(t, r.allDeltas())["top10_engaged_30d"]); len(got) != 0 {
		t.Fatalf("after the window: %v", got)
	}
}

// The control group is held out by a stable hash: those profiles are never
// published; list counts them; export skips them; target_cap picks the
// members with the smallest stable hash.
func TestControlGroupTargetCapAndExport(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: buyers, min_size: 30, control_group: 20, target_cap: 5, include: {event: CompletePayment, within: 30d}}
`)
	sg := r.e.prog.byName["buyers"]
	var evs []ev
	var wantIn, wantHeld []string
	for i := 0; i < 40; i++ {
		a := fmt.Sprintf("b%02d", i)
		evs = append(evs, ev{name: "CompletePayment", anon: a, email: sha(a + "@example.com")})
		if heldOut(sg, "shop", "a:"+a) {
			wantHeld = append(wantHeld, "a:"+a)
		} else {
			wantIn = append(wantIn, "a:"+a)
		}
	}
	if len(wantHeld) == 0 || len(wantHeld) > 16 {
		t.Fatalf("a 20%% control group of 40 held %d", len(wantHeld))
	}
	r.send(evs...)
	got := inSet(members(t, r.allDeltas())["buyers"])
	sort.Strings(wantIn)
	if !slices.Equal(got, wantIn) {
		t.Fatalf("published members %v, want %v", got, wantIn)
	}
	l := r.e.List()
	if l[0].Members != int64(len(wantIn)) || l[0].HeldOut != int64(len(wantHeld)) || l[0].Deliverable != (len(wantIn) >= 30) {
		t.Fatalf("list: %+v (want %d in, %d held)", l[0], len(wantIn), len(wantHeld))
	}
	// Export: the 5 members with the smallest stable hash, twice the same.
	byHash := slices.Clone(wantIn)
	sort.Slice(byHash, func(i, j int) bool {
		return stableHash("buyers", "shop", byHash[i]) < stableHash("buyers", "shop", byHash[j])
	})
	var want strings.Builder
	want.WriteString("Email_SHA256,Phone_SHA256\n")
	for _, p := range byHash[:5] {
		fmt.Fprintf(&want, "%s,\n", sha(strings.TrimPrefix(p, "a:")+"@example.com"))
	}
	for range 2 {
		var buf bytes.Buffer
		n, err := r.e.Export(context.Background(), "buyers", "tiktok-csv", &buf, nil)
		if err != nil || n != 5 || buf.String() != want.String() {
			t.Fatalf("export n=%d err=%v\n%s\nwant\n%s", n, err, buf.String(), want.String())
		}
	}
	var buf bytes.Buffer
	if n, err := r.e.Export(context.Background(), "buyers", "jsonl", &buf, nil); err != nil || n != 5 || strings.Count(buf.String(), "\n") != 5 {
		t.Fatalf("jsonl export n=%d err=%v %q", n, err, buf.String())
	}
	for _, p := range wantHeld {
		if strings.Contains(buf.String(), p) {
			t.Fatalf("held-out %s exported", p)
		}
	}
	if _, err := r.e.Export(context.Background(), "nope", "jsonl", &buf, nil); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown segment: %v", err)
	}
}

// The anonymous cart abandoner who later checks out with an email: the
// server's purchase (email only) and the cookie profile are two profiles
// until the identity link from dedup joins them.
func TestScenarioAnonymousThenIdentifiedMerge(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: cart_7d, min_size: 1, include: {event: AddToCart, within: 7d}, exclude: {event: CompletePayment, within: 30d}}
  - {name: buyers_30d, min_size: 1, include: {event: CompletePayment, within: 30d}}
`)
	a := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "anon1"})
	r.expect(want{"add", "cart_7d", "a:anon1", a, time.Time{}, ""})
	email := sha("buyer@example.com")
	emailProfile := event.ProfileID(&event.User{EmailSHA256: email})
	p := r.clk.Add(time.Hour)
	r.send(ev{name: "CompletePayment", email: email})
	r.expect(want{"add", "buyers_30d", emailProfile, p, time.Time{}, ""})

	m := r.clk.Add(time.Minute)
	r.publishRaw(event.IdentitySubject("shop"), identityStream, IdentityConsumer, event.IdentityLink{
		Profile: "a:anon1", Site: "shop", Event: "CompletePayment", EventID: "o1", At: m.UnixMilli(),
		Aliases: map[string]string{event.AliasEmail: email}})
	r.expect(want{"remove", "cart_7d", "a:anon1", m, time.Time{}, "identity merge"},
		want{"add", "buyers_30d", "a:anon1", m, time.Time{}, "identity merge"},
		want{"remove", "buyers_30d", emailProfile, m, time.Time{}, "merged into a:anon1"})
	// The merged profile answers to both ids, and carries the email.
	x, err := r.e.Explain("shop", "email", email)
	if err != nil || x == nil || x.Profile != "a:anon1" || !slices.Contains(x.Has, "email") {
		t.Fatalf("explain by the email profile: %+v %v", x, err)
	}
	for _, a := range [][2]string{{aliasEmail, email}, {aliasProfile, emailProfile}, {aliasAnon, "anon1"}} {
		r.e.mu.Lock()
		r.e.cache.Reset() // read the stored index, not the cache
		id, err := r.e.lookupAlias("shop", a[0], a[1])
		r.e.mu.Unlock()
		if err != nil || id != "a:anon1" {
			t.Fatalf("alias %s%s → %q %v", a[0], a[1], id, err)
		}
	}
	// Later events by email alone land on the merged profile.
	r.send(ev{name: "CompletePayment", email: email})
	r.expect()
	ds := r.allDeltas()
	if ds[len(ds)-2].Identifiers.EmailSHA256 != email {
		t.Fatalf("merged add carries %+v", ds[len(ds)-2].Identifiers)
	}
}

// Consent withdrawn on tw.consent: every membership goes at once; events
// without consent are not kept; when consent returns, the stored state
// counts again.
func TestScenarioConsentWithdrawal(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: cart_7d, min_size: 1, include: {event: AddToCart, within: 7d}}
  - {name: visitors_30d, min_size: 1, include: {event: PageView, within: 30d}}
`)
	a := r.clk.Now()
	r.send(ev{name: "AddToCart", anon: "w9"}, ev{name: "PageView", anon: "w9"})
	r.expect(want{"add", "cart_7d", "a:w9", a, time.Time{}, ""}, want{"add", "visitors_30d", "a:w9", a, time.Time{}, ""})
	w := r.clk.Add(time.Hour)
	r.publishRaw("tw.consent.shop", consentStream, ConsentConsumer, map[string]any{
		"site": "shop", "profile": "a:w9", "allowed": []string{"measurement"}, "at": w.UnixMilli()})
	r.expect(want{"remove", "cart_7d", "a:w9", w, time.Time{}, "consent"}, want{"remove", "visitors_30d", "a:w9", w, time.Time{}, "consent"})
	// Without consent: nothing recorded, nothing published; sweeps stay quiet.
	r.clk.Add(time.Hour)
	r.send(ev{name: "AddToCart", anon: "w9", allowed: []string{"measurement"}})
	r.clk.Add(day)
	r.sweep()
	r.expect()
	s, _ := r.e.load("shop", "a:w9")
	if n := len(s.streams[r.e.prog.byName["cart_7d"].streams[0].id]); n != 1 {
		t.Fatalf("cart entries %d: an event without consent was kept", n)
	}
	// Consent returns with a PageView: the stored AddToCart (1 day old) counts.
	back := r.clk.Add(time.Minute)
	r.send(ev{name: "PageView", anon: "w9"})
	r.expect(want{"add", "cart_7d", "a:w9", back, time.Time{}, ""}, want{"add", "visitors_30d", "a:w9", back, time.Time{}, ""})
}

// Erasure publishes removes and leaves nothing about the profile in Badger.
func TestScenarioErasure(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: visitors_30d, min_size: 1, include: {event: PageView, within: 30d}}
`)
	email := sha("erase-me@example.com")
	a := r.clk.Now()
	r.send(ev{name: "PageView", anon: "er1", email: email}, ev{name: "PageView", anon: "keep1"})
	r.expect(want{"add", "visitors_30d", "a:er1", a, time.Time{}, ""}, want{"add", "visitors_30d", "a:keep1", a, time.Time{}, ""})
	now := r.clk.Add(time.Minute)
	n, err := r.e.Erase("shop", "a:er1")
	if err != nil || n < 3 {
		t.Fatalf("erase: %d %v", n, err)
	}
	r.expect(want{"remove", "visitors_30d", "a:er1", now, time.Time{}, "erased"})
	if x, _ := r.e.Explain("shop", "profile", "a:er1"); x != nil {
		t.Fatalf("explain after erase: %+v", x)
	}
	if n, err := r.e.Erase("shop", "a:er1"); n != 0 || err != nil {
		t.Fatalf("second erase: %d %v", n, err)
	}
	found := 0
	err = r.store.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			v, _ := it.Item().ValueCopy(nil)
			for _, s := range []string{"er1", email, email[:32]} {
				if bytes.Contains(k, []byte(s)) || bytes.Contains(v, []byte(s)) {
					t.Errorf("after erasure %q is still in key %q", s, k)
				}
			}
			if bytes.Contains(k, []byte("keep1")) {
				found++
			}
		}
		return nil
	})
	if err != nil || found == 0 {
		t.Fatalf("the other profile's keys: %d %v", found, err)
	}
	// The stats follow.
	if l := r.e.List(); l[0].Members != 1 {
		t.Fatalf("members after erase: %+v", l[0])
	}
}
