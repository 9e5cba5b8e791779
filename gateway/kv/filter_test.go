package kv

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// Every key added answers "maybe", across the filter's growth, and keys
// never added mostly answer "absent" (near the configured rate).
func TestFilterNoFalseNegativesAcrossGrowth(t *testing.T) {
	f := NewFilter(1024, 0.01)
	const n = 50_000 // 48 times the first filter's capacity
	for i := range n {
		f.Add(fmt.Appendf(nil, "ga-site\x00p%d", i))
	}
	for i := range n {
		if !f.MayContain(fmt.Appendf(nil, "ga-site\x00p%d", i)) {
			t.Fatalf("key %d added but reported absent", i)
		}
	}
	// Six chained filters at 1, 0.5, 0.25 … %: below 2 %.
	if rate := fpRate(f, "ga-site\x00q%d", 100_000); rate > 0.02 {
		t.Fatalf("false-positive rate %.3f", rate)
	}
	if keys, size := f.Stats(); keys != n || size == 0 {
		t.Fatalf("stats: %d keys, %d bytes", keys, size)
	}
}

// fpRate is the share of n keys never added (format with one %d) that f
// reports as maybe present.
func fpRate(f *Filter, format string, n int) float64 {
	fp := 0
	for i := range n {
		if f.MayContain(fmt.Appendf(nil, format, i)) {
			fp++
		}
	}
	return float64(fp) / float64(n)
}

// Filled to its capacity, one filter answers "maybe" for keys never added
// at about the configured rate: the probes derived from one 64-bit hash are
// as good as independent hashes.
func TestFilterRateAtCapacity(t *testing.T) {
	const n = 1 << 18
	f := NewFilter(n, 0.01)
	for i := range n {
		f.Add(fmt.Appendf(nil, "dshop\x00Purchase\x00ev-%d", i))
	}
	if rate := fpRate(f, "dshop\x00Purchase\x00ew-%d", 200_000); rate > 0.013 {
		t.Fatalf("false-positive rate %.4f at capacity, configured 0.01", rate)
	}
	if _, size := f.Stats(); size > n*10/8*11/10 {
		t.Fatalf("%d bytes for %d keys at 1 %%: more than ~10 bits per key", size, n)
	}
}

// LoadFilter holds every key of its prefix that the store holds, and is
// sized from them (keys of other prefixes mostly absent).
func TestLoadFilter(t *testing.T) {
	s, err := Open(t.TempDir(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wb := NewWriteBatch(s.DB())
	for i := range 20_000 {
		_ = wb.Set(fmt.Appendf(nil, "ga%d", i), []byte("x"))
		_ = wb.Set(fmt.Appendf(nil, "gs%d", i), []byte("x"))
		_ = wb.Set(fmt.Appendf(nil, "gx%d", i), []byte("x"))
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = Update(s.DB(), func(txn *badger.Txn) error { return txn.Delete([]byte("ga7")) })
	f, _, err := LoadFilter(s.DB(), 0, 0.01, []byte("ga"), []byte("gs"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20_000 {
		for _, p := range []string{"ga", "gs"} {
			if !(p == "ga" && i == 7) && !f.MayContain(fmt.Appendf(nil, "%s%d", p, i)) {
				t.Fatalf("%s%d is in the store but reported absent", p, i)
			}
		}
	}
	other := 0
	for i := range 20_000 {
		if f.MayContain(fmt.Appendf(nil, "gx%d", i)) {
			other++
		}
	}
	if keys, _ := f.Stats(); keys != 39_999 || other > 400 {
		t.Fatalf("loaded %d keys (want 39999); %d of 20000 other keys reported present", keys, other)
	}
}

// The cost a lookup of a new key pays instead of a Badger read.
func BenchmarkFilterMayContain(b *testing.B) {
	f := NewFilter(1<<20, 0.01)
	for i := range 1 << 20 {
		f.Add(fmt.Appendf(nil, "ga-site\x00p%d", i))
	}
	keys := make([][]byte, 4096)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "ga-site\x00q%d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f.MayContain(keys[i%len(keys)])
	}
}

// Lookups and adds from every core at once, one add per four lookups (the
// edge's mix of consent-state and link checks).
func BenchmarkFilterParallel(b *testing.B) {
	f := NewFilter(1<<20, 0.01)
	var n atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := make([]byte, 0, 32)
		for pb.Next() {
			i := n.Add(1)
			key = fmt.Appendf(key[:0], "cshop\x00a:%016x", i)
			if i%5 == 0 {
				f.Add(key)
			} else {
				f.MayContain(key)
			}
		}
	})
}
