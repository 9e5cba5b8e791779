// Package kv opens Tagway's embedded Badger store under <data>/badger and runs
// its value-log garbage collection. Dedup state, segment state and the consent
// audit log (later issues) live here; Badger allows one process per directory,
// which is why the CLI inspects data through the admin API.
//
// The store runs in Badger's managed mode (managed.go): reads wait for no
// commit in flight, and every write goes through Update, NewWriteBatch,
// Group or Chunked here, which take their commit timestamps from the
// store's clock (badger.DB.Update and NewWriteBatch panic on it).
//
// A *Store is safe for concurrent use. Badger's own log lines go to the given
// logger with component=badger, warnings and errors only.
package kv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/tagway/tagway/gateway/units"
)

// Config tunes the store. The zero value works.
type Config struct {
	// GCInterval is how often value-log GC runs. Default 5m.
	GCInterval units.Duration `yaml:"gc_interval"`
	// GCDiscardRatio is the share of stale data that makes a value-log file
	// worth rewriting. Default 0.5.
	GCDiscardRatio float64 `yaml:"gc_discard_ratio"`
	// Memory Badger may use besides the OS page cache (see MemoryBound).
	// MemTableSize: default 8MiB (Badger's own default is 64MiB). A
	// memtable becomes a level-0 table; five of those are compacted at once
	// into the level below, and with keys spread over the whole range that
	// compaction rewrites all of that level, in several goroutines at once.
	// On a 2-core box each such burst took the CPU from the requests: with
	// 32MiB, a 4-5 s stall about once a minute (open-loop p99 2-3.6 s); with
	// 8MiB, 1-1.4 s stalls every ~11 s (p99 1.0-1.2 s), for the same CPU
	// per event.
	MemTableSize units.ByteSize `yaml:"memtable_size"`
	// NumMemtables: default 3 (Badger's 5).
	NumMemtables int `yaml:"num_memtables"`
	// Compression of Badger's tables: snappy (default, Badger's), none or
	// zstd. Tables written before a change keep theirs. none saves the
	// compression at every flush and compaction and the decompression (and
	// block cache) of reads — about 3 % of the server's CPU per beacon in the
	// bench profile — for about 2.3 times the disk.
	Compression string `yaml:"compression"`
	// BlockCache holds decompressed blocks: default 0 without compression
	// (blocks are read straight from the mapped tables), else 64MiB
	// (Badger's 256MiB).
	BlockCache units.ByteSize `yaml:"block_cache"`
	// IndexCache: default 32MiB (Badger's 0 keeps every index in memory).
	IndexCache units.ByteSize `yaml:"index_cache"`
	// TableSize is the size of the tables compactions write, at every
	// level: default 2MiB (Badger's starts at 2MiB and doubles at each
	// level further down). A table is built whole in memory before it is
	// written (its blocks, their compressed copies, a 3MiB index builder),
	// each compaction has up to 8 + 5 builders in flight, and Badger pools
	// eight builders' buffers: under write load these were the largest part
	// of the heap (767MB of 1.2GB live at the end of a 60 s bench run with
	// Badger's sizes and four compactors). 1MiB halves the builders again
	// but triples the index builders' allocations (3MiB per table).
	TableSize units.ByteSize `yaml:"table_size"`
	// Compactors is how many compactions may run at once: default 2
	// (Badger's 4; each running compaction adds its builders to the heap,
	// and on two cores two kept up in the bench), at least 2 (Badger's
	// minimum: one of them is kept for level 0).
	Compactors int `yaml:"compactors"`
}

// MemoryBound is what the config lets Badger keep in memory: its memtables,
// block and index caches, and about two memtables' worth of buffers for
// building level-0 tables when memtables are flushed (measured with
// gateway/dedup's TestMemoryBound1MKeys). 136 MiB with the defaults.
// Compactions come on top while they run: each of the compactors builds up
// to 13 tables at once, ~2 × table_size plus a 3MiB index builder each
// (~180MiB with the defaults), and Badger keeps the buffers of eight idle
// builders (up to 2 × memtable_size each). At the end of a 60 s bench run
// of server batches Badger's buffers held 230-330MB, the block cache
// included (480-770MB with Badger's own sizes).
func (c *Config) MemoryBound() int64 {
	return int64(c.MemTableSize)*int64(c.NumMemtables+2) + int64(c.BlockCache) + int64(c.IndexCache)
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.GCInterval == 0 {
		c.GCInterval = units.Duration(5 * time.Minute)
	}
	if c.GCDiscardRatio == 0 {
		c.GCDiscardRatio = 0.5
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = 8 << 20
	}
	if c.NumMemtables == 0 {
		c.NumMemtables = 3
	}
	if c.Compression == "" {
		c.Compression = "snappy"
	}
	if c.BlockCache == 0 && c.Compression != "none" {
		c.BlockCache = 64 << 20
	}
	if c.IndexCache == 0 {
		c.IndexCache = 32 << 20
	}
	if c.TableSize == 0 {
		c.TableSize = 2 << 20
	}
	if c.Compactors == 0 {
		c.Compactors = 2
	}
}

