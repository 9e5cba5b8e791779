package segments

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
	"github.com/tagway/tagway/gateway/units"
)

// Stream and subject names (a contract: DESIGN.md).
const (
	AudienceStream   = "TW_AUDIENCE"
	AudienceSubjects = "tw.audience.>"
	// Durable consumer names on TW_EVENTS, TW_IDENTITY and TW_CONSENT.
	EventsConsumer   = "tw-segments"
	IdentityConsumer = "tw-segments-identity"
	ConsentConsumer  = "tw-segments-consent"

	eventsStream   = "TW_EVENTS"
	identityStream = "TW_IDENTITY"
	consentStream  = "TW_CONSENT"
)

var errCrashed = errors.New("segments: simulated crash")

// AudienceSubject is where a segment's membership changes are published.
func AudienceSubject(segment string) string { return "tw.audience." + segment }

// Delta is the payload of tw.audience.<segment>. Field names are a contract
// (DESIGN.md, "NATS subjects"); fields may be added, never renamed.
type Delta struct {
	// ID is unique per delta and is also its Nats-Msg-Id.
	ID      string `json:"id"`
	Segment string `json:"segment"`
	Site    string `json:"site"`
	Profile string `json:"profile"`
	Op      string `json:"op"` // add | remove
	// At is when the change was decided and published (unix ms).
	At int64 `json:"at"`
	// Due, for a change made by time alone, is the exact time it fell due
	// (unix ms); At is then at most one sweep tick later.
	Due         int64       `json:"due,omitempty"`
	Identifiers Identifiers `json:"identifiers"`
	// Reason: "event <name>", "window", "identity merge", "merged into <id>",
	// "consent", "erased", "rule change", "segment removed", "rank".
	Reason string `json:"reason"`
}

// Identifiers are the profile's hashed identifiers, as audience uploads use.
type Identifiers struct {
	EmailSHA256      string `json:"email_sha256,omitempty"`
	PhoneSHA256      string `json:"phone_sha256,omitempty"`
	ExternalIDSHA256 string `json:"external_id_sha256,omitempty"`
}

// Config is the `segments:` section.
type Config struct {
	// Sweep is how often time-driven changes are looked for. Default 1m.
	Sweep units.Duration `yaml:"sweep"`
	Rules []Rule         `yaml:"rules"`
	// CacheSize is the memory for profile states and identifiers as
	// stored (encoded, off the Go heap: nothing for the GC to scan). At
	// least 32MiB. Default 64MiB: about 150 000 profiles with their
	// identifiers (~400 bytes each with the README's examples, measured
	// with version 1 states; version 2 keeps a server profile's state
	// ~220 bytes smaller, so more fit).
	CacheSize units.ByteSize `yaml:"cache_size"`
	// CacheProfiles is refused: replaced by cache_size.
	CacheProfiles int `yaml:"cache_profiles"`
	// Batch is how many messages are applied per Badger write. Default 512.
	Batch int `yaml:"batch"`
	// Linger is how long a batch waits to fill. Default 20ms.
	Linger units.Duration `yaml:"linger"`
	// Rank is how often top_percent segments are re-ranked over all
	// profiles (a profile is also ranked on each of its own changes).
	// Default 1h.
	Rank units.Duration `yaml:"rank"`
	// Commit is how often applied state is stored and its messages
	// acknowledged; a profile touched several times in between is written
	// once. Deltas do not wait for it. Default 1s.
	Commit units.Duration `yaml:"commit"`
	// MaxUncommitted commits early when this many messages wait. Default 8192.
	MaxUncommitted int `yaml:"max_uncommitted"`
	// AckWait is how long JetStream waits for the engine to acknowledge a
	// message before redelivering it (after a crash). Default 1m.
	AckWait units.Duration `yaml:"ack_wait"`
	// Audience configures the TW_AUDIENCE stream.
	Audience StreamConfig `yaml:"audience"`
}

