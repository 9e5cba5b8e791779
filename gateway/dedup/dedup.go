// Package dedup decides whether an event is the first copy of (site, event
// name, event_id) within the dedup window (default 48 h) or a later copy, and
// links the identifiers a later copy adds to the first copy's profile.
//
// Exactness. A first copy takes an in-memory claim on its key; the claim is
// committed (LRU + Badger) only after the gateway's publish was acknowledged,
// and released if it failed, so a failed publish never turns the retry into a
// "duplicate" (that would lose the event). A publish whose answer never came
// may have been stored: the gateway Detaches its claim and resolves it once
// it has found out (gateway/unsure.go). A copy that arrives while a claim is
// pending waits for the outcome. Keys are striped over shards with one mutex
// each, so exactly one of any number of concurrent copies wins. A crash
// between the PubAck and the Badger write leaves a stored event without its
// record: the next start writes it from the events stream (recover.go).
//
// Badger key schema (keys are strings; records in codec.go's form):
//
//	'd' site 0x00 event 0x00 event_id  → record{t,s,p,k}   TTL = first copy + window
//	'l' site 0x00 alias kind 0x00 value → profile           TTL = identity_ttl (396 d)
//	'd' 0x00 "open"                     → nothing: a process is using the store (recover.go)
//
// A Bloom filter of the keys in the window (kv.ExpiringFilter, filed by
// expiry so expired keys leave it) answers most lookups of new events
// without a Badger read; a record is added to it before it is written.
//
// Metrics: tagway_dedup_lookups_total{tier=lru|badger|batch|miss},
// tagway_dedup_duplicates_total{pair=browser_server|server_browser|same_source},
// tagway_dedup_links_total, tagway_dedup_claim_waits_total,
// tagway_dedup_store_errors_total, tagway_dedup_key_filter_skips_total,
// tagway_dedup_key_filter_bytes.
//
// A *Store is safe for concurrent use; a *Batch belongs to one request.
package dedup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
	"github.com/tagway/tagway/gateway/units"
)

