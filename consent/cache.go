package consent

import (
	"encoding/binary"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tagway/tagway/gateway/wire"
)

// decisionCache remembers decisions by their inputs: Decide is a pure
// function of the policy (fixed for an engine), the jurisdiction and the
// signals, and a site's visitors send the same few strings (its CMP's
// current TCF string, "1YNN", GPC) over and over; decoding a TCF or GPP
// string costs microseconds and a dozen allocations each time.
//
// Two generations of a map make it an approximate LRU with a bound: a
// lookup looks in the current map, then in the previous one (and moves a
// hit forward); when the current map is full it becomes the previous one.
// Decisions handed out are shared: callers must not modify them (the engine
// copies Allowed into the envelope).
type decisionCache struct {
	max          int // entries per generation
	maxKey       int // longer keys (pathological strings) are not cached
	mu           sync.RWMutex
	cur, prev    map[string]*Decision
	hits, misses atomic.Uint64
	keyBufs      sync.Pool
}

func newDecisionCache(max int) *decisionCache {
	c := &decisionCache{max: max, cur: make(map[string]*Decision), maxKey: 4 << 10}
	c.keyBufs.New = func() any { b := make([]byte, 0, 256); return &b }
	return c
}

// decide returns Decide(p, j, s), from the cache when it can.
func (c *decisionCache) decide(p Policy, j Jurisdiction, s Signals) *Decision {
	bp := c.keyBufs.Get().(*[]byte)
	defer c.keyBufs.Put(bp)
	key := appendDecisionKey((*bp)[:0], j, s)
	*bp = key
	if len(key) > c.maxKey {
		d := Decide(p, j, s)
		return &d
	}
	c.mu.RLock()
	d, inCur := c.cur[string(key)]
	inPrev := false
	if !inCur {
		d, inPrev = c.prev[string(key)]
	}
	c.mu.RUnlock()
	switch {
	case inCur:
		c.hits.Add(1)
		return d
	case inPrev: // still in use: keep it through the next turnover
		c.hits.Add(1)
		c.put(string(key), d)
		return d
	}
	c.misses.Add(1)
	nd := Decide(p, j, s)
	c.put(string(key), &nd)
	return &nd
}

func (c *decisionCache) put(key string, d *Decision) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.max {
		c.prev, c.cur = c.cur, make(map[string]*Decision, c.max)
	}
	c.cur[key] = d
}

// len is the number of decisions held (both generations; for tests).
func (c *decisionCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.prev)
}

// appendDecisionKey appends what Decide's answer depends on: the
// jurisdiction's country, region and regime, and every signal, each
// length-prefixed so that no two inputs share a key.
func appendDecisionKey(dst []byte, j Jurisdiction, s Signals) []byte {
	dst = wire.AppendStr(dst, j.Country)
	dst = wire.AppendStr(dst, j.Region)
	dst = wire.AppendStr(dst, string(j.Regime))
	dst = wire.AppendStr(dst, s.TCF)
	dst = wire.AppendStr(dst, s.GPP)
	dst = binary.AppendUvarint(dst, uint64(len(s.GPPSID)))
	for _, id := range s.GPPSID {
		dst = binary.AppendVarint(dst, int64(id))
	}
	dst = wire.AppendStr(dst, s.USP)
	dst = wire.AppendBool(dst, s.GPC)
	dst = binary.AppendUvarint(dst, uint64(len(s.Categories)))
	if len(s.Categories) > 0 {
		for _, k := range slices.Sorted(maps.Keys(s.Categories)) {
			dst = wire.AppendBool(wire.AppendStr(dst, k), s.Categories[k])
		}
	}
	return dst
}
