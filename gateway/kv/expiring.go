package kv

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ExpiringFilter is a Bloom filter over a key space whose keys all expire
// (written with a TTL): "certainly absent" lets a lookup of a key never
// written, or written and since expired, skip Badger. Keys are filed in
// slices of time by when they expire, and a slice is dropped once every key
// in it has expired, so its memory follows the keys alive (~1.3 bytes each
// at 1 %, plus one slice's worth) instead of growing until a restart.
//
// It is correct only if every write of a key in its space is also Added,
// with an expiry no earlier than the key's, before the write commits.
// Deleted keys stay in it until their slice expires: false positives, never
// wrong answers.
//
// Until Load has scanned what the store held, it answers "maybe" for every
// key: Load may run in the background while writes Add their keys.
type ExpiringFilter struct {
	seed  maphash.Seed
	span  int64 // ms of expiry one slice covers
	fp    float64
	now   func() time.Time
	ready atomic.Bool

	mu     sync.RWMutex
	slices []*expirySlice // by end, ascending
}

type expirySlice struct {
	end int64 // ms: every key in it expires before end
	f   *Filter
}

// minSliceKeys is the least a new slice is sized for (~20 KiB at 1 %).
const minSliceKeys = 1 << 14

// NewExpiringFilter makes an empty filter whose slices each cover span of
// expiry times, at false-positive rate fp per slice. now may be nil.
func NewExpiringFilter(span time.Duration, fp float64, now func() time.Time) *ExpiringFilter {
	if now == nil {
		now = time.Now
	}
	return &ExpiringFilter{seed: maphash.MakeSeed(), span: max(span.Milliseconds(), 1), fp: fp, now: now}
}

// Add records that key may exist until expires.
func (e *ExpiringFilter) Add(key string, expires time.Time) {
	e.addHash(maphash.String(e.seed, key), expires.UnixMilli())
}

func (e *ExpiringFilter) addHash(h uint64, expires int64) {
	e.slice(e.end(expires)).f.addHash(h)
}

// never is the expiry of a key without a TTL (ms).
const never = 1<<62 - 1

// end is the end of the slice a key expiring at expires (ms) is filed in.
func (e *ExpiringFilter) end(expires int64) int64 {
	return (expires/e.span + 1) * e.span
}

// find returns the slice ending at end, or nil. Call with mu held.
func (e *ExpiringFilter) find(end int64) *expirySlice {
	for i := len(e.slices) - 1; i >= 0; i-- { // new keys go to the last slices
		if e.slices[i].end == end {
			return e.slices[i]
		}
	}
	return nil
}

// slice returns the slice ending at end, making it if need be (and then
// dropping the slices whose keys have all expired).
func (e *ExpiringFilter) slice(end int64) *expirySlice {
	e.mu.RLock()
	s := e.find(end)
	e.mu.RUnlock()
	if s != nil {
		return s
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.find(end); s != nil {
		return s
	}
	now := e.now().UnixMilli()
	e.slices = slices.DeleteFunc(e.slices, func(s *expirySlice) bool { return s.end <= now })
	// Sized like the largest slice alive: traffic changes slowly
	// between slices (a slice that outgrows it chains).
	n := uint(minSliceKeys)
	for _, s := range e.slices {
		if k, _ := s.f.Stats(); k > n {
			n = k
		}
	}
	s = &expirySlice{end: end, f: newFilter(e.seed, n, e.fp)}
	e.insert(s)
	return s
}

// insert files a new slice in order. Call with mu held.
func (e *ExpiringFilter) insert(s *expirySlice) {
	i, _ := slices.BinarySearchFunc(e.slices, s.end, func(s *expirySlice, end int64) int { return cmp.Compare(s.end, end) })
	e.slices = slices.Insert(e.slices, i, s)
}

// MayContain is false only when key was never added with an expiry still
// ahead, or when Load has finished and found no such key.
func (e *ExpiringFilter) MayContain(key string) bool {
	if !e.ready.Load() {
		return true
	}
	h := maphash.String(e.seed, key) // the same hash as maphash.Bytes of its bytes
	now := e.now().UnixMilli()
	e.mu.RLock()
	defer e.mu.RUnlock()
	for i := len(e.slices) - 1; i >= 0 && e.slices[i].end > now; i-- {
		if e.slices[i].f.mayContainHash(h) {
			return true
		}
	}
	return false
}

// Ready reports whether Load has finished: until then every key "may" exist.
func (e *ExpiringFilter) Ready() bool { return e.ready.Load() }

// Load adds every live key under prefix in db, with its Badger expiry, then
// makes the filter answer. Writes may Add keys while it runs (they must: a
// key written after its scan began is not seen by it). A key without a TTL
// is filed as never expiring. It reads keys only, in two passes: the first
// sizes each slice for what it will hold.
func (e *ExpiringFilter) Load(db *badger.DB, prefix []byte) (keys int, err error) {
	counts := map[int64]uint{}
	if err := e.scan(db, prefix, func(end int64, _ []byte) { counts[end]++ }); err != nil {
		return 0, err
	}
	e.mu.Lock()
	for end, n := range counts {
		if e.find(end) == nil {
			e.insert(&expirySlice{end: end, f: newFilter(e.seed, max(n*5/4, minSliceKeys), e.fp)})
		}
	}
	e.mu.Unlock()
	var last int64
	var s *expirySlice
	err = e.scan(db, prefix, func(end int64, key []byte) {
		if s == nil || end != last { // keys come in key order, not by expiry
			s, last = e.slice(end), end
		}
		s.f.addHash(maphash.Bytes(e.seed, key))
		keys++
	})
	if err != nil {
		return keys, err
	}
	e.ready.Store(true)
	return keys, nil
}

// scan calls fn with each live key under prefix and the end of its slice.
func (e *ExpiringFilter) scan(db *badger.DB, prefix []byte, fn func(end int64, key []byte)) error {
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			expires := int64(never)
			if at := item.ExpiresAt(); at != 0 {
				expires = int64(at) * 1000 // Badger's expiry is in whole seconds
			}
			fn(e.end(expires), item.Key())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kv: scanning %q keys: %w", prefix, err)
	}
	return nil
}

// Stats reports the keys in the slices alive, their size and how many
// slices there are.
func (e *ExpiringFilter) Stats() (keys, bytes uint, n int) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	now := e.now().UnixMilli()
	for _, s := range e.slices {
		if s.end > now {
			k, b := s.f.Stats()
			keys, bytes, n = keys+k, bytes+b, n+1
		}
	}
	return keys, bytes, n
}
