package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

// Streams, subjects and consumers (a contract: DESIGN.md).
const (
	ForwardStream   = "TW_FORWARD"
	ForwardSubjects = "tw.forward.>"
	// RouteConsumer reads TW_EVENTS; IdentityConsumer reads TW_IDENTITY;
	// each destination's deliverer is DeliverConsumerPrefix + name.
	RouteConsumer         = "tw-forward"
	IdentityConsumer      = "tw-forward-identity"
	DeliverConsumerPrefix = "tw-deliver-"

	eventsStream   = "TW_EVENTS"
	identityStream = "TW_IDENTITY"
)

// Headers on every tw.forward message: what delivery needs besides the
// payload (the consent re-check, expiry, latency, dead letters).
const (
	HeaderSite       = "Tw-Site"
	HeaderProfile    = "Tw-Profile"
	HeaderEvent      = "Tw-Event"
	HeaderEventID    = "Tw-Event-Id"
	HeaderEventTime  = "Tw-Event-Time"  // unix ms
	HeaderReceivedAt = "Tw-Received-At" // unix ms
	// HeaderProfiles lists the profiles of the conversion's other
	// identifiers (cookie, external id, email, phone), comma-separated, for
	// the consent re-check.
	HeaderProfiles = "Tw-Profiles"
	// On dead letters: the subject to replay to, the answer and when.
	HeaderDeadSubject = "Tw-Dead-Subject"
	HeaderDeadStatus  = "Tw-Dead-Status"
	HeaderDeadReason  = "Tw-Dead-Reason"
	HeaderDeadAt      = "Tw-Dead-At"
)

// Subject is where destination dest's payloads for an event go.
func Subject(dest, eventName string) string { return "tw.forward." + dest + "." + eventName }

// DeadSubject is where dest's dead letters go.
func DeadSubject(dest string) string { return "tw.forward.dead." + dest }

// ConsentChecker is the consent engine as delivery sees it: the profile's
// consent state now, not when the event was accepted.
type ConsentChecker interface {
	// CurrentUse reports whether the profile's current consent state allows
	// use; known is false when no state is stored (the event's own decision
	// stands).
	CurrentUse(site, profile, use string) (allowed, known bool, err error)
	// RecordForwardSkip audits a conversion that was not delivered because
	// consent was withdrawn after it was accepted.
	RecordForwardSkip(site, profile, destination, eventID string) error
}

// Deps are the forwarder's collaborators.
type Deps struct {
	DB       *badger.DB
	JS       jetstream.JetStream
	Consent  ConsentChecker // nil: no re-check at delivery
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// HTTP sends the requests. Default: a client with pooled keep-alive
	// connections (each request has its destination's timeout).
	HTTP *http.Client
	Now  func() time.Time
}

// Forwarder routes consented conversions from TW_EVENTS to TW_FORWARD and
// delivers them with its destinations' deliverers.
type Forwarder struct {
	cfg   Config
	dests []*deliverer
	db    *badger.DB
	js    jetstream.JetStream
	pub   *bus.Publisher // TW_FORWARD's, on js's connection (created by Start)
	log   *slog.Logger
	now   func() time.Time
	m     *metrics
	hold  time.Duration // the longest hold
	idTTL time.Duration
	// links holds every link key written (a Bloom filter): most
	// conversions have no duplicate copy, and skip the read.
	links *kv.Filter
	// inflight holds a token per conversion awaiting its PubAcks; routes
	// counts their goroutines (Shutdown waits after the callbacks end).
	inflight chan struct{}
	routes   sync.WaitGroup
	// held are the conversions waiting out their hold in memory (hold.go).
	held *holdQueue
	// fwdSeq is the highest TW_FORWARD sequence acknowledged to the router;
	// published the payload ids TW_FORWARD received after the stored mark,
	// read back at Start and read-only after it (readback.go).
	fwdSeq    atomic.Uint64
	published map[string]struct{}
	// dropAcks, set by tests, keeps routed conversions' acks from JetStream,
	// as if the process died before they were sent.
	dropAcks atomic.Bool
	// httpClient is the client New made (nil when Deps gave one).
	httpClient *http.Client

	// linkQ hands identity links from their consumer's callback to
	// storeLinks, which writes them in batches; stopLinks ends it once
	// the callbacks have (Shutdown).
	linkQ     chan linkMsg
	stopLinks context.CancelFunc
	linksDone <-chan struct{}

	ccs    []jetstream.ConsumeContext
	cancel context.CancelFunc // stops fetching (Shutdown)
	// abort cancels the requests still in flight when Shutdown stops
	// waiting (its ctx ended): until then a request the API is answering
	// is not cut off (its events would be sent again after a restart:
	// wire duplicates).
	abort    context.CancelFunc
	wg       sync.WaitGroup
	stopping atomic.Bool
	stopOnce sync.Once
}

