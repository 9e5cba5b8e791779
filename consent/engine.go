package consent

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/consent/audit"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
	"github.com/tagway/tagway/gateway/units"
)

// Config is the consent engine's configuration (the `consent:` section).
type Config struct {
	Geo struct {
		// CountryHeader and RegionHeader name the trusted geo headers (e.g.
		// CF-IPCountry, X-Region); the gateway believes them only from
		// trusted proxies. Default: none (the default regime applies).
		CountryHeader string `yaml:"country_header"`
		RegionHeader  string `yaml:"region_header"`
		// MMDB is a MaxMind-format database (GeoIP2/GeoLite2 City) used when
		// no trusted header says where the user is: the browser's IP, or the
		// customer IP a server event carries. Default: none.
		MMDB string `yaml:"mmdb"`
	} `yaml:"geo"`
	// DefaultRegime applies when the country is unknown. Default opt-in.
	DefaultRegime Regime `yaml:"default_regime"`
	// Policy maps uses to requirements; empty: DefaultPolicy.
	Policy Policy `yaml:"policy"`
	// StateTTL is how long a profile's consent state is kept after its last
	// change. Default 396d (the cookie's 13 months).
	StateTTL units.Duration `yaml:"state_ttl"`
	// AuditRetention is how long audit records are kept; older ones are
	// pruned at start-up and daily, behind a checkpoint that keeps the chain
	// verifiable. 0 keeps them forever. Default 0.
	AuditRetention units.Duration `yaml:"audit_retention"`
}

// SetDefaults fills zero fields; destinations gives forward uses their GVL id.
func (c *Config) SetDefaults(destinations map[string]int) {
	if c.DefaultRegime == "" {
		c.DefaultRegime = OptIn
	}
	if len(c.Policy) == 0 {
		c.Policy = DefaultPolicy(destinations)
	}
	if c.StateTTL == 0 {
		c.StateTTL = units.Duration(396 * 24 * time.Hour)
	}
}

// Validate names the first bad key.
func (c *Config) Validate() error {
	switch c.DefaultRegime {
	case OptIn, OptOut, None:
	default:
		return fmt.Errorf("consent.default_regime: %q must be opt-in, opt-out or none", c.DefaultRegime)
	}
	if c.StateTTL.D() < time.Hour {
		return errors.New("consent.state_ttl: must be at least 1h")
	}
	if c.AuditRetention < 0 || (c.AuditRetention > 0 && c.AuditRetention.D() < 24*time.Hour) {
		return errors.New("consent.audit_retention: must be 0 (forever) or at least 1d")
	}
	return c.Policy.Validate()
}

// Geo is where a request says the user is (from trusted headers).
type Geo struct{ Country, Region string }

// Linker finds the profile an identifier was linked to (dedup's identity
// links), so a server event carrying only an email inherits the consent the
// browser gave under its cookie profile.
type Linker interface {
	Profile(site, kind, value string) (string, error)
}

// state is a profile's last consent state ('c' site 0x00 profile; stored
// as statecodec.go says).
type state struct {
	Signals     storedSignals `json:"signals"`
	Country     string        `json:"country,omitempty"`
	Region      string        `json:"region,omitempty"`
	Decision    Decision      `json:"decision"`
	AuditID     string        `json:"audit_id"`
	At          int64         `json:"at"`
	Unpublished bool          `json:"unpublished,omitempty"`
	Source      string        `json:"source"`
	Pending     []byte        `json:"pending,omitempty"` // the tw.consent payload, kept until published
}

type storedSignals struct {
	TCF        string          `json:"tcf,omitempty"`
	GPP        string          `json:"gpp,omitempty"`
	GPPSID     []int           `json:"gpp_sid,omitempty"`
	USP        string          `json:"usp,omitempty"`
	GPC        bool            `json:"gpc,omitempty"`
	Categories map[string]bool `json:"categories,omitempty"`
}

