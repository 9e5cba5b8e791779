//go:build !race

// The race detector's shadow memory makes RSS meaningless, so this test is
// built without -race; `make test` runs it in a second, non-race pass.

package dedup

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

// rssAnon is the process's anonymous resident memory: heap, stacks and
// Badger's buffers. File-backed pages (Badger's mmapped tables) are page
// cache the kernel reclaims under pressure, and are reported apart.
func rssAnon(t *testing.T) (anon, file int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "RssAnon:":
			anon = kb << 10
		case "RssFile:":
			file = kb << 10
		}
	}
	if anon == 0 {
		t.Skip("no RssAnon in /proc/self/status")
	}
	return anon, file
}

func rssBytes(t *testing.T) int64 { a, _ := rssAnon(t); return a }

// lruEntryBudget is what one hot entry may cost: its key, record and the
// LRU's element (measured at ~280 B; see the README).
const lruEntryBudget = 384

// TestMemoryBound1MKeys is the dedup issue's acceptance 4: one million
// distinct keys leave RSS within the LRU bound plus Badger's configured
// caches (plus a fixed allowance for the Go runtime), because older keys live
// only in Badger.
func TestMemoryBound1MKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts a million keys; skipped with -short")
	}
	const keys = 1_000_000
	cfg := Config{LRUEntries: 100_000}
	kcfg := kv.Config{}
	kcfg.SetDefaults()
	lruBound := int64(cfg.LRUEntries) * lruEntryBudget
	badgerBound := kcfg.MemoryBound()
	const runtimeAllowance = 64 << 20 // Go runtime, goroutine stacks, the test itself
	bound := lruBound + badgerBound + runtimeAllowance
	// As in production (README: GOMEMLIMIT), the Go memory limit is the
	// bound; without one the GC lets the heap grow to twice what is live.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(bound))
	runtime.GC()
	debug.FreeOSMemory()
	before := rssBytes(t)

	db, err := kv.Open(t.TempDir(), kcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Unix(1763800000, 0)
	s, err := New(cfg, db.DB(), nil, func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &event.Envelope{Site: "shop", Event: "CompletePayment", Source: event.SourceServer, ReceivedAt: now.UnixMilli()}
	e.User.EmailSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	e.User.AnonID = "0123456789abcdef0123456789abcdef"
	peak := int64(0)
	start := time.Now()
	for i := 0; i < keys; i += 200 {
		b := s.Begin()
		for j := i; j < i+200; j++ {
			e.EventID = "order-" + strconv.Itoa(j)
			v, err := b.Check(context.Background(), e)
			if err != nil {
				t.Fatal(err)
			}
			if v.Kind != First {
				t.Fatalf("key %d: %v", j, v.Kind)
			}
			b.Settle(v, true)
		}
		if err := b.Finish(); err != nil {
			t.Fatal(err)
		}
		if i%20_000 == 0 {
			peak = max(peak, rssBytes(t))
		}
	}
	inserted := time.Since(start)
	// Old keys are still known, from Badger.
	b := s.Begin()
	e.EventID = "order-7"
	if v, _ := b.Check(context.Background(), e); v.Kind != Duplicate {
		t.Fatalf("an evicted key is not found in Badger: %v", v.Kind)
	}
	_ = b.Finish()

	runtime.GC()
	debug.FreeOSMemory()
	after := rssBytes(t)
	if p := os.Getenv("TAGWAY_HEAP_PROFILE"); p != "" { // for investigating the figure
		if f, err := os.Create(p); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	peak = max(peak, after)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	_, file := rssAnon(t)
	t.Logf("%d keys in %v; LRU %d entries (bound %d MiB), Badger bound %d MiB; anonymous RSS grew %d MiB (peak %d MiB over the start; limit %d MiB), Go heap in use %d MiB, file-backed RSS %d MiB",
		keys, inserted.Round(time.Millisecond), s.hot.Len(), lruBound>>20, badgerBound>>20, (after-before)>>20, (peak-before)>>20, bound>>20, ms.HeapInuse>>20, file>>20)
	if s.hot.Len() > cfg.LRUEntries {
		t.Fatalf("LRU holds %d entries, bound %d", s.hot.Len(), cfg.LRUEntries)
	}
	if grew := peak - before; grew > bound {
		t.Fatalf("RSS grew %d MiB, bound %d MiB (LRU %d + Badger %d + runtime %d)", grew>>20, bound>>20, lruBound>>20, badgerBound>>20, runtimeAllowance>>20)
	}
}