// StreamConfig tunes TW_AUDIENCE.
type StreamConfig struct {
	// MaxAge: default 30d.
	MaxAge units.Duration `yaml:"max_age"`
	// Replicas: default 1 (3 on a cluster).
	Replicas int `yaml:"replicas"`
	// DuplicateWindow is JetStream's Nats-Msg-Id window against publish
	// retries while running. A re-publish after a crash or a dropped batch
	// does not rely on it: the engine reads back what TW_AUDIENCE received
	// since its last commit. What does is a delta kept in the outbox after
	// a failed publish that a commit outside the batch loop (a sweep's)
	// sends again at the next commit, and a merge's repeat of deltas in
	// flight. Default 15s: more than a PubAck timeout (10s) and the next
	// commit after it (segments.commit, 1s). Each delta inside the window
	// costs the broker ~180 bytes and the garbage collector two objects to
	// mark at every cycle: 30s, the default until 2026-12-06, held twice as
	// many (bench/HISTORY.md).
	DuplicateWindow units.Duration `yaml:"duplicate_window"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.Sweep == 0 {
		c.Sweep = units.Duration(time.Minute)
	}
	if c.CacheSize == 0 {
		c.CacheSize = 64 << 20
	}
	if c.Batch == 0 {
		c.Batch = 512
	}
	if c.Linger == 0 {
		c.Linger = units.Duration(20 * time.Millisecond)
	}
	if c.Rank == 0 {
		c.Rank = units.Duration(time.Hour)
	}
	if c.Commit == 0 {
		c.Commit = units.Duration(time.Second)
	}
	if c.MaxUncommitted == 0 {
		c.MaxUncommitted = 8192
	}
	if c.AckWait == 0 {
		c.AckWait = units.Duration(time.Minute)
	}
	if c.Audience.MaxAge == 0 {
		c.Audience.MaxAge = units.Duration(30 * 24 * time.Hour)
	}
	if c.Audience.Replicas == 0 {
		c.Audience.Replicas = 1
	}
	if c.Audience.DuplicateWindow == 0 {
		c.Audience.DuplicateWindow = units.Duration(15 * time.Second)
	}
}

// Validate checks the section and compiles the rules.
func (c *Config) Validate() (*Program, error) {
	switch {
	case c.Sweep.D() < time.Second:
		return nil, errors.New("segments.sweep: must be at least 1s")
	case c.CacheProfiles != 0:
		return nil, errors.New("segments.cache_profiles: replaced by segments.cache_size (bytes, e.g. 64MiB: profile states are cached encoded)")
	case c.CacheSize < minCacheSize:
		return nil, errors.New("segments.cache_size: must be at least 32MiB")
	case c.Batch < 1 || c.Batch > 10000:
		return nil, errors.New("segments.batch: must be between 1 and 10000")
	case c.Linger < 0:
		return nil, errors.New("segments.linger: must not be negative")
	case c.Commit.D() < time.Millisecond || c.Commit.D() > time.Minute:
		return nil, errors.New("segments.commit: must be between 1ms and 1m")
	case c.MaxUncommitted < 1 || c.MaxUncommitted > 1<<20:
		return nil, errors.New("segments.max_uncommitted: must be between 1 and 1048576")
	case c.AckWait.D() < time.Second:
		return nil, errors.New("segments.ack_wait: must be at least 1s")
	case c.Rank.D() < time.Second:
		return nil, errors.New("segments.rank: must be at least 1s")
	case c.Audience.Replicas < 1 || c.Audience.Replicas > 5:
		return nil, errors.New("segments.audience.replicas: must be between 1 and 5")
	case c.Audience.DuplicateWindow.D() < 100*time.Millisecond || c.Audience.DuplicateWindow > c.Audience.MaxAge:
		return nil, errors.New("segments.audience.duplicate_window: must be at least 100ms (JetStream's minimum) and at most max_age")
	}
	return Compile(c.Rules)
}

// ---- Badger keys ---------------------------------------------------------------
//
//	gs site 0 profile            → state (encode), or a redirect "→"+profile after a merge
//	ga site 0 kind value         → canonical profile (alias index; none for a
//	                               profile's own id: its gs key answers, see ownProfile)
//	gx due(8, big-endian) site 0 profile → ""  (expiry index)
//	gm segment 0 hash(8) site 0 profile → "" (members, in stable-hash order)
//	gh segment 0 hash(8) site 0 profile → "" (held out)
//	gr                          → the rule set last evaluated (JSON)

func stateKey(site, id string) []byte { return []byte("gs" + site + "\x00" + id) }

// key is s's state key as a string (the maps of dirty, dead and outbox
// states are keyed by it), made once: a profile's key was built as a
// string, then bytes, then a string again at each use.
func (s *state) key() string {
	if s.skey == "" {
		s.skey = "gs" + s.site + "\x00" + s.id
	}
	return s.skey
}
func aliasKey(site, kind, v string) []byte {
	return []byte("ga" + site + "\x00" + kind + v)
}
func dueKey(due int64, site, id string) []byte {
	b := make([]byte, 0, 12+len(site)+len(id))
	b = append(b, "gx"...)
	b = binary.BigEndian.AppendUint64(b, uint64(due))
	return append(append(append(b, site...), 0), id...)
}
func memberKey(prefix, seg, site, id string) []byte {
	b := make([]byte, 0, 12+len(seg)+len(site)+len(id))
	b = append(append(append(b, prefix...), seg...), 0)
	b = binary.BigEndian.AppendUint64(b, stableHash(seg, site, id))
	return append(append(append(b, site...), 0), id...)
}

var rulesKey = []byte("gr")

// audSeqKey holds the highest TW_AUDIENCE sequence acknowledged when state
// was last stored: every delta published after it may be published again
// after a crash, and the engine reads their ids back before it does (see
// scanPublished).
var audSeqKey = []byte("gq")

// stableHash orders members for target_cap and picks the control group.
func stableHash(seg, site, id string) uint64 {
	h := sha256.Sum256([]byte(seg + "\x00" + site + "\x00" + id))
	return binary.BigEndian.Uint64(h[:8])
}

// heldOut reports whether the profile is in the segment's control group.
func heldOut(s *Segment, site, id string) bool {
	if s.ControlGroup <= 0 {
		return false
	}
	return float64(stableHash(s.Name, site, id)%10000) < s.ControlGroup*100
}

// Alias kinds in the alias index.
const (
	aliasProfile = "p" // a profile id seen on an envelope, link or consent change
	aliasAnon    = "a"
	aliasEmail   = "e"
	aliasPhone   = "t"
	aliasExtID   = "x"
)

const maxAliases = 256

// ---- the engine ------------------------------------------------------------------

// Deps are the engine's collaborators.
type Deps struct {
	DB       *badger.DB
	JS       jetstream.JetStream
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// Now is the clock (tests inject one). Default time.Now.
	Now func() time.Time
}

// Engine keeps segment state and publishes membership changes. All state
// is owned under mu: a batch of messages, a sweep, an admin call each hold it.
type Engine struct {
	cfg  Config
	prog *Program
	db   *badger.DB
	js   jetstream.JetStream
	pub  *bus.Publisher // deltas, on js's connection (created by Start)
	log  *slog.Logger
	now  func() time.Time
	m    *metrics

	mu sync.Mutex
	// cache holds states and alias → profile entries as Badger stores
	// them, encoded (fastcache: off the Go heap, which a cache of decoded
	// states with their strings, slices and maps had filled with pointers
	// for the GC to scan). flush removes every key it writes before the
	// write and caches the new value only once it is committed, so a cached
	// value is never other than the stored one.
	cache *fastcache.Cache
	// mem is every state loaded or created since the last flush (dirty is
	// a subset): one object per profile until then, however often it is
	// looked up. aliasMem is the aliases set ("" for deleted) since then.
	mem      map[string]*state
	aliasMem map[string]string
	// known holds every alias key ever written here (a Bloom filter), so
	// the lookups of new identifiers — most of them — skip Badger.
	known    *kv.Filter
	dirty    map[string]*state
	dead     map[string]bool // state keys to delete (merged away, erased)
	idx      []idxOp         // index writes queued with the next flush
	outbox   map[string]*state
	inflight *deltaGroup // the outbox as published, awaiting its PubAcks
	// madeInFlight counts profiles given new deltas while earlier ones were
	// in flight (tests: the case the ordering rule is for).
	madeInFlight int
	seg          map[string]*segStats
	hist         map[string]*histogram
	lastRank     time.Time

	attrsChanged bool // set by applyEvent: identifiers, country or consent changed
	// crashBeforeCommit (tests) simulates a crash after a batch's deltas
	// are published and before its state is stored: when it returns true,
	// nothing more happens.
	crashBeforeCommit func() bool
	crashed           bool

	unacked     map[string]unacked // per consumer, the highest message applied
	resub       bool               // set by fail: the loop must resubscribe
	uncommitted int
	buf         []byte // load's read from the cache
	lastCommit  time.Time
	// audSeq is the highest TW_AUDIENCE sequence acknowledged, audSeqStored
	// the one stored with the last commit (audSeqKey); published holds the
	// ids TW_AUDIENCE received after the stored one, read back at start and
	// after a dropped batch, so that recomputed deltas are not published
	// twice however long the engine was away.
	audSeq, audSeqStored uint64
	published            map[string]struct{}

	applied  atomic.Uint64 // last TW_EVENTS sequence applied
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

type unacked struct {
	m   jetstream.Msg
	seq uint64
}

type idxOp struct {
	key []byte
	del bool
	val []byte
}

type segStats struct {
	Members, Held int64
	LastChange    int64
}

// New opens the engine: it checks the stored rule set against prog and, when
// they differ, recomputes every profile's memberships (publishing the
// differences) before Start consumes anything.
func New(cfg Config, prog *Program, d Deps) (*Engine, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, prog: prog, db: d.DB, js: d.JS, log: d.Logger.With("component", "segments"), now: d.Now,
		cache: fastcache.New(int(cfg.CacheSize)), mem: map[string]*state{}, aliasMem: map[string]string{}, dirty: map[string]*state{}, dead: map[string]bool{}, outbox: map[string]*state{},
		seg: map[string]*segStats{}, hist: map[string]*histogram{}, unacked: map[string]unacked{}, lastCommit: time.Now()}
	e.m = newMetrics(d.Registry, e)
	// Before anything can write an alias or state key (a rule change's
	// recompute in Start, a batch): the filter must hold every key written.
	known, took, err := kv.LoadFilter(d.DB, 1<<20, 0.01, []byte("ga"), []byte("gs"))
	if err != nil {
		return nil, fmt.Errorf("segments: %w", err)
	}
	e.known = known
	if n, size := known.Stats(); n > 0 {
		e.log.Info("alias and profile filter loaded", "keys", n, "bytes", size, "took", took.Round(time.Millisecond))
	}
	for _, s := range prog.Segments {
		e.seg[s.Name] = &segStats{}
		if len(s.tops) > 0 {
			e.hist[s.Name] = &histogram{}
		}
	}
	return e, nil
}

// touch records why a profile must be evaluated.
type touch struct {
	s      *state
	reason string
	full   bool
	events map[string]bool
}

func (e *Engine) apply(batch []jetstream.Msg) error {
	now := e.now()
	touched := map[string]*touch{}
	// mark queues a profile for evaluation; reason "" means "event <names>".
	mark := func(s *state, reason string, full bool, ev string) {
		k := s.key()
		t := touched[k]
		if t == nil {
			t = &touch{s: s, events: map[string]bool{}}
			touched[k] = t
		}
		t.full = t.full || full
		if ev != "" {
			t.events[ev] = true
		}
		if reason != "" && (t.reason == "" || strings.HasPrefix(reason, "merged")) {
			t.reason = reason
		}
	}
	var maxSeq uint64
	for _, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		switch md.Stream {
		case eventsStream:
			maxSeq = max(maxSeq, md.Sequence.Stream)
			var env event.Envelope
			if err := json.Unmarshal(m.Data(), &env); err != nil {
				e.m.skipped.WithLabelValues("bad_envelope").Inc()
				e.log.Warn("skipping an envelope that does not decode", "seq", md.Sequence.Stream, "err", err)
				continue
			}
			s, merged, err := e.applyEvent(&env, md.Sequence.Stream, now)
			if err != nil {
				return err
			}
			for _, x := range merged {
				mark(x, "merged into "+s.id, true, "")
			}
			if s != nil {
				mark(s, "", e.attrsChanged || len(merged) > 0, env.Event)
			}
		case identityStream:
			var l event.IdentityLink
			if err := json.Unmarshal(m.Data(), &l); err != nil || l.Site == "" || l.Profile == "" {
				e.m.skipped.WithLabelValues("bad_link").Inc()
				continue
			}
			s, merged, err := e.applyLink(&l, now)
			if err != nil {
				return err
			}
			for _, x := range merged {
				mark(x, "merged into "+s.id, true, "")
			}
			if s != nil {
				mark(s, "identity merge", true, "")
			}
		case consentStream:
			var c consentChange
			if err := json.Unmarshal(m.Data(), &c); err != nil || c.Site == "" || c.Profile == "" {
				e.m.skipped.WithLabelValues("bad_consent").Inc()
				continue
			}
			s, err := e.resolveOnly(c.Site, c.Profile)
			if err != nil {
				return err
			}
			if s == nil || c.At < s.usesAt {
				continue
			}
			s.uses, s.usesAt = e.keepUses(c.Allowed), c.At
			e.dirty[s.key()] = s
			mark(s, "consent", true, "")
		}
	}
	for _, t := range touched {
		if e.dead[t.s.key()] {
			continue
		}
		reason := t.reason
		if reason == "" {
			reason = "event " + strings.Join(keys(t.events), ",")
		}
		e.evaluate(t.s, now, reason, 0, t.full, t.events)
	}
	// The previous batch's deltas were published while this batch was
	// applied; they must be settled before this batch's go out, so that a
	// profile's deltas reach JetStream in the order they were made.
	if err := e.settle(); err != nil {
		return err
	}
	return e.sendOutbox(maxSeq)
}

type consentChange struct {
	Site    string   `json:"site"`
	Profile string   `json:"profile"`
	Allowed []string `json:"allowed"`
	At      int64    `json:"at"`
}

// keepUses keeps the uses any segment needs.
func (e *Engine) keepUses(allowed []string) []string {
	out := []string{}
	for _, u := range allowed {
		if slices.Contains(e.prog.uses, u) {
			out = append(out, u)
		}
	}
	return out
}

// minCacheSize is fastcache's smallest: one 64 KiB chunk per bucket.
const minCacheSize = 32 << 20

// load returns a profile's state from memory, the cache or Badger, or nil.
func (e *Engine) load(site, id string) (*state, error) {
	kb := stateKey(site, id)
	if s, ok := e.mem[string(kb)]; ok {
		e.m.loadMem.Inc()
		return s, nil
	}
	var s *state
	if v, ok := e.cache.HasGet(e.buf[:0], kb); ok {
		e.buf = v
		e.m.loadCache.Inc()
		var err error
		if s, err = decodeState(site, id, v); err != nil {
			return nil, fmt.Errorf("segments: loading %s from the cache: %w", id, err)
		}
	} else {
		_, err := kv.Get(e.db, kb, func(v []byte) error {
			var err error
			if s, err = decodeState(site, id, v); err == nil {
				e.cache.Set(kb, v)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("segments: loading %s: %w", id, err)
		}
		if s == nil {
			e.m.loadAbsent.Inc()
			return nil, nil
		}
		e.m.loadStore.Inc()
	}
	e.mem[string(kb)] = s
	return s, nil
}

// evaluate recomputes memberships at now and queues the deltas in the
// profile's outbox. full re-evaluates every segment; otherwise only those
// whose rules mention one of events. due, when set, is the expiry-index time
// that triggered a sweep (recorded on the deltas).
func (e *Engine) evaluate(s *state, now time.Time, reason string, due int64, full bool, events map[string]bool) {
	nowMs := now.UnixMilli()
	s.trim(e.prog, now)
	ec := &evalCtx{now: nowMs, threshold: e.threshold}
	var next int64
	if !full && s.due > nowMs {
		next = s.due
	}
	in := map[string]bool{}
	held := map[string]bool{}
	for _, m := range s.members {
		in[m] = true
	}
	for _, m := range s.held {
		held[m] = true
	}
	for _, sg := range e.prog.Segments {
		if !full && !slices.ContainsFunc(sg.streams, func(st *stream) bool { return events[st.event] }) {
			continue
		}
		ec.seg = sg.Name
		if len(sg.tops) > 0 {
			e.rank(sg, s, nowMs)
		}
		ok := false
		if s.merged == "" && s.allows(sg.Use) {
			r := sg.root.eval(s, ec)
			ok = r.ok
			next = minNext(next, r.next)
		}
		wantIn, wantHeld := ok && !heldOut(sg, s.site, s.id), ok && heldOut(sg, s.site, s.id)
		if wantHeld != held[sg.Name] {
			e.setMember("gh", sg.Name, s, wantHeld)
			held[sg.Name] = wantHeld
		}
		if wantIn != in[sg.Name] {
			op := "add"
			if !wantIn {
				op = "remove"
			}
			e.queue(s, sg.Name, op, nowMs, due, reason)
			in[sg.Name] = wantIn
		}
	}
	// Memberships of segments that no longer exist.
	for m := range in {
		if in[m] && e.prog.byName[m] == nil {
			e.queue(s, m, "remove", nowMs, 0, "segment removed")
			in[m] = false
		}
	}
	for m := range held {
		if held[m] && e.prog.byName[m] == nil {
			e.setMember("gh", m, s, false)
			held[m] = false
		}
	}
	s.members, s.held = keys(in), keys(held)
	if next != s.due {
		if s.due != 0 {
			e.idx = append(e.idx, idxOp{key: dueKey(s.due, s.site, s.id), del: true})
		}
		if next != 0 {
			e.idx = append(e.idx, idxOp{key: dueKey(next, s.site, s.id)})
		}
		s.due = next
	}
	e.dirty[s.key()] = s
}

func keys(m map[string]bool) []string {
	var out []string
	for k, v := range m {
		if v {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (e *Engine) setMember(prefix, seg string, s *state, on bool) {
	e.idx = append(e.idx, idxOp{key: memberKey(prefix, seg, s.site, s.id), del: !on})
	st := e.seg[seg]
	if st == nil {
		return
	}
	d := int64(1)
	if !on {
		d = -1
	}
	if prefix == "gh" {
		st.Held += d
	} else {
		st.Members += d
	}
}

func (e *Engine) queue(s *state, seg, op string, at, due int64, reason string) {
	e.setMember("gm", seg, s, op == "add")
	if st := e.seg[seg]; st != nil {
		st.LastChange = at
	}
	if s.trans == nil {
		s.trans = map[string]uint32{}
	}
	s.trans[seg]++
	s.pending = append(s.pending, Delta{ID: deltaID(s.site, s.id, s.firstSeen, seg, s.trans[seg]), Segment: seg, Site: s.site, Profile: s.id, Op: op, At: at, Due: due,
		Reason: reason, Identifiers: Identifiers{EmailSHA256: s.email, PhoneSHA256: s.phone, ExternalIDSHA256: s.extID}})
	e.outbox[s.key()] = s
	if op == "add" {
		e.m.deltaAdd.Inc()
	} else {
		e.m.deltaRemove.Inc()
	}
	e.m.deltaN.Add(1)
}

// deltaID is the id of the n-th change of a profile (epoch firstSeen) in a
// segment: the same however batches fall, before or after a crash, and
// from one version to the next (TW_AUDIENCE's Nats-Msg-Id): the first 16
// bytes, hex, of SHA-256("site\x00profile\x00firstSeen\x00segment\x00n").
func deltaID(site, profile string, firstSeen int64, seg string, n uint32) string {
	var buf [160]byte
	b := append(append(buf[:0], site...), 0)
	b = append(append(b, profile...), 0)
	b = append(strconv.AppendInt(b, firstSeen, 10), 0)
	b = append(append(b, seg...), 0)
	b = strconv.AppendUint(b, uint64(n), 10)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// flushChunk is how many entries flush commits at a time (see kv.Chunked):
// a commit of thousands of states no longer holds up the edge's
// transactions for the whole of it.
const flushChunk = 512

// flush writes the index changes, then the dirty states, in chunks
// committed in that order: after a crash mid-way the index may be ahead of
// a state (the redelivered events recompute the same index changes, each
// a Set or Delete that may be repeated) but a stored state never points at
// index entries not written.
func (e *Engine) flush() error {
	if len(e.dirty) == 0 && len(e.idx) == 0 && len(e.dead) == 0 {
		clear(e.mem) // only read: what it holds is what is stored
		return nil
	}
	// Out of the cache first: a failed flush may have written a key or
	// not, and the next load must read which from Badger.
	for k := range e.dirty {
		e.cache.Del([]byte(k))
	}
	for k := range e.dead {
		e.cache.Del([]byte(k))
	}
	for k := range e.aliasMem {
		e.cache.Del([]byte(k))
	}
	wb := kv.NewChunked(e.db, flushChunk)
	defer wb.Cancel()
	var buf []byte
	var stored [][2][]byte // key, value: cached once committed
	for _, op := range e.idx {
		var err error
		if op.del {
			err = wb.Delete(op.key)
		} else {
			err = wb.Set(op.key, op.val)
		}
		if err != nil {
			return err
		}
	}
	for k, s := range e.dirty {
		var err error
		if e.dead[k] || s.merged != "" || (s.empty() && s.due == 0) {
			err = wb.Delete([]byte(k))
		} else {
			buf = s.encode(buf[:0], e.prog)
			pair := [2][]byte{[]byte(k), slices.Clone(buf)}
			stored = append(stored, pair)
			err = wb.Set(pair[0], pair[1])
		}
		if err != nil {
			return err
		}
	}
	for k := range e.dead {
		if e.dirty[k] == nil {
			if err := wb.Delete([]byte(k)); err != nil {
				return err
			}
		}
	}
	// Last: once it is stored, so is every state whose deltas it covers.
	if e.audSeq > e.audSeqStored {
		if err := wb.Set(audSeqKey, binary.BigEndian.AppendUint64(nil, e.audSeq)); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("segments: writing state: %w", err)
	}
	for _, pair := range stored {
		e.cache.Set(pair[0], pair[1])
	}
	for k, id := range e.aliasMem {
		if id != "" {
			e.cache.Set([]byte(k), []byte(id))
		}
	}
	clear(e.dirty)
	clear(e.dead)
	clear(e.mem)
	clear(e.aliasMem)
	e.idx = e.idx[:0]
	e.audSeqStored = e.audSeq
	return nil
}

// deltaGroup is the outbox as published and not yet settled. The engine
// applies the next batch while its PubAcks come back: in a load run's
// execution trace the engine had spent 40 % of its time waiting for them,
// its consumer falling behind with a third of the CPU idle.
type deltaGroup struct {
	spans []deltaSpan
	acks  []bus.Ack // set before done is closed
	done  chan struct{}
	// seq is the last TW_EVENTS sequence whose deltas the group completes:
	// Applied reports it once they are in JetStream.
	seq uint64
}

// deltaSpan is one profile's pending deltas in a group: the first n of
// s.pending, whose PubAcks are acks[from:to] (a delta that TW_AUDIENCE
// already held is not published again and has none).
type deltaSpan struct {
	s           *state
	n           int
	first, last string // their ids: s.pending may have grown, or moved by a merge, since
	from, to    int
}

// sendOutbox publishes every queued delta without waiting for the
// PubAcks; settle waits for them. At most one group is in flight: the
// caller settles the previous one first.
func (e *Engine) sendOutbox(seq uint64) error {
	if len(e.outbox) == 0 {
		if seq > e.applied.Load() {
			e.applied.Store(seq)
		}
		return nil
	}
	if e.pub == nil {
		e.m.publishErrors.Inc() // not started: nothing can be published yet
		return fmt.Errorf("segments: not started: %d profiles' deltas cannot be published yet", len(e.outbox))
	}
	g := &deltaGroup{done: make(chan struct{}), seq: seq}
	var msgs []bus.Msg
	for _, s := range e.outbox {
		if len(s.pending) == 0 {
			continue
		}
		sp := deltaSpan{s: s, n: len(s.pending), first: s.pending[0].ID, last: s.pending[len(s.pending)-1].ID, from: len(msgs)}
		for i := range s.pending {
			d := &s.pending[i]
			if _, ok := e.published[d.ID]; ok {
				// Published before a crash (read back by scanPublished).
				e.m.republishSkipped.Inc()
				continue
			}
			data, _ := json.Marshal(d)
			msgs = append(msgs, bus.Msg{Subject: AudienceSubject(d.Segment), MsgID: d.ID, Data: data})
		}
		sp.to = len(msgs)
		g.spans = append(g.spans, sp)
	}
	e.inflight = g
	e.pub.Publish(msgs, func(acks []bus.Ack) { g.acks = acks; close(g.done) })
	return nil
}

// settle waits for the group in flight (each delta has its outcome within
// publishTimeout: the publisher times out what is not answered). A profile
// whose deltas all reached JetStream leaves the outbox; one with a failure
// keeps them for the next try (a repeat within the duplicate window is a
// no-op, by its Nats-Msg-Id), and the error says how many.
func (e *Engine) settle() error {
	g := e.inflight
	if g == nil {
		return nil
	}
	e.inflight = nil
	<-g.done
	failed := 0
	for _, sp := range g.spans {
		ok := true
		for _, a := range g.acks[sp.from:sp.to] {
			if a.Err != nil {
				ok = false
				continue
			}
			e.audSeq = max(e.audSeq, a.Seq)
		}
		if !ok {
			failed++
			e.m.publishErrors.Inc()
			continue
		}
		s := sp.s
		// Only what was published leaves s.pending: deltas made since stay
		// queued, and a merge may have moved these to another profile
		// (whose next publish repeats them, a no-op by their ids).
		if len(s.pending) >= sp.n && s.pending[0].ID == sp.first && s.pending[sp.n-1].ID == sp.last {
			if len(s.pending) == sp.n {
				s.pending = nil
			} else {
				s.pending = slices.Clone(s.pending[sp.n:])
				e.madeInFlight++
			}
		}
		if len(s.pending) == 0 && e.outbox[s.key()] == s {
			delete(e.outbox, s.key())
		}
	}
	if failed > 0 {
		return fmt.Errorf("segments: publishing deltas failed for %d profiles", failed)
	}
	if g.seq > e.applied.Load() {
		e.applied.Store(g.seq)
	}
	return nil
}

// publishOutbox publishes every queued delta and waits until JetStream has
// them (commit's rule: a stored state never claims a membership whose
// delta JetStream does not hold).
func (e *Engine) publishOutbox() error {
	if err := e.settle(); err != nil {
		return err
	}
	if err := e.sendOutbox(0); err != nil {
		return err
	}
	if err := e.settle(); err != nil {
		return err
	}
	if len(e.outbox) > 0 {
		return fmt.Errorf("segments: %d profiles' deltas not published yet", len(e.outbox))
	}
	return nil
}
