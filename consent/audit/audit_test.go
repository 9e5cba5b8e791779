package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"expvar"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/kv"
)

var t0 = time.Unix(1763800000, 0)

func openLog(t *testing.T) (*Log, *badger.DB, *time.Time) {
	t.Helper()
	st, err := kv.Open(t.TempDir(), kv.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	now := t0
	return New(st.DB(), func() time.Time { return now }), st.DB(), &now
}

// fill appends n consent records, alternating two profiles, a minute apart.
func fill(t *testing.T, l *Log, now *time.Time, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		p := []string{"a:alice", "a:bob"}[i%2]
		data, _ := json.Marshal(map[string]any{"usp": "1YNN", "allowed": []string{"measurement"}, "i": i})
		if err := l.Append(&Record{Kind: KindConsent, Site: "shop", Profile: p, Jurisdiction: "US-CA", Source: "browser", Data: data}); err != nil {
			t.Fatal(err)
		}
		*now = now.Add(time.Minute)
	}
}

func raw(t *testing.T, db *badger.DB, seq uint64) []byte {
	t.Helper()
	var v []byte
	_ = db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(recordKey(seq))
		if err != nil {
			t.Fatal(err)
		}
		v, err = it.ValueCopy(nil)
		return err
	})
	return v
}

func set(t *testing.T, db *badger.DB, key, val []byte) {
	t.Helper()
	if err := kv.Update(db, func(txn *badger.Txn) error { return txn.Set(key, val) }); err != nil {
		t.Fatal(err)
	}
}

func del(t *testing.T, db *badger.DB, key []byte) {
	t.Helper()
	if err := kv.Update(db, func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
		t.Fatal(err)
	}
}

func TestChainVerifies(t *testing.T) {
	l, _, now := openLog(t)
	fill(t, l, now, 10)
	n, err := l.Verify()
	if err != nil || n != 10 {
		t.Fatalf("verify: %d %v", n, err)
	}
}

// TestTamper is the consent issue's acceptance 4: altering, deleting or
// reordering one record makes Verify fail and name it.
func TestTamper(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, db *badger.DB)
		seq    uint64
		reason string
	}{
		{"alter a field", func(t *testing.T, db *badger.DB) {
			b := raw(t, db, 5)
			if !bytes.Contains(b, []byte("US-CA")) {
				t.Fatalf("record 5 lacks the text to alter: %q", b)
			}
			set(t, db, recordKey(5), bytes.Replace(b, []byte("US-CA"), []byte("US-NY"), 1))
		}, 5, "altered"},
		{"alter and rehash", func(t *testing.T, db *badger.DB) {
			var r Record
			if err := decodeRecord(raw(t, db, 5), &r); err != nil {
				t.Fatal(err)
			}
			r.Jurisdiction = "US-NY"
			r.Hash, _ = hashOf(r)
			set(t, db, recordKey(5), encodeRecord(nil, &r))
		}, 6, "prev does not match"},
		{"delete one", func(t *testing.T, db *badger.DB) { del(t, db, recordKey(4)) }, 4, "missing"},
		{"reorder two", func(t *testing.T, db *badger.DB) {
			a, b := raw(t, db, 3), raw(t, db, 4)
			set(t, db, recordKey(3), b)
			set(t, db, recordKey(4), a)
		}, 3, "moved"},
		{"delete the last", func(t *testing.T, db *badger.DB) { del(t, db, recordKey(10)) }, 10, "head says 10"},
		{"garbage", func(t *testing.T, db *badger.DB) { set(t, db, recordKey(7), []byte("{")) }, 7, "not valid JSON"},
		{"truncated", func(t *testing.T, db *badger.DB) {
			b := raw(t, db, 7)
			set(t, db, recordKey(7), b[:len(b)-10])
		}, 7, "record's hash is truncated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, db, now := openLog(t)
			fill(t, l, now, 10)
			tc.tamper(t, db)
			_, err := l.Verify()
			var be *BrokenError
			if !errors.As(err, &be) || !errors.Is(err, ErrBroken) {
				t.Fatalf("verify after tampering: %v", err)
			}
			if be.Seq != tc.seq || !strings.Contains(be.Reason, tc.reason) {
				t.Fatalf("broken at %d (%s), want %d (%s)", be.Seq, be.Reason, tc.seq, tc.reason)
			}
		})
	}
}