// New checks the destinations (each already through SetDefaults and
// Validate) and prepares the forwarder; Start begins consuming.
func New(cfg Config, dests []Destination, d Deps) (*Forwarder, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	ownHTTP := d.HTTP == nil
	if ownHTTP {
		d.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
			ForceAttemptHTTP2: true}}
	}
	f := &Forwarder{cfg: cfg, db: d.DB, js: d.JS, log: d.Logger.With("component", "forward"), now: d.Now,
		inflight: make(chan struct{}, routeInFlight), held: newHoldQueue()}
	if ownHTTP {
		f.httpClient = d.HTTP // its idle connections are closed by Shutdown
	}
	f.m = newMetrics(d.Registry)
	if d.Registry != nil {
		d.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tagway_forward_held_in_memory",
			Help: "Conversions waiting out their hold in memory (unacknowledged on TW_EVENTS)."},
			func() float64 { return float64(f.held.len()) }))
	}
	if d.DB == nil {
		return nil, errors.New("forward: a badger database is required")
	}
	links, _, err := kv.LoadFilter(d.DB, 1<<16, 0.01, []byte("Fl"))
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	f.links = links
	for i := range dests {
		ds := dests[i]
		if ds.token == "" && ds.secret == "" {
			return nil, fmt.Errorf("forward: destination %q was not validated", ds.Name)
		}
		f.dests = append(f.dests, newDeliverer(f, &ds, d.HTTP, d.Consent))
		f.hold = max(f.hold, ds.Hold.D())
	}
	f.idTTL = f.hold + time.Hour
	return f, nil
}

