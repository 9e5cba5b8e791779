package kv

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// clock is a settable test clock.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *clock) add(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// A key answers "maybe" until it expires, then "absent"; the slices whose
// keys have all expired are dropped when a new one is made, so the memory
// follows the keys alive.
func TestExpiringFilterForgetsExpiredKeys(t *testing.T) {
	c := &clock{}
	c.ms.Store(time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC).UnixMilli())
	f := NewExpiringFilter(time.Hour, 0.01, c.now)
	f.ready.Store(true) // nothing to load
	key := func(h, i int) string { return fmt.Sprintf("dshop\x00Purchase\x00h%d-%d", h, i) }
	// 48 hours of writes, 2 000 keys an hour, each alive for 48 h.
	for h := range 48 {
		for i := range 2000 {
			f.Add(key(h, i), c.now().Add(48*time.Hour))
		}
		c.add(time.Hour)
	}
	for i := range 2000 {
		if !f.MayContain(key(0, i)) || !f.MayContain(key(47, i)) {
			t.Fatalf("key %d of hour 0 or 47 reported absent within its 48 h", i)
		}
	}
	keys, size, n := f.Stats()
	if keys != 96_000 || n < 48 || n > 49 {
		t.Fatalf("%d keys in %d slices, want 96000 in 48-49", keys, n)
	}
	// Hour 0's keys expire; a write then drops their slice.
	c.add(90 * time.Minute)
	f.Add(key(99, 0), c.now().Add(48*time.Hour))
	absent := 0
	for i := range 2000 {
		if !f.MayContain(key(0, i)) {
			absent++
		}
		if !f.MayContain(key(47, i)) {
			t.Fatalf("key %d of hour 47 reported absent within its 48 h", i)
		}
	}
	if absent < 1900 { // ~1 % false positives from the other slices... times 48
		t.Fatalf("only %d of 2000 expired keys reported absent", absent)
	}
	// Hour 0's slice was dropped, and one made for the new key: the
	// same number held, the same size (each sized for 16 384 keys).
	keys2, size2, n2 := f.Stats()
	f.mu.RLock()
	held := len(f.slices)
	f.mu.RUnlock()
	if keys2 != keys-2000+1 || n2 != n || size2 != size || held != n {
		t.Fatalf("after hour 0 expired: %d keys, %d bytes, %d slices alive, %d held; before %d, %d, %d", keys2, size2, n2, held, keys, size, n)
	}
}

// Until Load has finished every key "may" exist; after it, every live key in
// the store does, and keys written while it ran (Added before their commit)
// too. Keys of other prefixes, and keys expired, are mostly absent.
func TestExpiringFilterLoadWhileWriting(t *testing.T) {
	s, err := Open(t.TempDir(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db := s.DB()
	wb := NewWriteBatch(db)
	for i := range 30_000 {
		ttl := time.Duration(1+i%48) * time.Hour
		_ = wb.SetEntry(badger.NewEntry(fmt.Appendf(nil, "dk%d", i), []byte("x")).WithTTL(ttl))
		_ = wb.SetEntry(badger.NewEntry(fmt.Appendf(nil, "lk%d", i), []byte("x")).WithTTL(ttl))
	}
	_ = wb.SetEntry(badger.NewEntry([]byte("dforever"), []byte("x")))
	_ = wb.SetEntry(badger.NewEntry([]byte("dgone"), []byte("x")).WithTTL(time.Second))
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // "dgone" expires (Badger counts whole seconds)

	f := NewExpiringFilter(6*time.Hour, 0.01, nil)
	if !f.MayContain("dnever-written") {
		t.Fatal("a filter not loaded yet answered absent")
	}
	var wg sync.WaitGroup
	var written atomic.Int64
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Sprintf("dnew%d", i)
			f.Add(k, time.Now().Add(time.Hour))
			if err := Update(db, func(txn *badger.Txn) error {
				return txn.SetEntry(badger.NewEntry([]byte(k), []byte("x")).WithTTL(time.Hour))
			}); err != nil {
				t.Error(err)
				return
			}
			written.Add(1)
		}
	})
	n, err := f.Load(db, []byte("d"))
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !f.Ready() || n < 30_001 {
		t.Fatalf("ready %v after loading %d keys", f.Ready(), n)
	}
	for i := range 30_000 {
		if !f.MayContain(fmt.Sprintf("dk%d", i)) {
			t.Fatalf("dk%d is in the store but reported absent", i)
		}
	}
	for i := range int(written.Load()) {
		if !f.MayContain(fmt.Sprintf("dnew%d", i)) {
			t.Fatalf("dnew%d, written during the load, reported absent", i)
		}
	}
	if !f.MayContain("dforever") {
		t.Fatal("a key without a TTL reported absent")
	}
	other := 0
	for i := range 30_000 {
		if f.MayContain(fmt.Sprintf("lk%d", i)) {
			other++
		}
	}
	// 9 slices of 6 h, each at 1 %: at most ~9 %, far fewer in practice
	// (most slices are sized above what they hold).
	if other > 30_000*9/100 {
		t.Fatalf("%d of 30000 keys never added reported present", other)
	}
	t.Logf("loaded %d keys while %d were written; %d of 30000 other keys answered maybe", n, written.Load(), other)
}

// The cost a dedup lookup of a new event pays instead of a Badger read,
// over the 5 slices of a 48 h window filed in 12 h spans (dedup's).
func BenchmarkExpiringFilterMayContain(b *testing.B) {
	f := NewExpiringFilter(12*time.Hour, 0.01, nil)
	f.ready.Store(true)
	now := time.Now()
	for i := range 1 << 20 {
		f.Add(fmt.Sprintf("dshop\x00Purchase\x00p%d", i), now.Add(time.Duration(i%48)*time.Hour))
	}
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("dshop\x00Purchase\x00q%d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f.MayContain(keys[i%len(keys)])
	}
}