func (s storedSignals) empty() bool {
	return s.TCF == "" && s.GPP == "" && s.USP == "" && !s.GPC && len(s.Categories) == 0
}

// equal reports whether s and o are the same signals (a nil and an empty
// list or map are the same: neither is stored).
func (s storedSignals) equal(o storedSignals) bool {
	return s.TCF == o.TCF && s.GPP == o.GPP && s.USP == o.USP && s.GPC == o.GPC &&
		slices.Equal(s.GPPSID, o.GPPSID) && maps.Equal(s.Categories, o.Categories)
}

func (s storedSignals) signals() Signals {
	return Signals{TCF: s.TCF, GPP: s.GPP, GPPSID: s.GPPSID, USP: s.USP, GPC: s.GPC, Categories: s.Categories}
}

func stateKey(site, profile string) []byte {
	k := make([]byte, 0, 2+len(site)+len(profile))
	return append(append(append(append(k, 'c'), site...), 0), profile...)
}

// Change is a profile's consent state change, as published on
// tw.consent.<site> (DESIGN.md): the profile, its allowed uses, and the id of
// the audit record that holds the signals and the decision.
type Change struct {
	Site         string            `json:"site"`
	Profile      string            `json:"profile"`
	Jurisdiction string            `json:"jurisdiction"`
	Regime       Regime            `json:"regime"`
	Allowed      []string          `json:"allowed"`
	Denied       map[string]string `json:"denied"`
	AuditID      string            `json:"audit_id"`
	Source       string            `json:"source"`
	At           int64             `json:"at"`
}

// Subject is where a site's consent changes are published.
func ConsentSubject(site string) string { return "tw.consent." + site }

// Outcome is the engine's answer for one event.
type Outcome struct {
	Decision Decision
	// AuditID is the audit record the decision rests on.
	AuditID string
	// Publish, when set, is a tw.consent.<site> payload to publish with the
	// batch; report the result with Published.
	Publish []byte
	site    string
	profile string
	pending *state // the state written, to mark pending if publishing fails
}

// Engine decides consent for events and keeps per-profile state and the
// audit log. Safe for concurrent use; decisions for one profile are
// serialised.
type Engine struct {
	cfg    Config
	db     *badger.DB
	log    *audit.Log
	links  Linker
	now    func() time.Time
	logger *slog.Logger
	seed   maphash.Seed
	locks  [256]sync.Mutex
	// known holds every state key written (a Bloom filter): most
	// profiles never signalled anything, and their lookups skip Badger.
	known *kv.Filter
	// decisions caches Decide by its inputs (decisionCache).
	decisions *decisionCache
}

// decisionCacheSize is how many decisions each of the cache's two
// generations holds: distinct (jurisdiction, signals) pairs, a few per CMP
// version and region on a real site.
const decisionCacheSize = 4096

// NewEngine returns an engine. links may be nil; now may be nil.
func NewEngine(cfg Config, db *badger.DB, log *audit.Log, links Linker, now func() time.Time, logger *slog.Logger) (*Engine, error) {
	cfg.SetDefaults(nil) // a no-op when the caller already set defaults with its destinations
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if db == nil {
		return nil, errors.New("consent: a badger database is required")
	}
	known, _, err := kv.LoadFilter(db, 1<<16, 0.01, []byte("c"))
	if err != nil {
		return nil, fmt.Errorf("consent: %w", err)
	}
	return &Engine{cfg: cfg, db: db, log: log, links: links, now: now, logger: logger.With("component", "consent"), seed: maphash.MakeSeed(), known: known,
		decisions: newDecisionCache(decisionCacheSize)}, nil
}

// Config returns the engine's configuration after defaults.
func (e *Engine) Config() Config { return e.cfg }

// Register adds the engine's metrics to reg.
func (e *Engine) Register(reg prometheus.Registerer) {
	c := e.decisions
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tagway_consent_decision_cache_hits_total",
			Help: "Consent decisions answered from the cache of decisions by jurisdiction and signals."}, func() float64 { return float64(c.hits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tagway_consent_decision_cache_misses_total",
			Help: "Consent decisions computed (signals decoded) because the cache did not hold them."}, func() float64 { return float64(c.misses.Load()) }),
	)
}

