package kv

import (
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// Chunked writes like a badger.WriteBatch, but commits every n entries and
// waits for each commit before it takes the next entry.
//
// Badger has one writer goroutine. One WriteBatch of thousands of entries
// (segments' periodic commit) held up every edge request's dedup, consent
// and audit write for the whole of it (and, before the store was managed,
// every read too: a transaction that began waited until every commit in
// flight had been applied): an execution trace of the open loop showed
// request waits spiking each time Badger's writer ran 50–60 ms on end. In
// chunks, a write queued meanwhile waits for one chunk at most.
//
// The chunks are committed in order, so after a crash what is stored is a
// prefix of what was written: write what must come first first.
type Chunked struct {
	db     *badger.DB
	n      int
	wb     *WriteBatch
	cur    int
	chunks int
	err    error
}

// NewChunked returns a writer that commits every n entries (n ≥ 1).
func NewChunked(db *badger.DB, n int) *Chunked {
	return &Chunked{db: db, n: max(n, 1)}
}

// Set writes key = val.
func (c *Chunked) Set(key, val []byte) error {
	if err := c.batch(); err != nil {
		return err
	}
	return c.added(c.wb.Set(key, val))
}

// SetEntry writes e (with its TTL, meta and version options).
func (c *Chunked) SetEntry(e *badger.Entry) error {
	if err := c.batch(); err != nil {
		return err
	}
	return c.added(c.wb.SetEntry(e))
}

// Delete deletes key.
func (c *Chunked) Delete(key []byte) error {
	if err := c.batch(); err != nil {
		return err
	}
	return c.added(c.wb.Delete(key))
}

func (c *Chunked) batch() error {
	if c.err != nil {
		return c.err
	}
	if c.wb == nil {
		c.wb = NewWriteBatch(c.db)
	}
	return nil
}

func (c *Chunked) added(err error) error {
	if err != nil {
		c.err = err
		return err
	}
	if c.cur++; c.cur >= c.n {
		return c.commit()
	}
	return nil
}

func (c *Chunked) commit() error {
	wb := c.wb
	c.wb, c.cur = nil, 0
	if err := wb.Flush(); err != nil {
		c.err = err
		return err
	}
	c.chunks++
	return nil
}

// Flush commits what is left and waits for it. The writer cannot be used
// after it.
func (c *Chunked) Flush() error {
	if c.err != nil {
		return c.err
	}
	if c.wb != nil {
		if err := c.commit(); err != nil {
			return err
		}
	}
	c.err = errFlushed
	return nil
}

// Cancel drops the entries not committed yet (those already committed
// stay). Safe to call after Flush, and twice.
func (c *Chunked) Cancel() {
	if c.wb != nil {
		c.wb.Cancel()
		c.wb = nil
	}
	if c.err == nil {
		c.err = errFlushed
	}
}

// Chunks is how many commits the writer has made.
func (c *Chunked) Chunks() int { return c.chunks }

var errFlushed = errors.New("kv: chunked writer used after Flush or Cancel")
