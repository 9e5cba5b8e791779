package dedup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
	"github.com/tagway/tagway/gateway/units"
)

var t0 = time.Unix(1763800000, 0)

func openStore(t testing.TB, dir string, cfg Config, now func() time.Time) (*Store, *kv.Store) {
	t.Helper()
	db, err := kv.Open(dir, kv.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, db.DB(), nil, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func env(src event.Source, id string) *event.Envelope {
	e := &event.Envelope{Site: "shop", Event: "CompletePayment", EventID: id, Source: src, ReceivedAt: t0.UnixMilli()}
	if src == event.SourceBrowser {
		e.User.AnonID = "0123456789abcdef0123456789abcdef"
	} else {
		e.User.EmailSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	}
	e.Profile = event.ProfileID(&e.User)
	return e
}

// check runs one event through a batch, settling with stored.
func check(t *testing.T, s *Store, e *event.Envelope, stored bool) *Verdict {
	t.Helper()
	b := s.Begin()
	v, err := b.Check(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	b.Settle(v, stored)
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFailedPublishReleasesTheKey(t *testing.T) {
	s, db := openStore(t, t.TempDir(), Config{}, func() time.Time { return t0 })
	defer db.Close()
	if v := check(t, s, env(event.SourceServer, "a"), false); v.Kind != First {
		t.Fatalf("first: %v", v.Kind)
	}
	// The publish failed: the retry must be a first copy again, not a duplicate.
	if v := check(t, s, env(event.SourceServer, "a"), true); v.Kind != First {
		t.Fatalf("retry after a failed publish: %v, want First", v.Kind)
	}
	if v := check(t, s, env(event.SourceServer, "a"), true); v.Kind != Duplicate || v.Pair != "same_source" {
		t.Fatalf("after a stored copy: %v %s", v.Kind, v.Pair)
	}
	// Unsettled claims are released by Finish.
	b := s.Begin()
	if v, _ := b.Check(context.Background(), env(event.SourceServer, "b")); v.Kind != First {
		t.Fatal(v.Kind)
	}
	_ = b.Finish()
	if v := check(t, s, env(event.SourceServer, "b"), true); v.Kind != First {
		t.Fatalf("after an unsettled claim: %v", v.Kind)
	}
}

func TestWaitersFollowTheClaim(t *testing.T) {
	for _, stored := range []bool{true, false} {
		t.Run(fmt.Sprint("stored=", stored), func(t *testing.T) {
			s, db := openStore(t, t.TempDir(), Config{}, func() time.Time { return t0 })
			defer db.Close()
			b := s.Begin()
			v, _ := b.Check(context.Background(), env(event.SourceBrowser, "x"))
			got := make(chan *Verdict)
			go func() {
				b2 := s.Begin()
				v2, err := b2.Check(context.Background(), env(event.SourceServer, "x"))
				if err != nil {
					t.Error(err)
				}
				b2.Settle(v2, true)
				_ = b2.Finish()
				got <- v2
			}()
			select {
			case v2 := <-got:
				t.Fatalf("a copy did not wait for the pending claim: %v", v2.Kind)
			case <-time.After(50 * time.Millisecond):
			}
			b.Settle(v, stored)
			_ = b.Finish()
			v2 := <-got
			want := Duplicate
			if !stored {
				want = First // the first copy was not stored: the waiter wins
			}
			if v2.Kind != want {
				t.Fatalf("waiter: %v, want %v", v2.Kind, want)
			}
		})
	}
}

func TestClaimWaitTimesOut(t *testing.T) {
	s, db := openStore(t, t.TempDir(), Config{ClaimWait: units.Duration(20 * time.Millisecond)}, nil)
	defer db.Close()
	b := s.Begin()
	defer b.Finish()
	if _, err := b.Check(context.Background(), env(event.SourceServer, "slow")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Begin().Check(context.Background(), env(event.SourceServer, "slow")); !errors.Is(err, ErrClaimWait) {
		t.Fatalf("err = %v, want ErrClaimWait", err)
	}
}

func TestSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	now := func() time.Time { return t0 }
	s, db := openStore(t, dir, Config{}, now)
	check(t, s, env(event.SourceServer, "r"), true)
	v := check(t, s, env(event.SourceBrowser, "r"), true)
	if v.Link == nil {
		t.Fatal("no link")
	}
	db.Close()
	s, db = openStore(t, dir, Config{}, now) // cold LRU: Badger answers
	defer db.Close()
	b := s.Begin()
	v, err := b.Check(context.Background(), env(event.SourceBrowser, "r"))
	if err != nil || v.Kind != Duplicate || v.Pair != "server_browser" || v.Link != nil {
		t.Fatalf("after reopen: %+v %v (the link was already learned)", v, err)
	}
	_ = b.Finish()
	p, err := s.Profile("shop", event.AliasAnonID, "0123456789abcdef0123456789abcdef")
	if err != nil || p != env(event.SourceServer, "r").Profile {
		t.Fatalf("link after reopen: %q %v", p, err)
	}
}

// Concurrent requests' records are written together (kv.Group), and every
// one of them is in Badger afterwards.
func TestConcurrentRecordsAreGroupedAndStored(t *testing.T) {
	dir := t.TempDir()
	now := func() time.Time { return t0 }
	s, db := openStore(t, dir, Config{}, now)
	const n = 400
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b := s.Begin()
			e := env(event.SourceServer, fmt.Sprint("g", i))
			v, err := b.Check(context.Background(), e)
			if err != nil || v.Kind != First {
				t.Errorf("%d: %+v %v", i, v, err)
				return
			}
			b.Settle(v, true)
			if err := b.Finish(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if txns := s.group.Txns(); txns >= n {
		t.Errorf("%d requests' records in %d transactions: none grouped", n, txns)
	} else {
		t.Logf("%d requests' records in %d transactions", n, txns)
	}
	db.Close()
	s, db = openStore(t, dir, Config{}, now) // cold LRU: Badger answers
	defer db.Close()
	for i := range n {
		if v := check(t, s, env(event.SourceServer, fmt.Sprint("g", i)), true); v.Kind != Duplicate {
			t.Fatalf("g%d after reopen: %+v, want a duplicate", i, v)
		}
	}
}

func TestUnkeyed(t *testing.T) {
	s, db := openStore(t, t.TempDir(), Config{}, nil)
	defer db.Close()
	e := env(event.SourceServer, "")
	e.EventIDAssigned = true
	if v := check(t, s, e, true); v.Kind != Unkeyed {
		t.Fatal(v.Kind)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{
		{Window: units.Duration(time.Second)},
		{MergeWindow: units.Duration(72 * time.Hour)},
		{LRUEntries: -1},
	} {
		c.SetDefaults()
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// BenchmarkCheck measures one dedup decision with its settle and write:
// miss (a new key, written to Badger), LRU hit, and Badger hit (cold LRU).
func BenchmarkCheck(b *testing.B) {
	run := func(b *testing.B, s *Store, id func(i int) string, stored bool) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			bt := s.Begin()
			v, err := bt.Check(context.Background(), env(event.SourceServer, id(i)))
			if err != nil {
				b.Fatal(err)
			}
			bt.Settle(v, stored)
			if err := bt.Finish(); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	b.Run("miss", func(b *testing.B) {
		s, db := openStore(b, b.TempDir(), Config{}, func() time.Time { return t0 })
		defer db.Close()
		run(b, s, func(i int) string { return fmt.Sprintf("m-%d", i) }, true)
	})
	b.Run("miss_parallel", func(b *testing.B) {
		// Requests run concurrently in the gateway; Badger batches their
		// commits, so throughput is better than the serial miss suggests.
		s, db := openStore(b, b.TempDir(), Config{}, func() time.Time { return t0 })
		defer db.Close()
		var seq atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bt := s.Begin()
				v, err := bt.Check(context.Background(), env(event.SourceServer, fmt.Sprintf("p-%d", seq.Add(1))))
				if err != nil {
					b.Fatal(err)
				}
				bt.Settle(v, true)
				if err := bt.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("hit_lru", func(b *testing.B) {
		s, db := openStore(b, b.TempDir(), Config{}, func() time.Time { return t0 })
		defer db.Close()
		run(b, s, func(int) string { return "seed" }, true)
	})
	b.Run("hit_badger", func(b *testing.B) {
		s, db := openStore(b, b.TempDir(), Config{LRUEntries: 1}, func() time.Time { return t0 })
		defer db.Close()
		const keys = 1000
		bt := s.Begin() // more keys than the LRU holds
		for i := range keys {
			v, err := bt.Check(context.Background(), env(event.SourceServer, fmt.Sprintf("h-%d", i)))
			if err != nil {
				b.Fatal(err)
			}
			bt.Settle(v, true)
		}
		if err := bt.Finish(); err != nil {
			b.Fatal(err)
		}
		run(b, s, func(i int) string { return fmt.Sprintf("h-%d", i%keys) }, true)
	})
}

// Two requests with the same keys in opposite orders, many times over: with
// keys claimed in sorted order neither waits on the other in a cycle, so none
// times out. (Claimed in request order, each could hold one key and wait for
// the other's until claim_wait.)
func TestOppositeOrdersDoNotDeadlock(t *testing.T) {
	s, db := openStore(t, t.TempDir(), Config{ClaimWait: units.Duration(2 * time.Second)}, func() time.Time { return t0 })
	defer db.Close()
	for round := 0; round < 200; round++ {
		a, b := env(event.SourceServer, fmt.Sprintf("a%d", round)), env(event.SourceBrowser, fmt.Sprintf("b%d", round))
		a2, b2 := *a, *b
		var wg sync.WaitGroup
		firsts := atomic.Int64{}
		for _, batch := range [][]*event.Envelope{{a, b}, {&b2, &a2}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bt := s.Begin()
				vs, errs := bt.CheckAll(context.Background(), batch)
				for i, v := range vs {
					if errs[i] != nil {
						t.Errorf("round %d: %v", round, errs[i])
						continue
					}
					if v.Kind == First {
						firsts.Add(1)
					}
					bt.Settle(v, true)
				}
				_ = bt.Finish()
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if firsts.Load() != 2 {
			t.Fatalf("round %d: %d first copies, want 2", round, firsts.Load())
		}
	}
}

// A server copy first and the browser's later: the link carries the
// browser's IP and user agent (for the forwarder), once; they are never
// indexed as aliases. A browser copy first needs no device context.
func TestLinkCarriesDeviceContextOnce(t *testing.T) {
	now := func() time.Time { return t0 }
	s, db := openStore(t, t.TempDir(), Config{}, now)
	defer db.Close()
	withDevice := func(e *event.Envelope) *event.Envelope {
		e.User.IP, e.User.UserAgent = "203.0.113.0", "Mozilla/5.0"
		return e
	}
	check(t, s, env(event.SourceServer, "d1"), true)
	v := check(t, s, withDevice(env(event.SourceBrowser, "d1")), true)
	if v.Link == nil || v.Link.IP != "203.0.113.0" || v.Link.UserAgent != "Mozilla/5.0" || v.Link.Aliases[event.AliasAnonID] == "" {
		t.Fatalf("server then browser: %+v", v.Link)
	}
	if _, ok := v.Link.Aliases[event.AliasIP]; ok {
		t.Fatal("the IP became an alias")
	}
	if p, err := s.Profile("shop", event.AliasIP, "203.0.113.0"); err != nil || p != "" {
		t.Fatalf("the IP is indexed as an alias: %q %v", p, err)
	}
	if v := check(t, s, withDevice(env(event.SourceBrowser, "d1")), true); v.Link != nil {
		t.Fatalf("a third copy links again: %+v", v.Link)
	}
	check(t, s, withDevice(env(event.SourceBrowser, "d2")), true)
	if v := check(t, s, env(event.SourceServer, "d2"), true); v.Link == nil || v.Link.IP != "" {
		t.Fatalf("browser then server: %+v", v.Link)
	}
}

// CheckAll looks a request's keys up before claiming them. A copy stored
// and released between that lookup and the claim must still be found: the
// stale "not seen" is dropped, and the second copy is a duplicate.
func TestPrefetchMadeStaleByAReleaseIsNotTrusted(t *testing.T) {
	s, db := openStore(t, t.TempDir(), Config{}, func() time.Time { return t0 })
	defer db.Close()
	for _, lru := range []bool{false, true} {
		t.Run(fmt.Sprint("lru=", lru), func(t *testing.T) {
			id := fmt.Sprintf("o-%v", lru)
			late := env(event.SourceServer, id)
			keys := []string{dedupKey(late)}
			b := s.Begin()
			pre := s.prefetch([]*event.Envelope{late}, keys, []int{0})
			if pre[0] == nil || pre[0].rec != nil {
				t.Fatalf("prefetch of a new key: %+v", pre[0])
			}
			if first := check(t, s, env(event.SourceBrowser, id), true); first.Kind != First {
				t.Fatalf("the browser copy: %v", first.Kind)
			}
			if !lru {
				s.hot.Remove(keys[0]) // only Badger remembers it now
			}
			v, err := b.check(context.Background(), late, pre[0])
			if err != nil {
				t.Fatal(err)
			}
			b.Settle(v, true)
			if err := b.Finish(); err != nil {
				t.Fatal(err)
			}
			if v.Kind != Duplicate || v.Pair != "browser_server" {
				t.Fatalf("the server copy after the browser copy was stored: kind %v pair %q, want a browser_server duplicate", v.Kind, v.Pair)
			}
		})
	}
}

// A request's prefetched lookups give the same verdicts as lookups one by
// one: copies already stored (in the LRU, or only in Badger), new keys, and
// a key twice in the same request.
func TestCheckAllPrefetchVerdicts(t *testing.T) {
	s, db := openStore(t, t.TempDir(), Config{}, func() time.Time { return t0 })
	defer db.Close()
	check(t, s, env(event.SourceBrowser, "hot"), true)
	check(t, s, env(event.SourceBrowser, "cold"), true)
	s.hot.Remove(dedupKey(env(event.SourceBrowser, "cold")))
	envs := []*event.Envelope{env(event.SourceServer, "cold"), env(event.SourceServer, "new"), nil,
		env(event.SourceServer, "hot"), env(event.SourceServer, "new")}
	b := s.Begin()
	vs, errs := b.CheckAll(context.Background(), envs)
	for i, v := range vs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if v != nil {
			b.Settle(v, true)
		}
	}
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	want := []Kind{Duplicate, First, 0, Duplicate, Duplicate}
	for i, v := range vs {
		if (v == nil) != (want[i] == 0) || v != nil && v.Kind != want[i] {
			t.Fatalf("event %d: verdict %+v, want kind %v", i, v, want[i])
		}
	}
	if got := check(t, s, env(event.SourceServer, "new"), true); got.Kind != Duplicate {
		t.Fatalf("a key stored by CheckAll came back as %v", got.Kind)
	}
}
