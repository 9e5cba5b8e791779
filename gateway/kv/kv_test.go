package kv

import (
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/units"
)

func TestOpenWriteReopenClose(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{GCInterval: units.Duration(10 * time.Millisecond)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DB().Update(func(tx *badger.Txn) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // let the GC loop run at least once
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s.Ready() == nil {
		t.Fatal("closed store reports ready")
	}
	s, err = Open(dir, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.DB().View(func(tx *badger.Txn) error {
		it, err := tx.Get([]byte("k"))
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		if string(v) != "v" {
			t.Errorf("value = %q", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	c := Config{GCDiscardRatio: 1.5}
	c.SetDefaults()
	if err := c.Validate(); err == nil || err.Error()[:24] != "badger.gc_discard_ratio:" {
		t.Fatalf("err = %v", err)
	}
}

func TestGetUint64(t *testing.T) {
	db := openTest(t).DB()
	if n, err := GetUint64(db, []byte("absent")); n != 0 || err != nil {
		t.Fatalf("absent: %d, %v", n, err)
	}
	set := func(k string, v []byte) {
		if err := db.Update(func(tx *badger.Txn) error { return tx.Set([]byte(k), v) }); err != nil {
			t.Fatal(err)
		}
	}
	set("n", []byte{0, 0, 0, 0, 0, 0, 1, 2})
	if n, err := GetUint64(db, []byte("n")); n != 258 || err != nil {
		t.Fatalf("n: %d, %v", n, err)
	}
	set("bad", []byte{1})
	if _, err := GetUint64(db, []byte("bad")); err == nil {
		t.Fatal("a 1-byte value read as a uint64")
	}
}
