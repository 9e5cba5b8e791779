package consent

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// The cache gives exactly Decide's answer for every input, however the
// inputs interleave: TestDecide's cases differ from each other by one signal
// or one jurisdiction, so a field missing from the key answers one case with
// another's decision.
func TestDecisionCache(t *testing.T) {
	p, cases := decideCases()
	at := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	tx, ca := Resolve("US", "TX", at, OptIn), Resolve("US", "CA", at, OptIn)
	usp := Signals{USP: "1YYN"}
	more := []decideCase{
		{name: "region", j: tx, s: usp}, {name: "region2", j: ca, s: usp},
		{name: "gpp sid", j: ca, s: Signals{GPP: usnatString(1, 1, 1, nil), GPPSID: []int{7}}},
		{name: "gpp sid2", j: ca, s: Signals{GPP: usnatString(1, 1, 1, nil), GPPSID: []int{8}}},
		{name: "category granted", j: ca, s: Signals{Categories: map[string]bool{"ads": true}}},
		{name: "category refused", j: ca, s: Signals{Categories: map[string]bool{"ads": false}}},
		{name: "two categories", j: ca, s: Signals{Categories: map[string]bool{"ads": false, "analytics": true}}},
	}
	cases = append(cases, more...)
	c := newDecisionCache(1000)
	for round := range 3 {
		for _, tc := range cases {
			got, want := c.decide(p, tc.j, tc.s), Decide(p, tc.j, tc.s)
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("round %d, %s: cached %+v, want %+v", round, tc.name, *got, want)
			}
		}
	}
	distinct := map[string]bool{}
	for _, tc := range cases {
		distinct[string(appendDecisionKey(nil, tc.j, tc.s))] = true
	}
	if hits, misses := c.hits.Load(), c.misses.Load(); misses != uint64(len(distinct)) || hits != uint64(3*len(cases)-len(distinct)) {
		t.Errorf("%d hits, %d misses for %d lookups of %d distinct inputs", hits, misses, 3*len(cases), len(distinct))
	}
}

// The cache holds at most two generations of its size, and an entry in use
// survives a turnover.
func TestDecisionCacheBound(t *testing.T) {
	p := DefaultPolicy(nil)
	j := Resolve("US", "CA", time.Now(), OptIn)
	c := newDecisionCache(100)
	hot := Signals{USP: "1YYN"}
	for i := range 1000 {
		c.decide(p, j, Signals{TCF: fmt.Sprintf("x%d", i)})
		c.decide(p, j, hot)
		if n := c.len(); n > 200 {
			t.Fatalf("after %d inputs the cache holds %d decisions, more than 2 × 100", i+1, n)
		}
	}
	if m := c.misses.Load(); m != 1001 {
		t.Errorf("%d misses: the hot input should have stayed cached (1 miss) beside 1000 cold ones", m)
	}
	// A key longer than the bound is answered, not kept.
	long := Signals{GPP: string(make([]byte, 5000))}
	before := c.len()
	if d := c.decide(p, j, long); !reflect.DeepEqual(*d, Decide(p, j, long)) || c.len() != before {
		t.Errorf("long key: %+v, cache %d → %d", d, before, c.len())
	}
}

// BenchmarkDecideCached is Decide through the engine's cache, for the
// signals of BenchmarkDecide: what a repeated TCF string costs.
func BenchmarkDecideCached(b *testing.B) {
	p := DefaultPolicy(map[string]int{"tiktok": 1001})
	j := Resolve("FR", "", time.Now(), OptIn)
	s := Signals{TCF: tcfString(4, true, []int{1, 3, 4, 7}, nil, []int{1001})}
	c := newDecisionCache(decisionCacheSize)
	b.ReportAllocs()
	for b.Loop() {
		c.decide(p, j, s)
	}
}