func TestQueryScanAndLast(t *testing.T) {
	l, _, now := openLog(t)
	fill(t, l, now, 10) // alice at minutes 0,2,4,6,8
	var got []uint64
	err := l.Query("shop", "a:alice", t0.Add(2*time.Minute), t0.Add(7*time.Minute), func(r *Record) error {
		if r.Profile != "a:alice" || r.ProfileRef == "" {
			t.Errorf("record %+v", r)
		}
		got = append(got, r.Seq)
		return nil
	})
	if err != nil || len(got) != 3 || got[0] != 3 || got[2] != 7 {
		t.Fatalf("query: %v %v", got, err)
	}
	n := 0
	_ = l.Scan(time.Time{}, time.Time{}, func(r *Record) error {
		if r.Profile == "" {
			t.Errorf("scan did not resolve the profile of %d", r.Seq)
		}
		n++
		return nil
	})
	if n != 10 {
		t.Fatalf("scan: %d", n)
	}
	if err := l.Append(&Record{Kind: KindPolicy, Data: json.RawMessage(`{"v":1}`)}); err != nil {
		t.Fatal(err)
	}
	if r, err := l.Last(KindPolicy); err != nil || r == nil || r.Seq != 11 {
		t.Fatalf("last policy: %+v %v", r, err)
	}
	// Stored records never hold the profile id.
	l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'A'}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, _ := it.Item().ValueCopy(nil)
			if bytes.Contains(v, []byte("alice")) {
				t.Errorf("record %x stores the profile id: %s", it.Item().Key(), v)
			}
		}
		return nil
	})
}

// After Erase, nothing in Badger ties to the profile id: records keep only
// the ref, whose key is gone; the chain still verifies.
func TestErase(t *testing.T) {
	l, db, now := openLog(t)
	fill(t, l, now, 6)
	ok, err := l.Erase("shop", "a:alice")
	if err != nil || !ok {
		t.Fatalf("erase: %v %v", ok, err)
	}
	if n, err := l.Verify(); err != nil || n != 7 {
		t.Fatalf("verify after erase: %d %v", n, err)
	}
	_ = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			v, _ := it.Item().ValueCopy(nil)
			if bytes.Contains(k, []byte("alice")) || bytes.Contains(v, []byte("alice")) {
				t.Errorf("key %q still ties to the profile", k)
			}
		}
		return nil
	})
	n := 0
	_ = l.Query("shop", "a:alice", time.Time{}, time.Time{}, func(*Record) error { n++; return nil })
	if n != 0 {
		t.Fatalf("query finds %d records of an erased profile", n)
	}
	last, _ := l.Last(KindErasure)
	if last == nil || last.Site != "shop" || last.Profile != "" || len(last.Data) != 0 {
		t.Fatalf("erasure record: %+v", last)
	}
	if ok, _ := l.Erase("shop", "a:nobody"); ok {
		t.Fatal("erasing an unknown profile appended a record")
	}
	// Bob is untouched.
	n = 0
	_ = l.Query("shop", "a:bob", time.Time{}, time.Time{}, func(*Record) error { n++; return nil })
	if n != 3 {
		t.Fatalf("bob: %d records", n)
	}
}

func TestPruneKeepsTheChainVerifiable(t *testing.T) {
	l, _, now := openLog(t)
	fill(t, l, now, 10)
	n, err := l.Prune(t0.Add(4 * time.Minute)) // minutes 0-3: records 1-4
	if err != nil || n != 4 {
		t.Fatalf("prune: %d %v", n, err)
	}
	if v, err := l.Verify(); err != nil || v != 6 {
		t.Fatalf("verify after prune: %d %v", v, err)
	}
	fill(t, l, now, 2)
	if v, err := l.Verify(); err != nil || v != 8 {
		t.Fatalf("verify after appending: %d %v", v, err)
	}
	if n, _ := l.Prune(t0.Add(time.Hour)); n != 7 { // everything but the newest
		t.Fatalf("prune all: %d", n)
	}
	if v, err := l.Verify(); err != nil || v != 1 {
		t.Fatalf("verify the last: %d %v", v, err)
	}
}

