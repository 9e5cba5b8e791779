package kv

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// Timestamps. Open opens Badger in managed mode, and this file hands out
// its commit timestamps.
//
// Why: in Badger's own mode every transaction that begins, a read-only one
// included, takes as its read timestamp the last commit timestamp handed
// out and waits until every commit up to it has been applied by Badger's
// one writer goroutine. A point read on the edge (a dedup record, a
// consent state, an identity link) therefore waited for whatever anyone
// was committing: segments' chunks, forward's links, the other requests'
// group commits. In an execution trace of the open loop (server batches at
// 400 requests/s, 20 s) goroutines spent 37 s blocked in that wait (25 700
// times), request handlers 34 s of it in waits over 5 ms, and the consent
// engine's per-profile locks, held across such reads, queued 81 s more.
//
// Managed, a read transaction reads at the newest version (badger.DB.View
// reads at math.MaxUint64) and waits for nothing: it sees every write
// whose commit has returned, and a write being applied at that moment or
// not, which for a point read is the same as reading just before or just
// after it. What changes is only that a transaction of several entries can
// be seen half-applied by a reader that iterates while it commits (as
// Chunked's chunks and Badger's own WriteBatch already could).
//
// Writes take their commit timestamp from the store's clock, at commit, so of two
// writes of one key the one committed later wins, as before: every
// read-modify-write in Tagway is serialised by its owner (see Open), so
// the later commit is also the later timestamp. The clock starts above
// every version stored (badger.DB.MaxVersion, read from the tables' and
// memtables' metadata), so a data directory written in Badger's own mode,
// whose versions are its commit counter, opens as it is, and the other
// way round.
//
// Nothing reads an older snapshot, so every version at or below the
// newest timestamp is the compactions' to discard (SetDiscardTs, after
// every commit): old versions and deleted or expired keys go as they did.
//
// Every write to a store that Open opened goes through Update or
// NewWriteBatch here (badger.DB.Update and NewWriteBatch panic in managed
// mode); on a DB that Open did not open they fall back to Badger's own.

// commitClock is a managed DB's commit timestamps.
type commitClock struct {
	db *badger.DB
	ts atomic.Uint64
}

// clocks holds the commitClock of every DB Open opened and Close has not closed.
var clocks sync.Map // *badger.DB → *commitClock

func register(db *badger.DB) {
	c := &commitClock{db: db}
	c.ts.Store(db.MaxVersion())
	c.committed() // what a store opened here held is all discardable too
	clocks.Store(db, c)
}

func unregister(db *badger.DB) { clocks.Delete(db) }

func clockOf(db *badger.DB) *commitClock {
	if c, ok := clocks.Load(db); ok {
		return c.(*commitClock)
	}
	return nil
}

// next returns a commit timestamp above every one handed out before.
func (c *commitClock) next() uint64 { return c.ts.Add(1) }

// committed lets compactions discard what every commit so far has
// replaced or deleted.
func (c *commitClock) committed() { c.db.SetDiscardTs(c.ts.Load()) }

// Update runs fn in a read-write transaction and commits it: badger.DB.Update
// for every DB, managed or not. fn reads the newest version of each key
// (and its own writes); the transaction commits at a timestamp taken when
// fn has returned.
func Update(db *badger.DB, fn func(txn *badger.Txn) error) error {
	c := clockOf(db)
	if c == nil {
		return db.Update(fn)
	}
	if db.IsClosed() {
		return badger.ErrDBClosed
	}
	txn := db.NewTransactionAt(math.MaxUint64, true)
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return err
	}
	err := txn.CommitAt(c.next(), nil)
	c.committed()
	return err
}

// WriteBatch is badger.WriteBatch for every DB, managed or not: in a managed
// DB each entry gets a timestamp of its own as it is added, so an entry
// written twice in one batch (or in two) ends with its last value, as in
// Badger's own batches. Not safe for concurrent use.
type WriteBatch struct {
	wb *badger.WriteBatch
	c  *commitClock // nil: Badger's own mode
}

// NewWriteBatch returns a batch writing to db.
func NewWriteBatch(db *badger.DB) *WriteBatch {
	if c := clockOf(db); c != nil {
		return &WriteBatch{wb: db.NewManagedWriteBatch(), c: c}
	}
	return &WriteBatch{wb: db.NewWriteBatch()}
}

// Set writes key = val.
func (b *WriteBatch) Set(key, val []byte) error {
	return b.SetEntry(badger.NewEntry(key, val))
}

// SetEntry writes e, with its TTL and meta.
func (b *WriteBatch) SetEntry(e *badger.Entry) error {
	if b.c == nil {
		return b.wb.SetEntry(e)
	}
	return b.wb.SetEntryAt(e, b.c.next())
}

// Delete deletes key.
func (b *WriteBatch) Delete(key []byte) error {
	if b.c == nil {
		return b.wb.Delete(key)
	}
	return b.wb.DeleteAt(key, b.c.next())
}

// Flush commits what the batch holds and waits for it.
func (b *WriteBatch) Flush() error {
	err := b.wb.Flush()
	if b.c != nil {
		b.c.committed()
	}
	return err
}

// Cancel drops what was not committed. Safe after Flush.
func (b *WriteBatch) Cancel() { b.wb.Cancel() }
