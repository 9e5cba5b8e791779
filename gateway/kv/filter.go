package kv

import (
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/dgraph-io/badger/v4"
)

// Filter is a Bloom filter over one key space of the store: "certainly
// absent" lets a lookup of a key never written skip Badger, which is most
// lookups when traffic brings new profiles (a Badger miss still searches
// every memtable and the level-0 tables). A "maybe" falls through to
// Badger, so a false positive costs only the lookup the filter did not save.
//
// It is correct only if every write of a key in its space is also Added
// (before or with the write). Deleted and expired keys stay in it: they are
// false positives, never wrong answers. When the keys added outgrow its
// capacity it chains a filter for twice as many at half the rate, so the
// false-positive rate stays below twice the configured one; a restart sizes one
// filter for what the store holds.
//
// Its memory is ~1.2 bytes per key added since it was loaded (10 bits at
// 1 %): keys that expire or are deleted are only dropped by the next load,
// at start-up.
//
// A Filter is safe for concurrent use: it is filterShards filters, each
// with its own lock, a key going to one by its hash. (One lock was
// contended: a load run's goroutine dumps had requests queued on it.)
type Filter struct {
	seed   maphash.Seed
	shards [filterShards]filterShard
}

const filterShards = 16

type filterShard struct {
	mu    sync.RWMutex
	fs    []*bloom.BloomFilter
	room  uint    // keys the newest filter takes before the next one is chained
	tight float64 // the newest filter's rate
	added uint
	_     [24]byte // its own cache lines
}

// NewFilter makes an empty filter for about capacity keys at false-positive
// rate fp (e.g. 0.01).
func NewFilter(capacity uint, fp float64) *Filter {
	per := max(capacity/filterShards, 1024)
	f := &Filter{seed: maphash.MakeSeed()}
	for i := range f.shards {
		f.shards[i] = filterShard{fs: []*bloom.BloomFilter{bloom.NewWithEstimates(per, fp)}, room: per, tight: fp}
	}
	return f
}

func (f *Filter) shard(key []byte) *filterShard {
	return &f.shards[maphash.Bytes(f.seed, key)%filterShards]
}

// Add records that key may exist.
func (f *Filter) Add(key []byte) {
	sh := f.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.room == 0 {
		// Twice the keys at half the rate: the chain's rate stays
		// below 2 fp however far it grows (a scalable Bloom filter).
		sh.tight /= 2
		last := sh.fs[len(sh.fs)-1]
		n := 2 * uint(float64(last.Cap())/bitsPerKey(2*sh.tight))
		sh.fs = append(sh.fs, bloom.NewWithEstimates(n, sh.tight))
		sh.room = n
	}
	sh.fs[len(sh.fs)-1].Add(key)
	sh.room--
	sh.added++
}

// MayContain is false only when key was never added.
func (f *Filter) MayContain(key []byte) bool {
	sh := f.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for _, b := range sh.fs {
		if b.Test(key) {
			return true
		}
	}
	return false
}

// Stats reports the keys added since the filter was made and its size.
func (f *Filter) Stats() (keys uint, bytes uint) {
	for i := range f.shards {
		sh := &f.shards[i]
		sh.mu.RLock()
		for _, b := range sh.fs {
			bytes += b.Cap() / 8
		}
		keys += sh.added
		sh.mu.RUnlock()
	}
	return keys, bytes
}

// bitsPerKey is what NewWithEstimates allocates per key at rate fp.
func bitsPerKey(fp float64) float64 {
	m, _ := bloom.EstimateParameters(1_000_000, fp)
	return float64(m) / 1_000_000
}

// LoadFilter makes a filter holding every live key under the prefixes in db,
// sized for twice as many (at least minCapacity), at rate fp. It reads keys
// only, in two passes (count, then add). Call it before anything writes the
// key space: a key written during the scan may be missed.
func LoadFilter(db *badger.DB, minCapacity uint, fp float64, prefixes ...[]byte) (*Filter, time.Duration, error) {
	start := time.Now()
	scan := func(fn func(key []byte)) error {
		return db.View(func(txn *badger.Txn) error {
			for _, prefix := range prefixes {
				opts := badger.DefaultIteratorOptions
				opts.PrefetchValues = false
				opts.Prefix = prefix
				it := txn.NewIterator(opts)
				for it.Rewind(); it.Valid(); it.Next() {
					fn(it.Item().Key())
				}
				it.Close()
			}
			return nil
		})
	}
	n := uint(0)
	if err := scan(func([]byte) { n++ }); err != nil {
		return nil, 0, fmt.Errorf("kv: scanning %q keys: %w", prefixes, err)
	}
	f := NewFilter(max(2*n, minCapacity), fp)
	if err := scan(f.Add); err != nil {
		return nil, 0, fmt.Errorf("kv: scanning %q keys: %w", prefixes, err)
	}
	return f, time.Since(start), nil
}
