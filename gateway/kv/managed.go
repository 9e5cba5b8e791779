package kv

import (
	"errors"
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
// Writes take their commit timestamp from the store's clock, at commit,
// so of two writes of one key the one committed later wins, as before:
// every read-modify-write in Tagway is serialised by its owner (see
// badgerOptions), so the later commit is also the later timestamp. The clock starts above
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

// clocks holds the clock of every DB that Open opened and Close has not
// closed.
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

// WriteBatch is badger.WriteBatch for every DB, managed or not. In a managed
// DB it is a sequence of transactions, each committed (at a timestamp of
// its own) when the next entry would not fit, the last by Flush: each
// transaction is applied whole or, after a crash, not at all (Badger's
// transaction markers), and they are applied in order, as Badger's own
// batches are. (Badger's managed batches either write no markers, with a
// version per entry, or give every transaction of the batch one
// timestamp, so that a key written in two of them has two values at one
// version.) Not safe for concurrent use.
type WriteBatch struct {
	db  *badger.DB
	wb  *badger.WriteBatch // Badger's own mode
	c   *commitClock       // managed
	txn *badger.Txn
	err error
}

// NewWriteBatch returns a batch writing to db. On a closed DB (whose clock
// Close has dropped, and whose NewWriteBatch would panic if it was managed)
// every call returns badger.ErrDBClosed.
func NewWriteBatch(db *badger.DB) *WriteBatch {
	if db.IsClosed() {
		return &WriteBatch{db: db, err: badger.ErrDBClosed}
	}
	if c := clockOf(db); c != nil {
		return &WriteBatch{db: db, c: c}
	}
	return &WriteBatch{db: db, wb: db.NewWriteBatch()}
}

// Set writes key = val.
func (b *WriteBatch) Set(key, val []byte) error {
	if b.wb != nil {
		return b.wb.Set(key, val)
	}
	return b.add(func(txn *badger.Txn) error { return txn.Set(key, val) })
}

// SetEntry writes e, with its TTL and meta.
func (b *WriteBatch) SetEntry(e *badger.Entry) error {
	if b.wb != nil {
		return b.wb.SetEntry(e)
	}
	return b.add(func(txn *badger.Txn) error { return txn.SetEntry(e) })
}

// Delete deletes key.
func (b *WriteBatch) Delete(key []byte) error {
	if b.wb != nil {
		return b.wb.Delete(key)
	}
	return b.add(func(txn *badger.Txn) error { return txn.Delete(key) })
}

// add adds an entry to the transaction being filled, committing it first
// when the entry does not fit (Badger refuses it before taking it).
func (b *WriteBatch) add(fn func(txn *badger.Txn) error) error {
	if b.err != nil {
		return b.err
	}
	if b.txn == nil {
		b.txn = b.db.NewTransactionAt(math.MaxUint64, true)
	}
	err := fn(b.txn)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = b.commit(); err == nil {
			b.txn = b.db.NewTransactionAt(math.MaxUint64, true)
			err = fn(b.txn)
		}
	}
	if err != nil {
		b.err = err
	}
	return err
}

func (b *WriteBatch) commit() error {
	txn := b.txn
	b.txn = nil
	defer txn.Discard()
	err := txn.CommitAt(b.c.next(), nil)
	b.c.committed()
	return err
}

// Flush commits what the batch holds and waits for it.
func (b *WriteBatch) Flush() error {
	if b.wb != nil {
		return b.wb.Flush()
	}
	if b.err != nil {
		return b.err
	}
	if b.txn == nil {
		return nil
	}
	if err := b.commit(); err != nil {
		b.err = err
		return err
	}
	return nil
}

// Cancel drops what was not committed. Safe after Flush.
func (b *WriteBatch) Cancel() {
	if b.wb != nil {
		b.wb.Cancel()
		return
	}
	if b.txn != nil {
		b.txn.Discard()
		b.txn = nil
	}
}