// Start creates TW_FORWARD and the durable consumers and starts routing and
// delivering.
func (f *Forwarder) Start(ctx context.Context) error {
	if len(f.dests) == 0 {
		return nil
	}
	if _, err := f.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: ForwardStream, Description: "Tagway destination payloads (tw.forward.<destination>.<event>) and dead letters (tw.forward.dead.<destination>)",
		Subjects: []string{ForwardSubjects}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
		Discard: jetstream.DiscardOld, MaxAge: f.cfg.Stream.MaxAge.D(), Replicas: f.cfg.Stream.Replicas,
		Duplicates: f.cfg.Stream.DuplicateWindow.D(), MaxBytes: -1,
	}); err != nil {
		return fmt.Errorf("forward: creating stream %s: %w", ForwardStream, err)
	}
	if f.pub == nil {
		// Room for every conversion in flight (routeInFlight), one message per destination.
		p, err := bus.NewPublisher(f.js.Conn(), routePubAckTimeout, routeInFlight*len(f.dests))
		if err != nil {
			return fmt.Errorf("forward: %w", err)
		}
		f.pub = p
	}
	from, err := f.readBack(ctx)
	if err != nil {
		return err
	}
	f.fwdSeq.Store(from)
	// Identity links first, so a conversion's hold sees them.
	idc, err := f.js.CreateOrUpdateConsumer(ctx, identityStream, jetstream.ConsumerConfig{
		Durable: IdentityConsumer, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy,
		AckWait: 30 * time.Second, MaxAckPending: 10000, Description: "Tagway forward: identity links for held conversions",
	})
	if err != nil {
		return fmt.Errorf("forward: consumer %s: %w", IdentityConsumer, err)
	}
	f.linkQ = make(chan linkMsg, 2*linkBatch)
	var linksCtx context.Context
	linksCtx, f.stopLinks = context.WithCancel(context.Background())
	f.linksDone = linksCtx.Done()
	f.wg.Add(1)
	go f.storeLinks(linksCtx)
	cc, err := idc.Consume(f.onLink, jetstream.PullExpiry(pullExpiry))
	if err != nil {
		f.stopLinks()
		return fmt.Errorf("forward: consuming %s: %w", identityStream, err)
	}
	f.ccs = append(f.ccs, cc)

	rc, err := f.js.CreateOrUpdateConsumer(ctx, eventsStream, jetstream.ConsumerConfig{
		Durable: RouteConsumer, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy,
		FilterSubjects: f.filterSubjects(), AckWait: f.hold + routeAckSlack, MaxAckPending: f.cfg.MaxPending,
		Description: "Tagway forward: conversions to route to destinations",
	})
	if err != nil {
		f.stopLinks()
		return fmt.Errorf("forward: consumer %s: %w", RouteConsumer, err)
	}
	cc, err = rc.Consume(f.onEvent, jetstream.PullMaxMessages(256), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		f.stopLinks()
		return fmt.Errorf("forward: consuming %s: %w", eventsStream, err)
	}
	f.ccs = append(f.ccs, cc)

	ctx, f.cancel = context.WithCancel(context.Background())
	var reqs context.Context
	reqs, f.abort = context.WithCancel(context.Background())
	for _, d := range f.dests {
		if err := d.start(ctx, reqs); err != nil {
			f.cancel()
			f.abort()
			return err
		}
	}
	f.wg.Add(3)
	go f.watchLag(ctx)
	go f.releaseHeld(ctx)
	go f.markLoop(ctx, from)
	return nil
}

// Shutdown stops consuming and waits for requests in flight (bounded by
// ctx); what is not acknowledged is redelivered after a restart. Safe to
// call twice.
func (f *Forwarder) Shutdown(ctx context.Context) error {
	var err error
	f.stopOnce.Do(func() {
		f.stopping.Store(true)
		for _, c := range f.ccs {
			c.Drain()
		}
		for _, c := range f.ccs { // no callback runs after this
			select {
			case <-c.Closed():
			case <-ctx.Done():
			}
		}
		if f.cancel != nil {
			f.cancel()
		}
		if f.stopLinks != nil {
			f.stopLinks() // storeLinks writes what is queued, then ends
		}
		done := make(chan struct{})
		// wg first: it holds releaseHeld, which may still start a route.
		go func() { f.wg.Wait(); f.routes.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("forward: shutdown: %w", ctx.Err())
		}
		if f.pub != nil {
			_ = f.pub.Close(ctx) // the routes waited for their PubAcks already
		}
		if f.abort != nil {
			f.abort()
		}
		if f.httpClient != nil {
			f.httpClient.CloseIdleConnections()
		}
	})
	return err
}

// filterSubjects are the TW_EVENTS subjects any destination wants: every
// name, standard or alias, that one of them selects.
func (f *Forwarder) filterSubjects() []string {
	cands := slices.Concat(DefaultEvents, StandardEvents(KindTikTok), StandardEvents(KindMeta), []string{"Purchase", "SubmitForm"})
	for _, d := range f.dests {
		cands = append(cands, d.d.Events...)
	}
	slices.Sort(cands)
	cands = slices.Compact(cands)
	var out []string
	for _, n := range cands {
		for _, d := range f.dests {
			if Selects(d.d.Events, n) {
				out = append(out, event.Subject("*", n))
				break
			}
		}
	}
	return out
}

