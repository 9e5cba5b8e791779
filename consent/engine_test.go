package consent

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/consent/audit"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

const emailHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

type fakeLinks map[string]string // kind+value → profile

func (f fakeLinks) Profile(_, kind, value string) (string, error) { return f[kind+value], nil }

func newEngine(t *testing.T, links Linker) (*Engine, *audit.Log) {
	t.Helper()
	st, err := kv.Open(t.TempDir(), kv.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	log := audit.New(st.DB(), nil)
	e, err := NewEngine(Config{}, st.DB(), log, links, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e, log
}

func browserEvent(tcf string) *event.Envelope {
	env := &event.Envelope{Site: "shop", Event: "PageView", EventID: "e", Source: event.SourceBrowser, EventTime: time.Now().UnixMilli()}
	env.User.AnonID = "0123456789abcdef0123456789abcdef"
	env.Profile = event.ProfileID(&env.User)
	env.Consent.Signals.TCF = tcf
	return env
}

func TestEngineStateChangesAndInheritance(t *testing.T) {
	e, log := newEngine(t, fakeLinks{event.AliasEmail + emailHash: "a:0123456789abcdef0123456789abcdef"})
	fr := Geo{Country: "FR"}
	full := tcfString(4, true, []int{1, 2, 3, 4, 7, 9}, nil, nil)

	// 1. No signal in an opt-in country: measurement denied by the regime's
	// default; no consent state exists, so nothing is recorded.
	env := browserEvent("")
	o, err := e.Decide(env, fr)
	if err != nil || o.Decision.Allows(UseMeasurement) || o.Publish != nil || o.AuditID != "" || !env.Consent.Decided {
		t.Fatalf("no signal: %+v %v", o, err)
	}

	// 2. Consent given: a change, with a new audit record the envelope names.
	env = browserEvent(full)
	o, _ = e.Decide(env, fr)
	if !o.Decision.Allows(UseMeasurement) || !o.Decision.Allows(UseSegments) || o.Publish == nil || o.AuditID == "" ||
		env.Consent.AuditID != o.AuditID || env.Consent.Jurisdiction != "FR" || !slices.Contains(env.Consent.Allowed, UseSegments) {
		t.Fatalf("consent: %+v %+v", o, env.Consent)
	}
	granted := o.AuditID
	var ch Change
	if err := json.Unmarshal(o.Publish, &ch); err != nil || ch.Profile != env.Profile || ch.AuditID != granted || !slices.Contains(ch.Allowed, UseSegments) {
		t.Fatalf("change message: %s", o.Publish)
	}
	// Not published yet (the publish failed): the next event re-sends it.
	_ = e.Published(o, false)
	o, _ = e.Decide(browserEvent(full), fr)
	if o.Publish == nil || o.AuditID != granted {
		t.Fatalf("unpublished change not re-sent: %+v", o)
	}
	_ = e.Published(o, true)

	// 3. The same state again: no change, nothing to publish, same record.
	o, _ = e.Decide(browserEvent(full), fr)
	if o.Publish != nil || o.AuditID != granted {
		t.Fatalf("unchanged: %+v", o)
	}

	// 4. A server event without signals inherits (by profile, and through an
	// identity link), in the jurisdiction the state was given in.
	srv := &event.Envelope{Site: "shop", Event: "CompletePayment", EventID: "o-1", Source: event.SourceServer, EventTime: time.Now().UnixMilli()}
	srv.User.EmailSHA256 = emailHash
	srv.Profile = event.ProfileID(&srv.User)
	o, _ = e.Decide(srv, Geo{})
	if !o.Decision.Allows(UseSegments) || srv.Consent.Jurisdiction != "FR" || o.AuditID != granted {
		t.Fatalf("inherited through a link: %+v %+v", o, srv.Consent)
	}

	// 5. Withdrawal: a change, recorded and published.
	o, _ = e.Decide(browserEvent(tcfString(4, true, []int{1, 7}, nil, nil)), fr)
	if o.Publish == nil || o.Decision.Allows(UseSegments) || !o.Decision.Allows(UseMeasurement) {
		t.Fatalf("withdrawal: %+v", o)
	}
	var recs []audit.Record
	_ = log.Query("shop", "a:0123456789abcdef0123456789abcdef", time.Time{}, time.Time{}, func(r *audit.Record) error {
		recs = append(recs, *r)
		return nil
	})
	if len(recs) != 2 || recs[0].ID != granted || recs[1].Kind != audit.KindConsent {
		t.Fatalf("audit records: %d %+v", len(recs), recs)
	}
	if n, err := log.Verify(); err != nil || n != 2 {
		t.Fatalf("verify: %d %v", n, err)
	}
}

func TestEngineConfig(t *testing.T) {
	for _, c := range []Config{{DefaultRegime: "maybe"}, {StateTTL: 1}} {
		c2 := c
		c2.SetDefaults(nil)
		if c2.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := OpenGeoDB("/nonexistent.mmdb"); err == nil || !strings.Contains(err.Error(), "consent.geo.mmdb") {
		t.Errorf("missing database: %v", err)
	}
}

// BenchmarkDecideNewProfile is the consent write path of a new visitor with
// a GPC signal: the decision, its audit record and the profile's state, one
// Badger commit each (the load test's beacons take this path once per
// profile). It reports the bytes written per profile.
func BenchmarkDecideNewProfile(b *testing.B) {
	st, err := kv.Open(b.TempDir(), kv.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e, err := NewEngine(Config{}, st.DB(), audit.New(st.DB(), nil), nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	us := Geo{Country: "US", Region: "CA"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		env := browserEvent("")
		env.User.AnonID = fmt.Sprintf("%032x", i)
		env.Profile = event.ProfileID(&env.User)
		env.Consent.Signals.GPC = true
		if _, err := e.Decide(env, us); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	var n int
	_ = st.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n += len(it.Item().Key()) + int(it.Item().ValueSize())
		}
		return nil
	})
	b.ReportMetric(float64(n)/float64(i), "B-stored/profile")
}

// BenchmarkDecideKnownProfile is a returning visitor's event: the same
// TCF string as the profile's stored state (a Badger read, no change).
func BenchmarkDecideKnownProfile(b *testing.B) {
	st, err := kv.Open(b.TempDir(), kv.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e, err := NewEngine(Config{}, st.DB(), audit.New(st.DB(), nil), nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	fr := Geo{Country: "FR"}
	tcf := tcfString(4, true, []int{1, 2, 3, 4, 7, 9}, nil, []int{1001})
	if o, err := e.Decide(browserEvent(tcf), fr); err != nil || o.Publish == nil {
		b.Fatal(o, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		o, err := e.Decide(browserEvent(tcf), fr)
		if err != nil || o.Publish != nil {
			b.Fatal(o, err)
		}
	}
}
