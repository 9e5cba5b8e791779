package dedup

import (
	"context"
	"expvar"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tagway/tagway/gateway/event"
)

// badgerGets is Badger's process-wide count of point reads.
func badgerGets() int64 {
	if v, ok := expvar.Get("badger_get_num_user").(*expvar.Int); ok {
		return v.Value()
	}
	return 0
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// checkAll runs one request of envs and settles every first copy as stored.
func checkAll(t *testing.T, s *Store, envs []*event.Envelope) []*Verdict {
	t.Helper()
	b := s.Begin()
	vs, errs := b.CheckAll(context.Background(), envs)
	for i, v := range vs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		b.Settle(v, true)
	}
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	return vs
}

// batchOf makes n server events received at (unix ms; 0: t0).
func batchOf(prefix string, n int, at int64) []*event.Envelope {
	envs := make([]*event.Envelope, n)
	for i := range envs {
		envs[i] = env(event.SourceServer, fmt.Sprint(prefix, i))
		if at != 0 {
			envs[i].ReceivedAt = at
		}
	}
	return envs
}

// New events' keys are found absent by the key filter, without a Badger
// read; after a restart the filter holds the stored keys again, so their
// copies are duplicates; once the window has passed, the keys leave it.
func TestKeyFilterSkipsBadgerForNewKeys(t *testing.T) {
	dir := t.TempDir()
	// The real time: Badger's TTLs, which the filter loads, count from it.
	var clock atomic.Int64
	clock.Store(time.Now().UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()) }
	s, db := openStore(t, dir, Config{LRUEntries: 10}, now)
	gets := badgerGets()
	for _, v := range checkAll(t, s, batchOf("k", 200, clock.Load())) {
		if v.Kind != First {
			t.Fatalf("a new key: %+v", v)
		}
	}
	if got := counter(s.m.filtered); got != 200 {
		t.Fatalf("%v lookups skipped by the filter, want 200", got)
	}
	if d := badgerGets() - gets; d != 0 {
		t.Fatalf("%d Badger reads for 200 new keys", d)
	}
	// Most are out of the LRU (10 entries): the filter must hold the
	// keys written, or their copies would pass as first copies.
	for i, v := range checkAll(t, s, batchOf("k", 200, clock.Load())) {
		if v.Kind != Duplicate {
			t.Fatalf("k%d again: %+v, want a duplicate", i, v)
		}
	}
	db.Close()

	s, db = openStore(t, dir, Config{}, now) // cold LRU; the filter loaded from Badger
	defer db.Close()
	gets = badgerGets()
	for i, v := range checkAll(t, s, batchOf("k", 200, clock.Load())) {
		if v.Kind != Duplicate {
			t.Fatalf("k%d after a restart: %+v, want a duplicate", i, v)
		}
	}
	if got := counter(s.m.filtered); got != 0 {
		t.Fatalf("%v stored keys reported absent by the filter", got)
	}
	if d := badgerGets() - gets; d < 200 {
		t.Fatalf("%d Badger reads for 200 stored keys", d)
	}
	for _, v := range checkAll(t, s, batchOf("n", 50, clock.Load())) {
		if v.Kind != First {
			t.Fatalf("a new key after a restart: %+v", v)
		}
	}
	if got := counter(s.m.filtered); got < 49 { // one may be a false positive
		t.Fatalf("%v of 50 new keys skipped by the filter after a restart", got)
	}

	// The window (48 h) and the filter's slack (a quarter of it) pass: the
	// old keys are new again, and the filter knows it.
	clock.Add((60*time.Hour + time.Minute).Milliseconds())
	before := counter(s.m.filtered)
	if v := checkAll(t, s, batchOf("x", 1, clock.Load())); v[0].Kind != First {
		t.Fatalf("%+v", v[0])
	}
	for i, v := range checkAll(t, s, batchOf("k", 200, clock.Load())) {
		if v.Kind != First {
			t.Fatalf("k%d past the window: %+v, want a first copy", i, v)
		}
	}
	if got := counter(s.m.filtered) - before; got < 195 {
		t.Fatalf("%v of 201 keys past the window skipped by the filter", got)
	}
}

// With the filter off, every cold lookup reads Badger, as before it.
func TestKeyFilterOff(t *testing.T) {
	off := false
	s, db := openStore(t, t.TempDir(), Config{KeyFilter: &off}, func() time.Time { return t0 })
	defer db.Close()
	gets := badgerGets()
	checkAll(t, s, batchOf("k", 100, 0))
	if d := badgerGets() - gets; d < 100 {
		t.Fatalf("%d Badger reads for 100 new keys with the filter off", d)
	}
	if s.keys != nil || counter(s.m.filtered) != 0 {
		t.Fatal("the filter is on")
	}
}