// ---- identity links ---------------------------------------------------------
//
// Badger keys:
//
//	'F' 'l' site 0 event 0 event_id → JSON map of aliases   TTL = longest hold + 1h
//
// A link is the identifiers a later copy of an event brought (the server
// copy's hashed email for the browser copy); a held conversion picks them
// up before it is sent.

func linkKey(site, name, eventID string) []byte {
	return []byte("Fl" + site + "\x00" + name + "\x00" + eventID)
}

func (f *Forwarder) onLink(m jetstream.Msg) {
	var l event.IdentityLink
	if err := json.Unmarshal(m.Data(), &l); err != nil || l.Site == "" || l.EventID == "" || (len(l.Aliases) == 0 && l.IP == "") {
		_ = m.Ack()
		return
	}
	if l.Aliases == nil {
		l.Aliases = map[string]string{}
	}
	if l.IP != "" {
		l.Aliases[event.AliasIP], l.Aliases[event.AliasUserAgent] = l.IP, l.UserAgent
	}
	k := linkKey(l.Site, l.Event, l.EventID)
	f.links.Add(k)
	select {
	case f.linkQ <- linkMsg{m: m, key: k, aliases: l.Aliases}:
	case <-f.linksDone: // Shutdown stopped waiting for the callbacks
		_ = m.NakWithDelay(time.Second)
	}
}

// linkMsg is an identity link on its way to Badger.
type linkMsg struct {
	m       jetstream.Msg
	key     []byte
	aliases map[string]string
}

// linkBatch bounds the links stored in one Badger transaction.
const linkBatch = 256

// storeLinks writes the links onLink queues, as many as wait (up to
// linkBatch) in one transaction. One transaction per link had the
// identity consumer's callback blocked 3 of 10 s of a 50 %-of-peak run
// on Badger's read watermark and commit (an execution trace, with
// tagway-load --trace), one link at a time. When ctx ends (the callbacks
// have), it writes what is queued and returns.
func (f *Forwarder) storeLinks(ctx context.Context) {
	defer f.wg.Done()
	batch := make([]linkMsg, 0, linkBatch)
	for {
		select {
		case x := <-f.linkQ:
			f.writeLinks(f.queuedLinks(append(batch[:0], x)))
		case <-ctx.Done():
			for batch = f.queuedLinks(batch[:0]); len(batch) > 0; batch = f.queuedLinks(batch[:0]) {
				f.writeLinks(batch)
			}
			return
		}
	}
}

// queuedLinks appends the links already queued to batch, up to linkBatch,
// without waiting for more.
func (f *Forwarder) queuedLinks(batch []linkMsg) []linkMsg {
	for len(batch) < linkBatch {
		select {
		case x := <-f.linkQ:
			batch = append(batch, x)
		default:
			return batch
		}
	}
	return batch
}

