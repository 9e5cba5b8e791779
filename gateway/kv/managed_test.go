package kv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// versions lists the versions of key stored (newest first), whatever the
// compactions left.
func versions(t *testing.T, db *badger.DB, key string) []uint64 {
	t.Helper()
	var vs []uint64
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true, Prefix: []byte(key)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if string(it.Item().Key()) == key {
				vs = append(vs, it.Item().Version())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// The last write of a key wins, whether it went through Update, a
// WriteBatch or a Chunked writer, and after a restart: the clock starts
// above every version stored (a clock that started again at zero would
// write versions below the old ones, which would keep winning).
func TestManagedLastWriteWins(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := s.DB()
	set := func(v string) {
		t.Helper()
		if err := Update(db, func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte(v)) }); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want string) {
		t.Helper()
		if got, ok := get(t, db, "k"); !ok || got != want {
			t.Fatalf("k = %q (found %v), want %q", got, ok, want)
		}
	}
	set("update-1")
	expect("update-1")
	wb := NewWriteBatch(db)
	for _, v := range []string{"batch-1", "batch-2"} { // twice in one batch: the last
		if err := wb.Set([]byte("k"), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	expect("batch-2")
	c := NewChunked(db, 2)
	for i := range 5 { // across chunks
		if err := c.Set([]byte("k"), fmt.Appendf(nil, "chunk-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	expect("chunk-4")
	set("update-2")
	expect("update-2")
	wb = NewWriteBatch(db)
	if err := wb.Delete([]byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := get(t, db, "k"); ok {
		t.Fatal("k found after its delete")
	}
	set("before-restart")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db = s.DB()
	expect("before-restart")
	set("after-restart")
	expect("after-restart")
}

// A data directory written in Badger's own mode (versions are its commit
// counter) opens managed, and what is written then wins over what it held;
// and back (an older build opens what a managed store wrote).
func TestManagedOpensUnmanagedData(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{}
	cfg.SetDefaults()
	own, err := badger.Open(badgerOptions(dir, cfg, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := own.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), fmt.Appendf(nil, "own-%d", i)) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := own.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := get(t, s.DB(), "k"); got != "own-19" {
		t.Fatalf("k = %q after opening managed, want own-19", got)
	}
	if err := Update(s.DB(), func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("managed")) }); err != nil {
		t.Fatal(err)
	}
	if got, _ := get(t, s.DB(), "k"); got != "managed" {
		t.Fatalf("k = %q, want the managed write", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	own, err = badger.Open(badgerOptions(dir, cfg, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if got, _ := get(t, own, "k"); got != "managed" {
		t.Fatalf("k = %q in Badger's own mode again, want the managed write", got)
	}
	if err := own.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("own-again")) }); err != nil {
		t.Fatal(err)
	}
	if got, _ := get(t, own, "k"); got != "own-again" {
		t.Fatalf("k = %q, want the write made in Badger's own mode again", got)
	}
}

// Compactions discard what later writes replaced: without a discard
// timestamp a managed store keeps every version of every key. After a
// restart too (the timestamp is not stored: Open sets it again).
func TestManagedCompactionsDropOldVersions(t *testing.T) {
	dir := t.TempDir()
	// Six level-0 tables (one per close), one more than Badger's
	// NumLevelZeroTables: Flatten then compacts level 0 into the next.
	n := 0
	for range 6 {
		s, err := Open(dir, Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			n++
			if err := Update(s.DB(), func(txn *badger.Txn) error { return txn.Set([]byte("k"), fmt.Appendf(nil, "v%d", n)) }); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil { // flushes the memtable to level 0
			t.Fatal(err)
		}
	}
	s, err := Open(dir, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := len(versions(t, s.DB(), "k")); got != n {
		t.Fatalf("%d versions before compaction, want %d", got, n)
	}
	if err := s.DB().Flatten(1); err != nil {
		t.Fatal(err)
	}
	if vs := versions(t, s.DB(), "k"); len(vs) != 1 {
		t.Fatalf("versions after compaction: %v, want the newest only", vs)
	}
	if got, _ := get(t, s.DB(), "k"); got != fmt.Sprint("v", n) {
		t.Fatalf("k = %q, want v%d", got, n)
	}
}

// A batch larger than one transaction is committed as several, in order:
// a key written in the first and again in the last ends with its last
// value, and every entry is there.
func TestManagedBatchSplitsIntoTransactions(t *testing.T) {
	s := openTest(t)
	db := s.DB()
	wb := NewWriteBatch(db)
	if err := wb.Set([]byte("k"), []byte("first")); err != nil {
		t.Fatal(err)
	}
	const n = 50000 // ~5 MB: Badger's transactions hold 15 % of an 8 MiB memtable
	val := make([]byte, 64)
	for i := range n {
		if err := wb.Set(fmt.Appendf(nil, "f%06d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Set([]byte("k"), []byte("last")); err != nil {
		t.Fatal(err)
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := get(t, db, "k"); got != "last" {
		t.Fatalf("k = %q, want the batch's last write", got)
	}
	count := 0
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("f")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			count++
		}
		return nil
	})
	if err != nil || count != n {
		t.Fatalf("%d of %d entries stored (%v)", count, n, err)
	}
	if vs := versions(t, db, "k"); len(vs) != 2 || vs[0] <= vs[1] {
		t.Fatalf("k's versions %v: want two, the last write's newer (its own transaction)", vs)
	}
}

// A batch's transactions are each applied whole or not at all after a
// crash: Chunked's "what is stored is a prefix of what was written" rests
// on it. The crash: the data directory copied while the store is open,
// with its write-ahead log zeroed from the middle of the last batch on.
func TestManagedBatchIsWholeAfterACrash(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func(prefix string, n int, val []byte) {
		t.Helper()
		wb := NewWriteBatch(s.DB())
		for i := range n {
			if err := wb.Set(fmt.Appendf(nil, "%s%04d", prefix, i), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	write("a", 100, []byte("x"))
	write("b", 900, bytes.Repeat([]byte("y"), 1000)) // one transaction of ~0.9 MB

	crashed := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cut := false
	for _, e := range ents {
		// Badger's files are preallocated (the value log 2 GiB, sparse) and
		// written from the start: copy the first 32 MiB at most, keep the size.
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, min(info.Size(), 32<<20))
		_, err = io.ReadFull(f, b)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.Name(), ".mem") {
			if i := bytes.Index(b, []byte("b0450")); i > 0 {
				clear(b[i:]) // the rest of the log never reached the disk
				cut = true
			}
		}
		dst := filepath.Join(crashed, e.Name())
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(dst, info.Size()); err != nil {
			t.Fatal(err)
		}
	}
	if !cut {
		t.Fatal("no write-ahead log holds the second batch")
	}
	c, err := Open(crashed, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	count := func(prefix string) int {
		n := 0
		err := c.DB().View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if a, b := count("a"), count("b"); a != 100 || b != 0 {
		t.Fatalf("after the crash: %d of 100 entries of the whole batch, %d of 900 of the torn one (want 0)", a, b)
	}
}

// A batch on a closed store fails with ErrDBClosed rather than panicking
// (Close drops the store's clock; Badger's own batch panics on a managed DB).
func TestManagedBatchAfterClose(t *testing.T) {
	s, err := Open(t.TempDir(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := s.DB()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wb := NewWriteBatch(db)
	if err := wb.Set([]byte("k"), []byte("v")); !errors.Is(err, badger.ErrDBClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
	if err := wb.Flush(); !errors.Is(err, badger.ErrDBClosed) {
		t.Fatalf("Flush after Close: %v", err)
	}
	wb.Cancel()
	if err := Update(db, func(*badger.Txn) error { return nil }); !errors.Is(err, badger.ErrDBClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
}
