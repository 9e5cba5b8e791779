package kv

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// Group commits the writes of concurrent callers together (group commit):
// whoever holds the commit lock takes every update queued behind it, up to
// a bound, into one Badger transaction, and the others wait for theirs.
//
// Every Badger transaction costs a round through Badger's writer goroutine
// (and, before the store was managed, a read timestamp that waited until
// every commit in flight had been applied). One transaction per request
// put that on every request's path; an execution trace of the edge's open
// loop had requests queued there whenever a compaction took the CPU.
// Grouped, the round is paid once per group, and only the goroutine
// committing waits in it.
//
// A group that fails is retried one update at a time, so one caller's bad
// write fails only that caller. An update function may therefore run more
// than once, each time in a new transaction: it must not depend on state a
// failed run changed, and must make its entries afresh (Badger keeps the
// *Entry a transaction was given and changes its key when it commits).
type Group struct {
	db  *badger.DB
	max int

	mu    sync.Mutex // held while a group commits, and by Exclusive
	qmu   sync.Mutex // guards queue
	queue []*groupReq
	txns  atomic.Int64
	// committed, when set (OnCommit), hears each transaction's outcome.
	committed func(err error)
}

// OnCommit makes fn hear the outcome of every transaction the group tries
// (a group's, then each update's alone if the group's failed), right after
// it and before the next one begins, under the commit lock: what the
// updates of a transaction left in memory can be kept or dropped with it.
// Set it before the first Update.
func (g *Group) OnCommit(fn func(err error)) { g.committed = fn }

type groupReq struct {
	fn     func(txn *badger.Txn) error
	weight int
	done   chan error
}

// NewGroup returns a Group on db whose transactions hold updates weighing
// up to n in all (an update heavier than n goes alone). Weigh updates by
// the entries they write and bound n well within Badger's limit on a
// transaction's size (ErrTxnTooBig sends a group back one by one).
func NewGroup(db *badger.DB, n int) *Group {
	return &Group{db: db, max: max(n, 1)}
}

// Update runs fn in a read-write transaction, possibly shared with other
// callers' updates, and returns once it is committed (or failed). weight
// is about how many entries fn writes. Within a group the updates run in
// the order they were queued, each seeing the writes of those before it.
func (g *Group) Update(weight int, fn func(txn *badger.Txn) error) error {
	req := &groupReq{fn: fn, weight: weight, done: make(chan error, 1)}
	g.qmu.Lock()
	g.queue = append(g.queue, req)
	g.qmu.Unlock()
	for {
		g.mu.Lock()
		select {
		case err := <-req.done: // committed by the holder before us
			g.mu.Unlock()
			return err
		default:
		}
		g.qmu.Lock()
		n, w := 1, g.queue[0].weight
		for n < len(g.queue) && w+g.queue[n].weight <= g.max {
			w += g.queue[n].weight
			n++
		}
		group := slices.Clone(g.queue[:n])
		g.queue = append(g.queue[:0], g.queue[n:]...)
		g.qmu.Unlock()
		g.commit(group)
		g.mu.Unlock()
	}
}

// commit commits the group in one transaction, or, when that fails and
// there is more than one, each alone. Called with mu held.
func (g *Group) commit(group []*groupReq) {
	err := g.update(func(txn *badger.Txn) error {
		for _, r := range group {
			if err := r.fn(txn); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, r := range group {
			r.done <- err
		}
		return
	}
	for _, r := range group {
		r.done <- g.update(r.fn)
	}
}

// update runs one transaction and tells OnCommit's function how it went.
func (g *Group) update(fn func(txn *badger.Txn) error) error {
	g.txns.Add(1)
	err := Update(g.db, fn)
	if g.committed != nil {
		g.committed(err)
	}
	return err
}

// Exclusive runs fn while no group commits: what fn reads and writes is not
// interleaved with any Update.
func (g *Group) Exclusive(fn func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return fn()
}

// Txns is how many transactions the group has committed or tried.
func (g *Group) Txns() int64 { return g.txns.Load() }