// writeLinks merges each link's aliases into what its key holds (the first
// value of a kind stays) in one transaction, which sees its own writes: two
// links to one key in a batch merge as if written one after the other.
// Each is acknowledged once stored; if the transaction fails, all are
// redelivered.
func (f *Forwarder) writeLinks(batch []linkMsg) {
	if len(batch) == 0 {
		return
	}
	err := kv.Update(f.db, func(txn *badger.Txn) error {
		for _, x := range batch {
			have := map[string]string{}
			if item, err := txn.Get(x.key); err == nil {
				_ = item.Value(func(v []byte) error { return json.Unmarshal(v, &have) })
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			for kind, v := range x.aliases {
				if have[kind] == "" {
					have[kind] = v
				}
			}
			b, _ := json.Marshal(have)
			if err := txn.SetEntry(badger.NewEntry(x.key, b).WithTTL(f.idTTL)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.log.Error("storing identity links; they will be redelivered", "links", len(batch), "err", err)
		for _, x := range batch {
			_ = x.m.NakWithDelay(time.Second)
		}
		return
	}
	for _, x := range batch {
		_ = x.m.Ack()
	}
}

// enrich fills the envelope's missing identifiers from the links learned
// for it during the hold.
func (f *Forwarder) enrich(env *event.Envelope) error {
	k := linkKey(env.Site, env.Event, env.EventID)
	if !f.links.MayContain(k) {
		return nil // no other copy taught anything
	}
	var have map[string]string
	_, err := kv.Get(f.db, k, func(v []byte) error { return json.Unmarshal(v, &have) })
	if err != nil || len(have) == 0 {
		return err
	}
	u := &env.User
	for _, x := range []struct {
		dst  *string
		kind string
	}{{&u.EmailSHA256, event.AliasEmail}, {&u.PhoneSHA256, event.AliasPhone}, {&u.PhoneE164SHA256, event.AliasPhoneE164},
		{&u.ExternalIDSHA256, event.AliasExternalID}, {&u.AnonID, event.AliasAnonID}, {&u.TTCLID, event.AliasTTCLID},
		{&u.TTP, event.AliasTTP}, {&u.FBC, event.AliasFBC}, {&u.FBP, event.AliasFBP}, {&u.IP, event.AliasIP},
		{&u.UserAgent, event.AliasUserAgent}} {
		if *x.dst == "" && have[x.kind] != "" {
			*x.dst = have[x.kind]
			f.m.enriched.Inc()
		}
	}
	return nil
}

// ---- routing ----------------------------------------------------------------

// onEvent routes one conversion: it waits out the hold (in memory, or for
// a long hold with NakWithDelay: hold.go), then publishes the payload of
// every destination that wants the event and whose forward:<name> use the
// event's decision allows, and acknowledges the event once JetStream holds
// them all.
func (f *Forwarder) onEvent(m jetstream.Msg) { f.route(m, nil) }

// route is onEvent; held, when set, is the conversion's envelope as
// decoded before the in-memory hold (hold.go) it comes back from.
func (f *Forwarder) route(m jetstream.Msg, held *event.Envelope) {
	if f.stopping.Load() {
		_ = m.NakWithDelay(time.Second)
		return
	}
	env := held
	if env == nil {
		env = new(event.Envelope)
		if err := json.Unmarshal(m.Data(), env); err != nil {
			f.m.routed.WithLabelValues("bad_envelope").Inc()
			f.log.Warn("skipping an envelope that does not decode", "err", err)
			_ = m.Term()
			return
		}
	}
	if !env.Consent.Decided {
		f.m.routed.WithLabelValues("undecided").Inc()
		_ = m.Ack()
		return
	}
	var to []*deliverer
	var hold time.Duration
	for _, d := range f.dests {
		if Selects(d.d.Events, env.Event) && slices.Contains(env.Consent.Allowed, d.use) {
			to = append(to, d)
			hold = max(hold, d.d.Hold.D())
		}
	}
	if len(to) == 0 {
		f.m.routed.WithLabelValues("no_consent").Inc()
		_ = m.Ack()
		return
	}
	if wait := time.UnixMilli(env.ReceivedAt).Add(hold).Sub(f.now()); wait > 0 {
		if md, err := m.Metadata(); err == nil && md.NumDelivered == 1 && held == nil {
			f.m.routed.WithLabelValues("held").Inc()
		}
		if wait <= f.hold && f.held.push(m, env, time.Now().Add(wait), f.cfg.HeldInMemory) {
			return
		}
		_ = m.NakWithDelay(wait)
		return
	}
	if err := f.enrich(env); err != nil {
		f.log.Error("reading identity links; the conversion is retried", "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	var msgs []bus.Msg
	for _, d := range to {
		msg, err := d.payload(env)
		if err != nil {
			f.m.routed.WithLabelValues("unbuildable").Inc()
			f.log.Warn("no payload could be built", "destination", d.d.Name, "event", env.Event, "err", err)
			continue
		}
		id := d.d.Name + "|" + event.DedupKey(env.Site, env.Event, env.EventID)
		if _, ok := f.published[id]; ok {
			d.m.republished.Inc() // published before a restart: read back at Start
			continue
		}
		msgs = append(msgs, bus.Msg{Subject: msg.Subject, MsgID: id, Data: msg.Data, Header: msg.Header})
		d.m.published.Inc()
	}
	// The PubAcks are awaited off the consumer's goroutine (the profile of
	// a load run showed the router stuck behind one PubAck round trip per
	// conversion): the publisher calls back once all are in.
	// routeInFlight bounds how many conversions wait at once.
	f.inflight <- struct{}{}
	f.routes.Add(1)
	f.pub.Publish(msgs, func(acks []bus.Ack) {
		defer func() { <-f.inflight; f.routes.Done() }()
		for _, a := range acks {
			if a.Err != nil {
				f.log.Error("publishing on TW_FORWARD; the conversion is retried", "err", a.Err)
				_ = m.NakWithDelay(time.Second)
				return
			}
		}
		for _, a := range acks {
			f.acked(a.Seq)
		}
		f.m.routed.WithLabelValues("published").Inc()
		if f.dropAcks.Load() {
			return // a test's crash between the PubAcks and the ack
		}
		_ = m.Ack()
	})
}

// pullExpiry bounds each pull request: a load run saw the router, at its
// MaxAckPending (max_pending held conversions), get nothing more until its
// pull request expired (nats.go's default, 30 s) although acks had made room.
const pullExpiry = 5 * time.Second

// routeInFlight bounds the conversions whose payloads await their PubAcks.
const routeInFlight = 512

// forwardMsg is a payload with the headers delivery needs.
func forwardMsg(dest string, env *event.Envelope, data []byte) *nats.Msg {
	u := &env.User
	var others []string
	for _, one := range []event.User{{AnonID: u.AnonID}, {ExternalIDSHA256: u.ExternalIDSHA256}, {EmailSHA256: u.EmailSHA256}, {PhoneSHA256: u.PhoneSHA256}} {
		if p := event.ProfileID(&one); p != "" && p != env.Profile && !slices.Contains(others, p) {
			others = append(others, p)
		}
	}
	// One backing array for the header's values, one map sized for them
	// (and for the Nats-Msg-Id the publisher adds).
	vals := [...]string{env.Site, env.Profile, env.Event, env.EventID,
		strconv.FormatInt(max(env.EventTime, 0), 10), strconv.FormatInt(env.ReceivedAt, 10), strings.Join(others, ",")}
	keys := [...]string{HeaderSite, HeaderProfile, HeaderEvent, HeaderEventID, HeaderEventTime, HeaderReceivedAt, HeaderProfiles}
	n := len(keys)
	if len(others) == 0 {
		n-- // no Tw-Profiles
	}
	vs := vals[:n:n]
	h := make(nats.Header, n+1)
	for i := range n {
		h[keys[i]] = vs[i : i+1 : i+1]
	}
	return &nats.Msg{Subject: Subject(dest, env.Event), Data: data, Header: h}
}

// watchLag reports each consumer's backlog every 5 seconds.
func (f *Forwarder) watchLag(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	type c struct{ stream, name string }
	cs := []c{{eventsStream, RouteConsumer}}
	for _, d := range f.dests {
		cs = append(cs, c{ForwardStream, DeliverConsumerPrefix + d.d.Name})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, x := range cs {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			cons, err := f.js.Consumer(qctx, x.stream, x.name)
			if err == nil {
				info := cons.CachedInfo()
				f.m.lag.WithLabelValues(x.name).Set(float64(info.NumPending + uint64(info.NumAckPending)))
			}
			cancel()
		}
	}
}
