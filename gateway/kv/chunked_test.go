package kv

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func get(t *testing.T, db *badger.DB, k string) (string, bool) {
	t.Helper()
	var v []byte
	err := db.View(func(tx *badger.Txn) error {
		it, err := tx.Get([]byte(k))
		if err != nil {
			return err
		}
		v, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v), true
}

func TestChunkedWritesEverythingInChunks(t *testing.T) {
	db := openTest(t).DB()
	if err := Update(db, func(tx *badger.Txn) error { return tx.Set([]byte("old"), []byte("x")) }); err != nil {
		t.Fatal(err)
	}
	w := NewChunked(db, 100)
	defer w.Cancel()
	for i := range 250 {
		k := []byte(fmt.Sprintf("k%03d", i))
		var err error
		if i%2 == 0 {
			err = w.Set(k, []byte(fmt.Sprint("v", i)))
		} else {
			err = w.SetEntry(badger.NewEntry(k, []byte(fmt.Sprint("e", i))).WithTTL(time.Hour))
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == 149 && w.Chunks() != 1 {
			t.Fatalf("after 150 entries: %d chunks committed, want 1", w.Chunks())
		}
	}
	if err := w.Delete([]byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.Chunks() != 3 {
		t.Fatalf("%d chunks for 251 entries of 100, want 3", w.Chunks())
	}
	for i := range 250 {
		want := fmt.Sprint("v", i)
		if i%2 == 1 {
			want = fmt.Sprint("e", i)
		}
		if v, ok := get(t, db, fmt.Sprintf("k%03d", i)); !ok || v != want {
			t.Fatalf("k%03d = %q, %v; want %q", i, v, ok, want)
		}
	}
	if _, ok := get(t, db, "old"); ok {
		t.Fatal("deleted key still there")
	}
	if err := w.Set([]byte("late"), nil); err == nil {
		t.Fatal("Set after Flush accepted")
	}
	w.Cancel() // after Flush: a no-op
}

// Cancel keeps the chunks committed and drops the rest: what a crash
// mid-write leaves is a prefix.
func TestChunkedCancelLeavesAPrefix(t *testing.T) {
	db := openTest(t).DB()
	w := NewChunked(db, 10)
	for i := range 25 {
		if err := w.Set([]byte(fmt.Sprintf("k%02d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	w.Cancel()
	for i := range 25 {
		_, ok := get(t, db, fmt.Sprintf("k%02d", i))
		if ok != (i < 20) {
			t.Fatalf("k%02d stored = %v after Cancel with 2 chunks committed", i, ok)
		}
	}
	if err := w.Flush(); err == nil {
		t.Fatal("Flush after Cancel succeeded")
	}
}

func TestChunkedEmptyFlush(t *testing.T) {
	w := NewChunked(openTest(t).DB(), 0)
	if err := w.Flush(); err != nil || w.Chunks() != 0 {
		t.Fatalf("empty Flush: %v, %d chunks", err, w.Chunks())
	}
}

// BenchmarkTxnDuringLongWrite is what a small transaction (an edge
// request's dedup or consent write) takes while another goroutine keeps
// writing batches of 10 000 entries (segments' commit) every 100 ms, in
// one WriteBatch or in chunks of 512; max-µs is the longest wait (the
// transactions queued behind a whole WriteBatch are few, so a percentile
// misses them).
func BenchmarkTxnDuringLongWrite(b *testing.B) {
	for _, chunk := range []int{0, 512} {
		name := "one-batch"
		if chunk > 0 {
			name = fmt.Sprint("chunks-", chunk)
		}
		b.Run(name, func(b *testing.B) {
			db := openTest(b).DB()
			val := make([]byte, 400)
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for round := 0; !stop.Load(); round++ {
					n := chunk
					if n == 0 {
						n = 1 << 30
					}
					w := NewChunked(db, n)
					for i := range 10000 {
						if err := w.Set(fmt.Appendf(nil, "gs-shop-%08d-%05d", round, i), val); err != nil {
							b.Error(err)
							return
						}
					}
					if err := w.Flush(); err != nil {
						b.Error(err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			time.Sleep(50 * time.Millisecond)
			var took []time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				t0 := time.Now()
				err := Update(db, func(tx *badger.Txn) error {
					return tx.Set(fmt.Appendf(nil, "dd-%d", i), []byte("rec"))
				})
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
			}
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
			b.ReportMetric(float64(slices.Max(took).Microseconds()), "max-µs")
		})
	}
}