// Concurrent appends are committed in groups, and the chain stays whole:
// every append that succeeded is on it once, in order, with its caller's
// extra writes; one caller's failing extra write fails only that caller.
func TestConcurrentAppendsGroupCommit(t *testing.T) {
	l, db, _ := openLog(t)
	const callers, each = 32, 25
	errBad := errors.New("bad extra write")
	var wg sync.WaitGroup
	failed := make([]bool, callers*each)
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := g*each + i
				key := fmt.Appendf(nil, "x%d", n)
				err := l.AppendTx(func(txn *badger.Txn) error {
					if err := txn.Set(key, []byte("v")); err != nil {
						return err
					}
					if n%37 == 5 {
						return errBad
					}
					return nil
				}, &Record{Kind: KindConsent, Site: "shop", Profile: fmt.Sprintf("a:p%d", g), Data: []byte(`{}`)})
				switch {
				case n%37 == 5 && !errors.Is(err, errBad):
					t.Errorf("append %d: err %v, want the extra write's error", n, err)
				case n%37 != 5 && err != nil:
					t.Errorf("append %d: %v", n, err)
				}
				failed[n] = err != nil
			}
		}()
	}
	wg.Wait()
	ok := 0
	for n, f := range failed {
		var found bool
		_ = db.View(func(txn *badger.Txn) error {
			_, err := txn.Get(fmt.Appendf(nil, "x%d", n))
			found = err == nil
			return nil
		})
		if found == f {
			t.Errorf("append %d: failed %v, its extra write stored %v", n, f, found)
		}
		if !f {
			ok++
		}
	}
	n, err := l.Verify()
	if err != nil || n != ok {
		t.Fatalf("verify: %d records, %v; want %d", n, err, ok)
	}
	perProfile := 0
	if err := l.Query("shop", "a:p3", time.Time{}, time.Now().Add(time.Hour), func(*Record) error { perProfile++; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := each - countFailed(failed[3*each:4*each]); perProfile != want {
		t.Fatalf("profile a:p3: %d records, want %d", perProfile, want)
	}
	if txns := l.group.Txns(); txns >= callers*each {
		t.Fatalf("%d transactions for %d appends: no group commit", txns, callers*each)
	}
	t.Logf("%d appends in %d transactions", callers*each, l.group.Txns())
}

// An append chains to the head the log keeps in memory, not to a Badger
// read of it (the head is rewritten by every append, so it has versions at
// every level and a point read looks through all of them). After a failed
// transaction the head is read again.
func TestAppendsKeepTheHead(t *testing.T) {
	l, _, _ := openLog(t)
	gets := func() int64 { return expvar.Get("badger_get_num_user").(*expvar.Int).Value() }
	rec := func() *Record { return &Record{Kind: KindConsent, Site: "shop", Data: []byte(`{}`)} }
	if err := l.Append(rec()); err != nil { // the first reads it
		t.Fatal(err)
	}
	before := gets()
	for range 50 {
		if err := l.Append(rec()); err != nil {
			t.Fatal(err)
		}
	}
	if d := gets() - before; d != 0 {
		t.Fatalf("%d Badger reads for 50 appends", d)
	}
	errBad := errors.New("bad extra write")
	if err := l.AppendTx(func(*badger.Txn) error { return errBad }, rec()); !errors.Is(err, errBad) {
		t.Fatalf("failing append: %v", err)
	}
	before = gets()
	if err := l.Append(rec()); err != nil {
		t.Fatal(err)
	}
	if d := gets() - before; d != 1 {
		t.Fatalf("%d Badger reads for the append after a failed one, want the head's", d)
	}
	if n, err := l.Verify(); err != nil || n != 52 {
		t.Fatalf("verify: %d records, %v", n, err)
	}
}

func countFailed(f []bool) int {
	n := 0
	for _, x := range f {
		if x {
			n++
		}
	}
	return n
}

// A profile keeps its key, and so its ref, across a restart: the filter of
// keys in front of Badger is loaded from what is stored (without it, a
// profile's next record would get a new key and a new ref, and the old
// records would no longer be found by profile).
func TestProfileRefSurvivesReopen(t *testing.T) {
	l, db, now := openLog(t)
	fill(t, l, now, 2)
	before := refOf1(l, "a:alice")
	if before == "" {
		t.Fatal("no ref")
	}
	l2 := New(db, func() time.Time { return *now })
	if l2.secrets == nil || !l2.secrets.MayContain(secretKey("shop", "a:alice")) {
		t.Fatal("the reopened log's filter does not hold alice's key")
	}
	for _, p := range []string{"a:alice", "a:carol"} {
		if err := l2.Append(&Record{Kind: KindConsent, Site: "shop", Profile: p, Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	n, refs := 0, map[string]bool{}
	_ = l2.Query("shop", "a:alice", time.Time{}, time.Time{}, func(r *Record) error { n++; refs[r.ProfileRef] = true; return nil })
	if n != 2 || len(refs) != 1 || !refs[before] {
		t.Fatalf("after reopening: %d records of alice, refs %v (was %s)", n, refs, before)
	}
	// A new profile gets a key, and the filter holds it from then on.
	if !l2.secrets.MayContain(secretKey("shop", "a:carol")) || refOf1(l2, "a:carol") == "" || refOf1(l2, "a:carol") == before {
		t.Fatal("carol's key not in the filter, or no ref of her own")
	}
}

// refOf1 is the ref of a profile's last record ("" when none).
func refOf1(l *Log, profile string) string {
	var got string
	_ = l.Query("shop", profile, time.Time{}, time.Time{}, func(r *Record) error { got = r.ProfileRef; return nil })
	return got
}
