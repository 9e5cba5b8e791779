package kv

import (
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"time"

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
//
// A key is hashed once (maphash, 64 bits) whatever the length of the chain:
// the top bits pick the shard, and each filter of the chain derives its
// probes from the same hash (double hashing, Kirsch and Mitzenmacher).
type Filter struct {
	seed   maphash.Seed
	shards [filterShards]filterShard
}

const (
	filterShards = 16
	shardBits    = 4 // log2(filterShards): the hash's top bits pick the shard
)

type filterShard struct {
	mu    sync.RWMutex
	fs    []*bloomBits
	room  uint    // keys the newest filter takes before the next one is chained
	tight float64 // the newest filter's rate
	added uint
	_     [24]byte // its own cache lines
}

// bloomBits is one Bloom filter: m bits probed k times per key.
type bloomBits struct {
	words []uint64
	m     uint64
	k     uint
	keys  uint // capacity it was sized for
}

func newBloomBits(n uint, fp float64) *bloomBits {
	m, k := bloomSize(n, fp)
	return &bloomBits{words: make([]uint64, (m+63)/64), m: uint64(m), k: k, keys: n}
}

// bloomSize is the optimal Bloom filter for n keys at rate fp: m bits and
// k probes, m = -n·ln(fp) / ln²2 and k = ln2·m/n.
func bloomSize(n uint, fp float64) (m, k uint) {
	m = max(uint(math.Ceil(-float64(n)*math.Log(fp)/(math.Ln2*math.Ln2))), 64)
	k = max(uint(math.Ceil(math.Ln2*float64(m)/float64(max(n, 1)))), 1)
	return m, k
}

// probes derives a filter's probe sequence from a key's hash: h1 + i·h2
// (mod m), with h2 odd and mixed from the whole hash.
func probes(h uint64) (h1, h2 uint64) {
	return h, (bits.RotateLeft64(h, 32)*0x9e3779b97f4a7c15 | 1)
}

func (b *bloomBits) add(h uint64) {
	h1, h2 := probes(h)
	for i := uint(0); i < b.k; i++ {
		loc := h1 % b.m
		b.words[loc>>6] |= 1 << (loc & 63)
		h1 += h2
	}
}

func (b *bloomBits) test(h uint64) bool {
	h1, h2 := probes(h)
	for i := uint(0); i < b.k; i++ {
		loc := h1 % b.m
		if b.words[loc>>6]&(1<<(loc&63)) == 0 {
			return false
		}
		h1 += h2
	}
	return true
}

// NewFilter makes an empty filter for about capacity keys at false-positive
// rate fp (e.g. 0.01).
func NewFilter(capacity uint, fp float64) *Filter {
	return newFilter(maphash.MakeSeed(), capacity, fp)
}

func newFilter(seed maphash.Seed, capacity uint, fp float64) *Filter {
	// Keys do not split evenly between shards: 1/16 more room, so a
	// filter filled to its capacity does not chain a second filter in
	// half its shards (which doubled their memory).
	per := max(capacity/filterShards*17/16, 1024)
	f := &Filter{seed: seed}
	for i := range f.shards {
		f.shards[i] = filterShard{fs: []*bloomBits{newBloomBits(per, fp)}, room: per, tight: fp}
	}
	return f
}

func (f *Filter) hash(key []byte) uint64 { return maphash.Bytes(f.seed, key) }

// Add records that key may exist.
func (f *Filter) Add(key []byte) { f.addHash(f.hash(key)) }

func (f *Filter) addHash(h uint64) {
	sh := &f.shards[h>>(64-shardBits)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.room == 0 {
		// Twice the keys at half the rate: the chain's rate stays
		// below 2 fp however far it grows (a scalable Bloom filter).
		sh.tight /= 2
		n := 2 * sh.fs[len(sh.fs)-1].keys
		sh.fs = append(sh.fs, newBloomBits(n, sh.tight))
		sh.room = n
	}
	sh.fs[len(sh.fs)-1].add(h)
	sh.room--
	sh.added++
}

// MayContain is false only when key was never added.
func (f *Filter) MayContain(key []byte) bool { return f.mayContainHash(f.hash(key)) }

func (f *Filter) mayContainHash(h uint64) bool {
	sh := &f.shards[h>>(64-shardBits)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for _, b := range sh.fs {
		if b.test(h) {
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
			bytes += uint(len(b.words)) * 8
		}
		keys += sh.added
		sh.mu.RUnlock()
	}
	return keys, bytes
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
