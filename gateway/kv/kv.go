// Package kv opens Tagway's embedded Badger store under <data>/badger and runs
// its value-log garbage collection. Dedup state, segment state and the consent
// audit log (later issues) live here; Badger allows one process per directory,
// which is why the CLI inspects data through the admin API.
//
// A *Store is safe for concurrent use. Badger's own log lines go to the given
// logger with component=badger, warnings and errors only.
package kv

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/units"
)

// Config tunes the store. The zero value works.
type Config struct {
	// GCInterval is how often value-log GC runs. Default 5m.
	GCInterval units.Duration `yaml:"gc_interval"`
	// GCDiscardRatio is the share of stale data that makes a value-log file
	// worth rewriting. Default 0.5.
	GCDiscardRatio float64 `yaml:"gc_discard_ratio"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.GCInterval == 0 {
		c.GCInterval = units.Duration(5 * time.Minute)
	}
	if c.GCDiscardRatio == 0 {
		c.GCDiscardRatio = 0.5
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
	return nil
}

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
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log.With("component", "badger")}).
		WithLoggingLevel(badger.WARNING)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("kv: opening badger at %s: %w", dir, err)
	}
	s := &Store{db: db, log: log.With("component", "kv"), stop: make(chan struct{})}
	s.wg.Add(1)
	go s.gcLoop(cfg)
	return s, nil
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
	return s.db.Close()
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debug(fmt.Sprintf(f, a...)) }