func (e *Engine) lock(site, profile string) *sync.Mutex {
	h := maphash.String(e.seed, profile) ^ maphash.String(e.seed, site)*0x9e3779b97f4a7c15
	return &e.locks[h%uint64(len(e.locks))]
}

// Decide decides consent for env (received with geo), records a changed
// state in the audit log and Badger, and fills env.Consent. A server event
// without signals inherits its profile's last state (directly, or through an
// identity link of one of its identifiers). A profile that never signalled
// anything has no state: the regime's default decides, and env.Consent names
// no audit record.
func (e *Engine) Decide(env *event.Envelope, geo Geo) (*Outcome, error) {
	sig := storedSignals{TCF: env.Consent.Signals.TCF, GPP: env.Consent.Signals.GPP, GPPSID: env.Consent.Signals.GPPSID,
		USP: env.Consent.Signals.USP, GPC: env.Consent.Signals.GPC, Categories: env.Consent.Signals.Categories}
	profile := env.Profile
	mu := e.lock(env.Site, profile)
	mu.Lock()
	defer mu.Unlock()

	prev, err := e.load(env.Site, profile)
	if err != nil {
		return nil, err
	}
	if prev == nil && sig.empty() && env.Source == event.SourceServer {
		if prev, err = e.linked(env); err != nil {
			return nil, err
		}
	}
	at := time.UnixMilli(env.EventTime)
	country, region := geo.Country, geo.Region
	inherit := sig.empty() && prev != nil
	if inherit {
		sig = prev.Signals
		if country == "" {
			country, region = prev.Country, prev.Region
		}
	}
	j := Resolve(country, region, at, e.cfg.DefaultRegime)
	d := *e.decisions.decide(e.cfg.Policy, j, sig.signals()) // shared: read only
	out := &Outcome{Decision: d, site: env.Site, profile: profile}

	switch {
	case sig.empty():
		// Nothing was ever signalled for this profile: the regime's default
		// applies (the policy in force is on the audit log since start-up),
		// and there is no consent state to record. Recording one per new
		// profile cost a serialised audit write per event (BenchmarkLoad).
	case prev != nil && sameState(prev, sig, j, d):
		out.AuditID = prev.AuditID
		if prev.Unpublished { // an earlier publish failed: try again
			out.Publish = prev.Pending
		}
	default:
		id := event.NewID(e.now())
		data, _ := json.Marshal(map[string]any{"signals": sig, "decision": d, "inherited": inherit})
		rec := &audit.Record{ID: id, Kind: audit.KindConsent, Site: env.Site, Profile: profile, Jurisdiction: j.String(),
			Source: string(env.Source), Data: data, At: e.now().UnixMilli()}
		ch, _ := json.Marshal(Change{Site: env.Site, Profile: profile, Jurisdiction: j.String(), Regime: j.Regime,
			Allowed: d.Allowed, Denied: d.Denied, AuditID: id, Source: string(env.Source), At: rec.At})
		// The state is written as published, in the audit record's own
		// transaction (one Badger write per change: the load test's profile
		// showed three). Only a failed publish marks it pending (Published).
		st := &state{Signals: sig, Country: j.Country, Region: j.Region, Decision: d, AuditID: id, At: rec.At, Source: string(env.Source)}
		b := storedState(st)
		e.known.Add(stateKey(env.Site, profile))
		err := e.log.AppendTx(func(txn *badger.Txn) error {
			return txn.SetEntry(badger.NewEntry(stateKey(env.Site, profile), b).WithTTL(e.cfg.StateTTL.D()))
		}, rec)
		if err != nil {
			return nil, fmt.Errorf("consent: audit log: %w", err)
		}
		out.AuditID, out.Publish, out.pending = id, ch, st
	}
	env.Consent.Decided = true
	env.Consent.Jurisdiction = j.String()
	env.Consent.Allowed = slices.Clone(d.Allowed)
	env.Consent.AuditID = out.AuditID
	return out, nil
}