// Config tunes deduplication. The zero value plus SetDefaults works.
type Config struct {
	// Window is how long a key is remembered after its first copy. Default 48h.
	Window units.Duration `yaml:"window"`
	// MergeWindow is how long after the first copy a later copy may still add
	// identifiers to it (TikTok merges copies within 5 minutes). Default 5m.
	MergeWindow units.Duration `yaml:"merge_window"`
	// LRUEntries bounds the in-memory hot set (about 400 bytes each).
	// Default 100000.
	LRUEntries int `yaml:"lru_entries"`
	// IdentityTTL is how long an identity link is kept. Default 396d.
	IdentityTTL units.Duration `yaml:"identity_ttl"`
	// ClaimWait bounds how long a copy waits for a concurrent copy's publish
	// to settle. Default 10s.
	ClaimWait units.Duration `yaml:"claim_wait"`
	// KeyFilter keeps a Bloom filter of the keys in the window (about 1.3
	// bytes per key), so a new event's key is found absent without a Badger
	// read. Default true; loaded at start by a scan of the keys.
	KeyFilter *bool `yaml:"key_filter"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	def := func(p *units.Duration, v time.Duration) {
		if *p == 0 {
			*p = units.Duration(v)
		}
	}
	def(&c.Window, 48*time.Hour)
	def(&c.MergeWindow, 5*time.Minute)
	def(&c.IdentityTTL, 396*24*time.Hour)
	def(&c.ClaimWait, 10*time.Second)
	if c.LRUEntries == 0 {
		c.LRUEntries = 100_000
	}
	if c.KeyFilter == nil {
		on := true
		c.KeyFilter = &on
	}
}

// Validate names the first bad key.
func (c *Config) Validate() error {
	switch {
	case c.Window.D() < time.Minute:
		return errors.New("dedup.window: must be at least 1m")
	case c.MergeWindow.D() < 0 || c.MergeWindow > c.Window:
		return errors.New("dedup.merge_window: must be between 0 and dedup.window")
	case c.LRUEntries < 1:
		return errors.New("dedup.lru_entries: must be positive")
	case c.IdentityTTL.D() < time.Hour:
		return errors.New("dedup.identity_ttl: must be at least 1h")
	case c.ClaimWait.D() <= 0:
		return errors.New("dedup.claim_wait: must be positive")
	}
	return nil
}

// Kind is a verdict's kind.
type Kind uint8

const (
	// First: the first copy; publish it, then Settle.
	First Kind = iota + 1
	// Duplicate: a later copy; do not publish it. It may carry a Link.
	Duplicate
	// Unkeyed: no sender event_id, so it cannot be deduplicated; publish it.
	Unkeyed
)

// Verdict is what Check decided for one envelope.
type Verdict struct {
	Kind Kind
	// Pair says which copies met, for duplicates: browser_server (browser
	// first, then server), server_browser, or same_source (a retry).
	Pair string
	// Link, on a duplicate within the merge window that carries identifiers
	// the first copy lacked: publish it on tw.identity.<site>, then Settle.
	Link *event.IdentityLink

	key    string
	claim  *claim  // First
	rec    *record // First: to store; Duplicate with Link: the merged record
	stored bool    // First: Settle said it was stored
}

// ErrClaimWait is returned when a concurrent copy's publish did not settle in
// time; the caller answers 503 and the sender retries.
var ErrClaimWait = errors.New("dedup: waiting for a concurrent copy timed out")

// Store is the dedup state: a hot LRU in front of Badger.
type Store struct {
	cfg Config
	db  *badger.DB
	// group commits concurrent requests' records together.
	group *kv.Group
	hot   *lru.Cache[string, *record]
	// links holds every link key written (a Bloom filter): Profile skips
	// Badger for identifiers never linked.
	links *kv.Filter
	// keys holds every record key in the window (nil if off): a new
	// event's lookup skips Badger.
	keys   *kv.ExpiringFilter
	shards [256]shard
	seed   maphash.Seed
	now    func() time.Time
	log    *slog.Logger
	m      *metrics
}

type shard struct {
	mu      sync.Mutex
	pending map[string]*claim
	// released counts the claims Finish released (changed under mu): a
	// lookup made before a release may have missed the record it wrote.
	released atomic.Uint64
}

type claim struct {
	done chan struct{}
}

// record is what is remembered of a first copy (about 250 bytes with its
// key and LRU element). Immutable once shared. Only the kinds of identifier
// it carried are kept, not their values: that is all enrichment needs.
type record struct {
	At      int64          `json:"t"` // first copy received, unix ms
	Source  event.Source   `json:"s"`
	Profile string         `json:"p"`
	Kinds   event.AliasSet `json:"k,omitempty"` // identifiers known, as kinds
	// Device: a copy carried the browser's IP (and user agent), so a later
	// copy's need not be linked.
	Device bool `json:"d,omitempty"`
}

// groupEntries bounds the records and links one Badger transaction writes
// for concurrent requests (about 130 bytes each: well within Badger's limit
// of 15 % of a memtable, 1.2MiB with the smallest allowed).
const groupEntries = 2048

// New returns a Store on db. now may be nil (time.Now); reg may be nil.
func New(cfg Config, db *badger.DB, reg prometheus.Registerer, now func() time.Time, log *slog.Logger) (*Store, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("dedup: a badger database is required")
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	hot, err := lru.New[string, *record](cfg.LRUEntries)
	if err != nil {
		return nil, fmt.Errorf("dedup: %w", err)
	}
	// Before anything writes a link: the filter must hold every link key.
	links, _, err := kv.LoadFilter(db, 1<<16, 0.01, []byte("l"))
	if err != nil {
		return nil, fmt.Errorf("dedup: %w", err)
	}
	s := &Store{cfg: cfg, db: db, group: kv.NewGroup(db, groupEntries), hot: hot, links: links, seed: maphash.MakeSeed(), now: now, log: log.With("component", "dedup"), m: newMetrics(reg)}
	if *cfg.KeyFilter {
		// Filed by expiry in quarters of the window: at most five slices
		// alive, a key kept at most a quarter window past its expiry.
		s.keys = kv.NewExpiringFilter(cfg.Window.D()/4, 0.01, now)
		start := time.Now()
		n, err := s.keys.Load(db, []byte("d"))
		if err != nil {
			return nil, fmt.Errorf("dedup: loading the key filter: %w", err)
		}
		_, size, _ := s.keys.Stats()
		s.log.Info("dedup key filter loaded", "keys", n, "bytes", size, "took", time.Since(start).Round(time.Millisecond))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tagway_dedup_key_filter_bytes", Help: "Memory of the Bloom filter of dedup keys in the window.",
		}, func() float64 { _, b, _ := s.keys.Stats(); return float64(b) }))
	}
	for i := range s.shards {
		s.shards[i].pending = map[string]*claim{}
	}
	return s, nil
}

func dedupKey(env *event.Envelope) string {
	return "d" + env.Site + "\x00" + env.Event + "\x00" + env.EventID
}

func linkKey(site, kind, value string) []byte {
	return []byte("l" + site + "\x00" + kind + "\x00" + value)
}

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
}

// Begin starts the dedup work of one request. Call Finish when the request's
// publishes are settled.
func (s *Store) Begin() *Batch {
	return &Batch{s: s}
}

// Batch is one request's dedup state: keys seen earlier in the same batch,
// claims to settle, and the Badger writes to make.
type Batch struct {
	s      *Store
	seen   map[string]event.Source
	claims []*Verdict
	writes []write
}

// write is a record or link to store (as an entry made afresh for each
// try: see kv.Group).
type write struct {
	key, val []byte
	ttl      time.Duration
}

// CheckAll checks a request's events (nil entries are skipped) and returns
// their verdicts and errors, aligned with envs. Keys are claimed in sorted
// order, so two requests holding the same keys in different orders cannot
// wait on each other (lock ordering); copies of one key within the request
// keep their order, the earlier one winning.
func (b *Batch) CheckAll(ctx context.Context, envs []*event.Envelope) ([]*Verdict, []error) {
	verdicts := make([]*Verdict, len(envs))
	errs := make([]error, len(envs))
	order := make([]int, 0, len(envs))
	keys := make([]string, len(envs))
	for i, e := range envs {
		if e != nil {
			keys[i] = dedupKey(e)
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(x, y int) int { return strings.Compare(keys[x], keys[y]) })
	pre := b.s.prefetch(envs, keys, order)
	for _, i := range order {
		verdicts[i], errs[i] = b.check(ctx, envs[i], pre[i])
	}
	return verdicts, errs
}

// looked is a lookup made ahead of the claim: valid while its shard has
// released no claim since gen was read (before the lookup began).
type looked struct {
	rec  *record
	tier string
	gen  uint64
}

// prefetch looks up a request's keys ahead of claiming them: the LRU, then
// the misses in one Badger transaction. A Badger read waits for every commit
// in flight (its read timestamp's watermark); a load run's goroutine dumps
// had most requests waiting there, once per event. nil when the read fails
// (Check then reads each key itself and reports the error).
func (s *Store) prefetch(envs []*event.Envelope, keys []string, order []int) []*looked {
	now := s.now()
	window := now.UnixMilli() - s.cfg.Window.D().Milliseconds()
	out := make([]*looked, len(envs))
	var cold []int
	for _, i := range order {
		if envs[i].EventIDAssigned {
			continue
		}
		l := &looked{gen: s.shard(keys[i]).released.Load()}
		if rec, ok := s.hot.Get(keys[i]); ok && rec.At > window {
			l.rec, l.tier = rec, "lru"
		} else if s.mayBeStored(keys[i]) {
			cold = append(cold, i)
		}
		out[i] = l
	}
	if len(cold) == 0 {
		return out
	}
	err := s.db.View(func(txn *badger.Txn) error {
		for _, i := range cold {
			rec, err := getRecord(txn, keys[i])
			if err != nil {
				return err
			}
			if rec != nil && rec.At > window {
				out[i].rec, out[i].tier = rec, "badger"
			}
		}
		return nil
	})
	if err != nil {
		for _, i := range cold {
			out[i] = nil
		}
	}
	return out
}

func getRecord(txn *badger.Txn, key string) (*record, error) {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec *record
	err = item.Value(func(v []byte) error {
		var r record
		if err := decodeRecord(v, &r); err != nil {
			return fmt.Errorf("decoding dedup record: %w", err)
		}
		rec = &r
		return nil
	})
	return rec, err
}

// Check decides whether env is a first copy, a duplicate or unkeyed. For a
// First it holds a claim until Finish resolves it. A request with several
// events must use CheckAll (claim order); Check alone is for one event.
func (b *Batch) Check(ctx context.Context, env *event.Envelope) (*Verdict, error) {
	return b.check(ctx, env, nil)
}

// check is Check with the key's prefetched lookup, if any.
func (b *Batch) check(ctx context.Context, env *event.Envelope, pre *looked) (*Verdict, error) {
	if env.EventIDAssigned {
		return &Verdict{Kind: Unkeyed}, nil
	}
	s := b.s
	key := dedupKey(env)
	if src, ok := b.seen[key]; ok { // the same key earlier in this batch
		s.m.lookups.WithLabelValues("batch").Inc()
		return b.duplicate(&Verdict{Kind: Duplicate, Pair: pair(src, env.Source), key: key}), nil
	}
	sh := s.shard(key)
	var timer *time.Timer
	for {
		now := s.now()
		sh.mu.Lock()
		if c := sh.pending[key]; c != nil {
			sh.mu.Unlock()
			s.m.claimWaits.Inc()
			if timer == nil {
				timer = time.NewTimer(s.cfg.ClaimWait.D())
				defer timer.Stop()
			}
			select {
			case <-c.done:
				continue
			case <-timer.C:
				return nil, ErrClaimWait
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		var rec *record
		var tier string
		if pre != nil && sh.released.Load() == pre.gen {
			rec, tier = pre.rec, pre.tier
			if rec != nil && tier == "badger" {
				s.hot.Add(key, rec)
			}
		} else {
			var err error
			if rec, tier, err = s.lookup(key, now); err != nil {
				sh.mu.Unlock()
				return nil, err
			}
		}
		if rec == nil {
			c := &claim{done: make(chan struct{})}
			sh.pending[key] = c
			sh.mu.Unlock()
			s.m.lookups.WithLabelValues("miss").Inc()
			if b.seen == nil {
				b.seen = map[string]event.Source{}
			}
			b.seen[key] = env.Source
			v := &Verdict{Kind: First, key: key, claim: c, rec: &record{At: env.ReceivedAt, Source: env.Source, Profile: env.Profile, Kinds: env.User.AliasSet(), Device: env.User.IP != ""}}
			b.claims = append(b.claims, v)
			return v, nil
		}
		sh.mu.Unlock()
		s.m.lookups.WithLabelValues(tier).Inc()
		v := &Verdict{Kind: Duplicate, Pair: pair(rec.Source, env.Source), key: key}
		if now.UnixMilli()-rec.At <= s.cfg.MergeWindow.D().Milliseconds() {
			v.Link, v.rec = enrich(rec, env, now)
		}
		return b.duplicate(v), nil
	}
}

func (b *Batch) duplicate(v *Verdict) *Verdict {
	b.s.m.duplicates.WithLabelValues(v.Pair).Inc()
	return v
}

// lookup finds a live record in the LRU, then Badger. Expiry is checked
// against the Store's clock, not only Badger's TTL.
func (s *Store) lookup(key string, now time.Time) (*record, string, error) {
	window := s.cfg.Window.D().Milliseconds()
	if rec, ok := s.hot.Get(key); ok {
		if now.UnixMilli()-rec.At < window {
			return rec, "lru", nil
		}
		s.hot.Remove(key)
	}
	if !s.mayBeStored(key) {
		return nil, "", nil
	}
	var rec *record
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		rec, err = getRecord(txn, key)
		return err
	})
	if err != nil {
		s.m.storeErrors.Inc()
		return nil, "", fmt.Errorf("dedup: reading badger: %w", err)
	}
	if rec == nil || now.UnixMilli()-rec.At >= window {
		return nil, "", nil
	}
	s.hot.Add(key, rec)
	return rec, "badger", nil
}

// mayBeStored is false when the key filter knows key has no record in the
// window: no Badger read (most new events).
func (s *Store) mayBeStored(key string) bool {
	if s.keys == nil || s.keys.MayContain(key) {
		return true
	}
	s.m.filtered.Inc()
	return false
}

// enrich returns the link for the identifiers env adds to rec, and the
// merged record, or nils when it adds nothing.
func enrich(rec *record, env *event.Envelope, now time.Time) (*event.IdentityLink, *record) {
	added := env.User.AliasesNotIn(rec.Kinds)
	device := !rec.Device && env.User.IP != "" // a server copy first, the browser's later
	if added == nil && !device {
		return nil, nil
	}
	merged := &record{At: rec.At, Source: rec.Source, Profile: rec.Profile, Kinds: rec.Kinds | env.User.AliasSet(), Device: rec.Device || device}
	l := &event.IdentityLink{Profile: rec.Profile, Aliases: added, Site: env.Site, Event: env.Event, EventID: env.EventID, At: now.UnixMilli()}
	if device {
		l.IP, l.UserAgent = env.User.IP, env.User.UserAgent
	}
	return l, merged
}

func pair(first, later event.Source) string {
	switch {
	case first == later:
		return "same_source"
	case first == event.SourceBrowser:
		return "browser_server"
	default:
		return "server_browser"
	}
}

// Settle reports whether what v asked to publish was stored. A First that
// was stored is remembered; one that was not is released so the next copy may
// win. A Duplicate's link is remembered. Claims stay pending until Finish has
// written them, so a concurrent copy never finds the key in neither tier.
func (b *Batch) Settle(v *Verdict, stored bool) {
	s := b.s
	switch {
	case v.Kind == First && v.claim != nil:
		v.stored = stored
		if stored {
			b.queueRecord(v.key, v.rec)
		}
	case v.Kind == Duplicate && v.Link != nil && v.rec != nil && stored:
		s.hot.Add(v.key, v.rec)
		b.queueRecord(v.key, v.rec)
		ttl := s.cfg.IdentityTTL.D()
		for kind, value := range v.Link.Aliases {
			k := linkKey(v.Link.Site, kind, value)
			s.links.Add(k)
			b.writes = append(b.writes, write{k, []byte(v.Link.Profile), ttl})
		}
		s.m.links.Inc()
		v.rec = nil
	}
}

// Pending is a first copy's claim taken out of its request by Detach: its
// publish may or may not have been stored, and the gateway finds out later.
// Until Resolve, a later copy of the event waits for it (ClaimWait), then is
// answered 503: neither accepted twice nor lost.
type Pending struct {
	s *Store
	v *Verdict
}

// Detach takes a First's claim out of the batch: Finish leaves it pending,
// and the returned Pending resolves it. Nil for any other verdict, or one
// already detached.
func (b *Batch) Detach(v *Verdict) *Pending {
	if v == nil || v.Kind != First || v.claim == nil {
		return nil
	}
	i := slices.Index(b.claims, v)
	if i < 0 {
		return nil
	}
	b.claims = slices.Delete(b.claims, i, i+1)
	return &Pending{s: b.s, v: v}
}

// Resolve settles a detached claim: stored means the event is in the stream
// (its record is written, as Settle and Finish would have), otherwise the
// claim is released for the next copy. Call it once.
func (p *Pending) Resolve(stored bool) error {
	b := &Batch{s: p.s, claims: []*Verdict{p.v}}
	b.Settle(p.v, stored)
	return b.Finish()
}

func (b *Batch) queueRecord(key string, rec *record) {
	val := encodeRecord(make([]byte, 0, 24+len(rec.Profile)/2), rec)
	ttl := time.Duration(rec.At+b.s.cfg.Window.D().Milliseconds()-b.s.now().UnixMilli()) * time.Millisecond
	if ttl < time.Second {
		ttl = time.Second
	}
	if b.s.keys != nil { // before the write: the filter must hold every key stored
		b.s.keys.Add(key, time.UnixMilli(rec.At+b.s.cfg.Window.D().Milliseconds()))
	}
	b.writes = append(b.writes, write{[]byte(key), val, ttl})
}

// Finish writes the batch's records to Badger (in one transaction with
// other requests' records: kv.Group), then resolves its claims: stored keys
// enter the LRU, the others are released. A claim never settled counts as
// not stored. Call it exactly once.
func (b *Batch) Finish() error {
	var err error
	if len(b.writes) > 0 {
		err = b.write()
		b.writes = nil
	}
	for _, v := range b.claims {
		if v.claim == nil {
			continue
		}
		sh := b.s.shard(v.key)
		sh.mu.Lock()
		if v.stored {
			// Published: remember it even if Badger failed (logged and
			// counted); it is then only lost on a restart.
			b.s.hot.Add(v.key, v.rec)
		}
		delete(sh.pending, v.key)
		sh.released.Add(1)
		sh.mu.Unlock()
		close(v.claim.done)
		v.claim = nil
	}
	b.claims = nil
	return err
}

func (b *Batch) write() error {
	err := b.s.group.Update(len(b.writes), func(txn *badger.Txn) error {
		for _, w := range b.writes {
			if err := txn.SetEntry(badger.NewEntry(w.key, w.val).WithTTL(w.ttl)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.s.m.storeErrors.Inc()
		return fmt.Errorf("dedup: writing badger: %w", err)
	}
	return nil
}

// Profile returns the profile an identifier was linked to, or "".
func (s *Store) Profile(site, kind, value string) (string, error) {
	k := linkKey(site, kind, value)
	if !s.links.MayContain(k) {
		return "", nil // never linked: no read (most identifiers)
	}
	var p string
	_, err := kv.Get(s.db, k, func(v []byte) error {
		p = string(v)
		return nil
	})
	return p, err
}

type metrics struct {
	lookups     *prometheus.CounterVec
	duplicates  *prometheus.CounterVec
	links       prometheus.Counter
	claimWaits  prometheus.Counter
	storeErrors prometheus.Counter
	filtered    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagway_dedup_lookups_total", Help: "Dedup lookups by the tier that answered: lru, badger, batch (earlier in the same request) or miss.",
		}, []string{"tier"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagway_dedup_duplicates_total", Help: "Duplicate copies by pair: browser_server (browser first), server_browser, same_source (a retry).",
		}, []string{"pair"}),
		links: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tagway_dedup_links_total", Help: "Identity links learned from later copies and published on tw.identity.<site>.",
		}),
		claimWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tagway_dedup_claim_waits_total", Help: "Copies that waited for a concurrent copy's publish to settle.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tagway_dedup_store_errors_total", Help: "Badger reads or writes of dedup state that failed.",
		}),
		filtered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tagway_dedup_key_filter_skips_total", Help: "Lookups of keys the key filter knew to be absent: answered without a Badger read.",
		}),
	}
	reg.MustRegister(m.lookups, m.duplicates, m.links, m.claimWaits, m.storeErrors, m.filtered)
	for _, t := range []string{"lru", "badger", "batch", "miss"} {
		m.lookups.WithLabelValues(t)
	}
	for _, p := range []string{"browser_server", "server_browser", "same_source"} {
		m.duplicates.WithLabelValues(p)
	}
	return m
}

// ProfileData is what the dedup store holds about a profile.
type ProfileData struct {
	// Events are the dedup records whose first copy was this profile's.
	Events []ProfileEvent `json:"events"`
	// Aliases are the identity links to this profile (kind → value).
	Aliases map[string][]string `json:"aliases"`
}

// ProfileEvent is one remembered first copy.
type ProfileEvent struct {
	Event   string `json:"event"`
	EventID string `json:"event_id"`
	At      int64  `json:"at"`
}

// profileKeys scans a site's dedup records and identity links for a
// profile (an admin operation: a full scan of the site's keys).
func (s *Store) profileKeys(site, profile string, fn func(key []byte, ev *ProfileEvent, kind, value string)) error {
	return s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range [][]byte{[]byte("d" + site + "\x00"), []byte("l" + site + "\x00")} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().KeyCopy(nil)
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					it.Close()
					return err
				}
				parts := bytes.SplitN(k[len(prefix):], []byte{0}, 2)
				if prefix[0] == 'd' {
					var r record
					if decodeRecord(v, &r) == nil && r.Profile == profile && len(parts) == 2 {
						fn(k, &ProfileEvent{Event: string(parts[0]), EventID: string(parts[1]), At: r.At}, "", "")
					}
				} else if string(v) == profile && len(parts) == 2 {
					fn(k, nil, string(parts[0]), string(parts[1]))
				}
			}
			it.Close()
		}
		return nil
	})
}

// Show returns what the store holds about a profile.
func (s *Store) Show(site, profile string) (any, error) {
	d := ProfileData{Events: []ProfileEvent{}, Aliases: map[string][]string{}}
	err := s.profileKeys(site, profile, func(_ []byte, ev *ProfileEvent, kind, value string) {
		if ev != nil {
			d.Events = append(d.Events, *ev)
		} else {
			d.Aliases[kind] = append(d.Aliases[kind], value)
		}
	})
	return d, err
}

// Erase deletes a profile's dedup records and identity links (from Badger
// and the hot set) and returns how many keys it removed. A later copy of an
// erased event within the window is then accepted again.
func (s *Store) Erase(site, profile string) (int, error) {
	var keys [][]byte
	if err := s.profileKeys(site, profile, func(k []byte, _ *ProfileEvent, _, _ string) { keys = append(keys, k) }); err != nil {
		return 0, err
	}
	wb := kv.NewWriteBatch(s.db)
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return 0, err
		}
		s.hot.Remove(string(k))
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("dedup: erasing: %w", err)
	}
	return len(keys), nil
}
