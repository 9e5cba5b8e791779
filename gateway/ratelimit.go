package gateway

import (
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// limiters keeps a token bucket per key (client IP or source name) in a
// bounded LRU: a flood of distinct IPs evicts old buckets instead of growing
// memory. Safe for concurrent use.
type limiters struct {
	mu    sync.Mutex
	cache *lru.Cache[string, *rate.Limiter]
}

const maxLimiters = 100_000

func newLimiters() *limiters {
	c, _ := lru.New[string, *rate.Limiter](maxLimiters) // only fails for size <= 0
	return &limiters{cache: c}
}

// allow takes one token from key's bucket, creating it with r if needed.
func (l *limiters) allow(key string, r Rate, now time.Time) bool {
	if r.RPS <= 0 {
		return true
	}
	l.mu.Lock()
	lim, ok := l.cache.Get(key)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(r.RPS), r.Burst)
		l.cache.Add(key, lim)
	}
	l.mu.Unlock()
	return lim.AllowN(now, 1)
}