// sameState reports whether nothing that matters changed.
func sameState(prev *state, sig storedSignals, j Jurisdiction, d Decision) bool {
	return prev.Signals.equal(sig) && prev.Country == j.Country && prev.Region == j.Region &&
		slices.Equal(prev.Decision.Allowed, d.Allowed) && prev.Decision.Regime == d.Regime
}

// Published reports whether an outcome's tw.consent message was stored. A
// state is written as published; a failed publish marks it pending, and the
// profile's next event sends it again. (A crash between the state write and
// the publish can lose that one notification; the audit record, the record
// of truth, is written first.) A re-sent message that is now stored clears
// the mark.
func (e *Engine) Published(o *Outcome, ok bool) error {
	if o == nil || o.Publish == nil || (ok && o.pending != nil) {
		return nil // nothing to publish, or a fresh change stored as published already
	}
	mu := e.lock(o.site, o.profile)
	mu.Lock()
	defer mu.Unlock()
	st, err := e.load(o.site, o.profile)
	if err != nil || st == nil || st.AuditID != o.AuditID || st.Unpublished == !ok {
		return err
	}
	if ok {
		st.Unpublished, st.Pending = false, nil
	} else {
		st.Unpublished, st.Pending = true, o.Publish
	}
	return e.store(o.site, o.profile, st)
}

func (e *Engine) load(site, profile string) (*state, error) {
	k := stateKey(site, profile)
	if !e.known.MayContain(k) {
		return nil, nil // never signalled
	}
	var st *state
	_, err := kv.Get(e.db, k, func(b []byte) error {
		st = &state{}
		return decodeState(b, st)
	})
	if err != nil {
		return nil, fmt.Errorf("consent: reading state: %w", err)
	}
	return st, nil
}

func (e *Engine) store(site, profile string, st *state) error {
	b := storedState(st)
	e.known.Add(stateKey(site, profile))
	err := kv.Update(e.db, func(txn *badger.Txn) error {
		return txn.SetEntry(badger.NewEntry(stateKey(site, profile), b).WithTTL(e.cfg.StateTTL.D()))
	})
	if err != nil {
		return fmt.Errorf("consent: writing state: %w", err)
	}
	return nil
}

// linked finds the state of a profile one of env's identifiers is linked to.
func (e *Engine) linked(env *event.Envelope) (*state, error) {
	if e.links == nil {
		return nil, nil
	}
	for kind, value := range env.User.Aliases() { // in a fixed order: the first linked profile wins
		p, err := e.links.Profile(env.Site, kind, value)
		if err != nil {
			return nil, err
		}
		if p == "" || p == env.Profile {
			continue
		}
		st, err := e.load(env.Site, p)
		if err != nil || st != nil {
			return st, err
		}
	}
	return nil, nil
}

// Show returns a profile's consent state, or nil.
func (e *Engine) Show(site, profile string) (any, error) {
	st, err := e.load(site, profile)
	if err != nil || st == nil {
		return nil, err
	}
	return map[string]any{"signals": st.Signals, "jurisdiction": Jurisdiction{Country: st.Country, Region: st.Region}.String(),
		"decision": st.Decision, "audit_id": st.AuditID, "at": st.At, "source": st.Source}, nil
}

// Erase deletes a profile's consent state (the audit log erases separately).
func (e *Engine) Erase(site, profile string) (int, error) {
	mu := e.lock(site, profile)
	mu.Lock()
	defer mu.Unlock()
	st, err := e.load(site, profile)
	if err != nil || st == nil {
		return 0, err
	}
	return 1, kv.Update(e.db, func(txn *badger.Txn) error { return txn.Delete(stateKey(site, profile)) })
}