// Validate names the first bad key.
func (c *Config) Validate() error {
	if c.GCInterval < 0 {
		return errors.New("badger.gc_interval: must be positive")
	}
	if c.GCDiscardRatio <= 0 || c.GCDiscardRatio >= 1 {
		return errors.New("badger.gc_discard_ratio: must be between 0 and 1")
	}
	switch {
	case c.MemTableSize < 8<<20:
		// Badger's largest write batch is 15 % of a memtable, and must hold
		// a value of its 1MiB value threshold.
		return errors.New("badger.memtable_size: must be at least 8MiB")
	case c.NumMemtables < 1 || c.NumMemtables > 16:
		return errors.New("badger.num_memtables: must be between 1 and 16")
	case !slices.Contains([]string{"none", "snappy", "zstd"}, c.Compression):
		return fmt.Errorf("badger.compression: %q must be none, snappy or zstd", c.Compression)
	case c.BlockCache < 0:
		return errors.New("badger.block_cache: must not be negative")
	case c.IndexCache < 0:
		return errors.New("badger.index_cache: must not be negative")
	case c.TableSize < 256<<10 || c.TableSize > 256<<20:
		return errors.New("badger.table_size: must be between 256KiB and 256MiB")
	case c.Compactors < 2 || c.Compactors > 16:
		return errors.New("badger.compactors: must be between 2 and 16")
	}
	return nil
}

// compressions maps badger.compression to Badger's types.
var compressions = map[string]options.CompressionType{"none": options.None, "snappy": options.Snappy, "zstd": options.ZSTD}

// Store is an open Badger database with its GC loop.
type Store struct {
	db     *badger.DB
	log    *slog.Logger
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
}

// Open opens (creating if needed) the database in dir.
func Open(dir string, cfg Config, log *slog.Logger) (*Store, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := badgerOptions(dir, cfg, log)
	// Managed: reads wait for no commit in flight, writes take their
	// timestamps from the store's clock (managed.go).
	db, err := badger.OpenManaged(opts)
	if err != nil {
		return nil, fmt.Errorf("kv: opening badger at %s: %w", dir, err)
	}
	register(db)
	s := &Store{db: db, log: log.With("component", "kv"), stop: make(chan struct{})}
	s.wg.Add(1)
	go s.gcLoop(cfg)
	return s, nil
}

// badgerOptions are Badger's options for cfg (defaults filled in).
func badgerOptions(dir string, cfg Config, log *slog.Logger) badger.Options {
	opts := badger.DefaultOptions(dir).
		// Not WithLoggingLevel: it replaces the logger with Badger's own
		// (plain text on stderr). The level is the slog handler's.
		WithLogger(badgerLogger{log.With("component", "badger")}).
		WithMemTableSize(int64(cfg.MemTableSize)).
		WithNumMemtables(cfg.NumMemtables).
		WithBlockCacheSize(int64(cfg.BlockCache)).
		WithIndexCacheSize(int64(cfg.IndexCache)).
		WithCompression(compressions[cfg.Compression]).
		WithBaseTableSize(int64(cfg.TableSize)).
		WithNumCompactors(cfg.Compactors).
		// No conflict detection: every read-modify-write is serialised by
		// its owner (segments and forward's link consumer are one goroutine
		// each, consent state has a lock per profile, the audit log its
		// mutex, dedup its claims), and nothing retries on ErrConflict.
		// Detection kept a map of key fingerprints per transaction (a
		// segments commit writes thousands of keys) and checked every
		// commit against the transactions committed since it began, under
		// Badger's one oracle lock.
		WithDetectConflicts(false)
	opts.TableSizeMultiplier = 1 // table_size at every level, not doubling
	return opts
}

// DB returns the database for packages that keep state in it.
func (s *Store) DB() *badger.DB { return s.db }

// Ready reports an error once the store is closed.
func (s *Store) Ready() error {
	if s.closed.Load() || s.db.IsClosed() {
		return errors.New("kv: badger closed")
	}
	return nil
}

func (s *Store) gcLoop(cfg Config) {
	defer s.wg.Done()
	t := time.NewTicker(cfg.GCInterval.D())
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		// Run until there is nothing left to rewrite (Badger's documented loop).
		n := 0
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			err := s.db.RunValueLogGC(cfg.GCDiscardRatio)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.log.Warn("value log gc", "err", err)
				}
				break
			}
			n++
		}
		if n > 0 {
			s.log.Debug("value log gc rewrote files", "files", n)
		}
	}
}

// Close stops the GC loop, waits for it, then closes the database. Safe to
// call twice.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stop)
	s.wg.Wait()
	err := s.db.Close()
	unregister(s.db)
	return err
}

// badgerLogger writes Badger's messages to slog: errors and warnings as
// such, its info and debug messages (table flushes, compactions) at debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug, f, a) }

func (b badgerLogger) log(level slog.Level, f string, a []any) {
	if ctx := context.Background(); b.l.Enabled(ctx, level) {
		b.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(f, a...)))
	}
}

// GetIn calls fn with key's value in txn; found is false, and fn is not
// called, when the key is absent. v is valid only inside fn.
func GetIn(txn *badger.Txn, key []byte, fn func(v []byte) error) (found bool, err error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(fn)
}

// Get is GetIn in a read transaction of its own.
func Get(db *badger.DB, key []byte, fn func(v []byte) error) (found bool, err error) {
	err = db.View(func(txn *badger.Txn) error {
		found, err = GetIn(txn, key, fn)
		return err
	})
	return found, err
}

// GetUint64 reads a big-endian uint64 stored under key; 0 when the key is
// absent.
func GetUint64(db *badger.DB, key []byte) (uint64, error) {
	var n uint64
	_, err := Get(db, key, func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%q holds %d bytes, not 8", key, len(v))
		}
		n = binary.BigEndian.Uint64(v)
		return nil
	})
	return n, err
}
