package kv

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/units"
)

func TestOpenWriteReopenClose(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{GCInterval: units.Duration(10 * time.Millisecond)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Update(s.DB(), func(tx *badger.Txn) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
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
		if err := Update(db, func(tx *badger.Txn) error { return tx.Set([]byte(k), v) }); err != nil {
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
	// Get: found or not, fn called only for a present key, fn's error returned.
	calls := 0
	if found, err := Get(db, []byte("absent"), func([]byte) error { calls++; return nil }); found || err != nil || calls != 0 {
		t.Fatalf("absent: %v %v, fn called %d times", found, err, calls)
	}
	set("empty", nil)
	if found, err := Get(db, []byte("empty"), func(v []byte) error { calls++; return nil }); !found || err != nil || calls != 1 {
		t.Fatalf("an empty value: %v %v, fn called %d times", found, err, calls)
	}
	boom := errors.New("boom")
	if _, err := Get(db, []byte("n"), func([]byte) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
}

func TestMemTableSizeConfig(t *testing.T) {
	c := Config{MemTableSize: 4 << 20}
	c.SetDefaults()
	if err := c.Validate(); err == nil || err.Error() != "badger.memtable_size: must be at least 8MiB" {
		t.Fatalf("err = %v", err)
	}
	c = Config{}
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.MemTableSize != 8<<20 || c.MemoryBound() != 136<<20 {
		t.Fatalf("defaults: memtable %v, bound %d, %v", c.MemTableSize, c.MemoryBound(), err)
	}
	// The smallest allowed opens (Badger refuses a memtable whose batch
	// limit cannot hold its value threshold).
	s, err := Open(t.TempDir(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
}

func TestCompressionConfig(t *testing.T) {
	c := Config{Compression: "lz4"}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), `badger.compression: "lz4"`) {
		t.Fatalf("err = %v", err)
	}
	for comp, cache := range map[string]units.ByteSize{"": 64 << 20, "none": 0, "snappy": 64 << 20, "zstd": 64 << 20} {
		c := Config{Compression: comp}
		c.SetDefaults()
		if err := c.Validate(); err != nil || c.BlockCache != cache {
			t.Fatalf("compression %q: block cache %v, %v", comp, c.BlockCache, err)
		}
	}
}

// Tables are written with the configured compression, and a store whose
// compression changes still reads the tables written before.
func TestCompressionAppliesAndSwitches(t *testing.T) {
	dir := t.TempDir()
	val := []byte(strings.Repeat("tagway compresses well ", 40))
	key := func(comp string, i int) []byte { return fmt.Appendf(nil, "%s-%06d", comp, i) }
	comps := []string{"snappy", "none", "zstd"}
	for round, comp := range comps {
		s, err := Open(dir, Config{Compression: comp}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wb := NewWriteBatch(s.DB())
		for i := range 2000 {
			if err := wb.Set(key(comp, i), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil { // the memtable becomes a table
			t.Fatal(err)
		}
		s, err = Open(dir, Config{Compression: comp}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tables := s.DB().Tables()
		if len(tables) != round+1 {
			t.Fatalf("%s: %d tables after round %d", comp, len(tables), round)
		}
		// The newest table is this round's.
		newest := tables[0]
		for _, ti := range tables {
			if ti.ID > newest.ID {
				newest = ti
			}
		}
		ratio := float64(newest.OnDiskSize) / float64(newest.UncompressedSize)
		if (comp == "none") != (ratio > 0.9) {
			t.Fatalf("%s: table %d is %d bytes on disk for %d uncompressed", comp, newest.ID, newest.OnDiskSize, newest.UncompressedSize)
		}
		err = s.DB().View(func(tx *badger.Txn) error {
			for _, c := range comps[:round+1] {
				for _, i := range []int{0, 999, 1999} {
					it, err := tx.Get(key(c, i))
					if err != nil {
						return fmt.Errorf("%s: %s: %w", comp, key(c, i), err)
					}
					if v, _ := it.ValueCopy(nil); !bytes.Equal(v, val) {
						return fmt.Errorf("%s: %s = %q", comp, key(c, i), v)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTableSizeAndCompactorsConfig(t *testing.T) {
	for _, tc := range []struct {
		c   Config
		err string
	}{
		{Config{TableSize: 100 << 10}, "badger.table_size: must be between 256KiB and 256MiB"},
		{Config{TableSize: 512 << 20}, "badger.table_size: must be between 256KiB and 256MiB"},
		{Config{Compactors: 1}, "badger.compactors: must be between 2 and 16"},
		{Config{Compactors: 17}, "badger.compactors: must be between 2 and 16"},
	} {
		tc.c.SetDefaults()
		if err := tc.c.Validate(); err == nil || err.Error() != tc.err {
			t.Errorf("%+v: err = %v, want %q", tc.c, err, tc.err)
		}
	}
	c := Config{}
	c.SetDefaults()
	if c.TableSize != 2<<20 || c.Compactors != 2 {
		t.Fatalf("defaults: table %v, compactors %d", c.TableSize, c.Compactors)
	}
	dir, cfg := t.TempDir(), Config{TableSize: 256 << 10, Compactors: 3, Compression: "none"}
	s, err := Open(dir, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s != nil {
			_ = s.Close()
		}
	}()
	if o := s.DB().Opts(); o.BaseTableSize != 256<<10 || o.TableSizeMultiplier != 1 || o.NumCompactors != 3 {
		t.Fatalf("badger options: base table %d, multiplier %d, compactors %d", o.BaseTableSize, o.TableSizeMultiplier, o.NumCompactors)
	}
	// Tables that compactions write (every level below 0) are of that size:
	// six level-0 tables of 4MiB each (closing flushes the memtable), more
	// than the five that trigger a level-0 compaction, then flattened.
	val := bytes.Repeat([]byte{0x5a}, 200)
	const perRound = 4 << 20 / 220
	for round := 0; round < 6; round++ {
		wb := NewWriteBatch(s.DB())
		for i := 0; i < perRound; i++ {
			if err := wb.Set(fmt.Appendf(nil, "k%09d", (i*7919)%perRound*6+round), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = Open(dir, cfg, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DB().Flatten(1); err != nil {
		t.Fatal(err)
	}
	below := 0
	for _, ti := range s.DB().Tables() {
		if ti.Level == 0 {
			continue
		}
		below++
		// A builder stops at 95 % of the size, then finishes its block and
		// writes the index.
		if ti.OnDiskSize > 300<<10 {
			t.Errorf("level %d table %d: %d bytes on disk, table_size 256KiB", ti.Level, ti.ID, ti.OnDiskSize)
		}
	}
	if below < 20 {
		t.Fatalf("%d tables below level 0; 24MiB in 256KiB tables should be ~90", below)
	}
}

// Badger's write counters reach /metrics: a write shows as user bytes, and
// level-0 tables compacted into the levels as compaction bytes.
func TestMetricsCountBytesWritten(t *testing.T) {
	s, err := Open(t.TempDir(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := prometheus.NewRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	read := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				name := mf.GetName()
				if len(m.GetLabel()) > 0 {
					name += "{" + m.GetLabel()[0].GetValue() + "}"
				}
				if m.GetCounter() != nil {
					out[name] = m.GetCounter().GetValue()
				} else {
					out[name] = m.GetGauge().GetValue()
				}
			}
		}
		return out
	}
	before := read()
	val := bytes.Repeat([]byte("v"), 4000)
	// The same 2 500 keys six times, 60 MB: about seven 8MiB memtables
	// flushed to level 0, more than the five that start a compaction.
	for range 6 {
		wb := NewWriteBatch(s.DB())
		for j := range 2500 {
			if err := wb.Set(fmt.Appendf(nil, "k%06d", j), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	after := read()
	if d := after["tagway_badger_written_bytes_total{user}"] - before["tagway_badger_written_bytes_total{user}"]; d < 60e6 || d > 61e6 {
		t.Errorf("user bytes grew by %.0f after 60 MB of writes", d)
	}
	if d := after["tagway_badger_entries_written_total"] - before["tagway_badger_entries_written_total"]; d < 6*2500 || d > 6*2500+100 {
		t.Errorf("entries grew by %.0f after 15 000 sets", d)
	}
	if _, err := Get(s.DB(), []byte("k000001"), func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if d := read()["tagway_badger_gets_total"] - before["tagway_badger_gets_total"]; d != 1 {
		t.Errorf("gets grew by %.0f after one read", d)
	}
	if _, ok := after["tagway_badger_size_bytes{lsm}"]; !ok {
		t.Errorf("no lsm size: %v", after)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if read()["tagway_badger_written_bytes_total{compaction}"] > before["tagway_badger_written_bytes_total{compaction}"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("compaction bytes did not grow with seven level-0 tables")
		}
	}
}

// Badger's own messages reach the store's slog logger (with its level), not
// Badger's default logger on stderr.
func TestBadgerLogsThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(t.TempDir(), Config{}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Badger reports at open how many tables it opened (an info message).
	if !strings.Contains(buf.String(), "component=badger") || !strings.Contains(buf.String(), "tables opened") {
		t.Fatalf("no Badger message in the slog output:\n%s", buf.String())
	}
	buf.Reset()
	quiet := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if s, err = Open(t.TempDir(), Config{}, quiet); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if buf.Len() != 0 {
		t.Fatalf("info messages logged at level warn:\n%s", buf.String())
	}
}
