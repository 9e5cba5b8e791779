package kv

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Concurrent updates are all stored, in fewer transactions than updates.
func TestGroupCommitsConcurrentUpdatesTogether(t *testing.T) {
	db := openTest(t).DB()
	g := NewGroup(db, 64)
	const callers, each = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				k := fmt.Sprintf("k%02d-%03d", c, i)
				errs <- g.Update(1, func(txn *badger.Txn) error {
					return txn.SetEntry(badger.NewEntry([]byte(k), []byte(k)).WithTTL(time.Hour))
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for c := range callers {
		for i := range each {
			k := fmt.Sprintf("k%02d-%03d", c, i)
			if v, ok := get(t, db, k); !ok || v != k {
				t.Fatalf("%s = %q, %v", k, v, ok)
			}
		}
	}
	if n := g.Txns(); n >= callers*each {
		t.Fatalf("%d updates in %d transactions: nothing was grouped", callers*each, n)
	} else {
		t.Logf("%d updates in %d transactions", callers*each, n)
	}
}

// One caller's failing update fails that caller only: the others queued in
// the same group are committed.
func TestGroupFailureIsTheCallersOwn(t *testing.T) {
	db := openTest(t).DB()
	g := NewGroup(db, 64)
	bad := errors.New("bad update")
	// Hold the commit lock so that every update below queues into one group.
	release := hold(g)
	const n = 10
	errs := make([]error, n)
	runs := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = g.Update(1, func(txn *badger.Txn) error {
				runs[i]++
				if i == 3 {
					return bad
				}
				return txn.Set(fmt.Appendf(nil, "f%d", i), []byte("v"))
			})
		})
		waitQueued(t, g, i+1) // in this order
	}
	close(release)
	wg.Wait()
	for i := range n {
		_, ok := get(t, db, fmt.Sprintf("f%d", i))
		switch {
		case i == 3 && !errors.Is(errs[i], bad):
			t.Errorf("update 3: err = %v, want its own error", errs[i])
		case i == 3 && ok:
			t.Error("the failed update's key is stored")
		case i != 3 && (errs[i] != nil || !ok):
			t.Errorf("update %d: err = %v, stored %v: another's failure cost it", i, errs[i], ok)
		}
	}
	if runs[0] != 2 {
		t.Errorf("update 0 ran %d times, want 2 (in the failed group, then alone)", runs[0])
	}
}

// A group holds updates up to its weight: six of weight 4 under a bound of
// 10 go two by two; one heavier than the bound goes alone.
func TestGroupWeight(t *testing.T) {
	db := openTest(t).DB()
	g := NewGroup(db, 10)
	release := hold(g)
	var wg sync.WaitGroup
	for i, w := range []int{4, 4, 4, 4, 4, 4, 11} {
		wg.Go(func() {
			if err := g.Update(w, func(txn *badger.Txn) error { return txn.Set(fmt.Appendf(nil, "w%d", i), nil) }); err != nil {
				t.Error(err)
			}
		})
		waitQueued(t, g, i+1) // in this order
	}
	close(release)
	wg.Wait()
	if n := g.Txns(); n != 4 {
		t.Fatalf("%d transactions, want 4 (three pairs, then the heavy one)", n)
	}
}

// Exclusive keeps updates out while it runs.
func TestGroupExclusive(t *testing.T) {
	db := openTest(t).DB()
	g := NewGroup(db, 8)
	done := make(chan error, 1)
	err := g.Exclusive(func() error {
		go func() {
			done <- g.Update(1, func(txn *badger.Txn) error { return txn.Set([]byte("x"), []byte("1")) })
		}()
		waitQueued(t, g, 1)
		select {
		case err := <-done:
			return fmt.Errorf("update returned (%v) during Exclusive", err)
		case <-time.After(50 * time.Millisecond):
		}
		if _, ok := get(t, db, "x"); ok {
			return errors.New("update committed during Exclusive")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := get(t, db, "x"); !ok {
		t.Fatal("update not committed after Exclusive")
	}
}

// hold takes the group's commit lock until the returned channel is closed,
// so that updates queue meanwhile.
func hold(g *Group) chan struct{} {
	release, held := make(chan struct{}), make(chan struct{})
	go func() {
		_ = g.Exclusive(func() error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	return release
}

func waitQueued(t *testing.T, g *Group, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.qmu.Lock()
		q := len(g.queue)
		g.qmu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d updates queued", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}
