package segments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/kv"
)

// Consuming. The engine reads TW_EVENTS, TW_IDENTITY and TW_CONSENT through
// one durable pull consumer each, with AckAll: a commit acknowledges the
// last message it covers and so every message before it, one ack per
// consumer per commit instead of one per event.
//
// AckAll has one trap, which a SIGKILL test fell into: acknowledging
// sequence N also acknowledges an older message that an engine received but
// never applied (it died, or dropped a failed batch) and that JetStream is
// holding for redelivery after AckWait. The newer messages are delivered at
// once, get committed first, and the older one is acknowledged unseen: lost.
// So the engine never relies on redelivery. Whenever it subscribes (at Start,
// and after dropping uncommitted work) it recreates each consumer to deliver
// in stream order from just after its ack floor. Applying a message twice is
// harmless: a profile's state records the last TW_EVENTS sequence applied to
// it, and links and consent changes are idempotent.

// pullExpiry bounds each pull request. A load run saw a
// consumer with a backlog and an idle engine get nothing until its pull
// request expired (nats.go's default, 30 s), after it had reached
// MaxAckPending; a short expiry makes such a stall last seconds.
const pullExpiry = 5 * time.Second

var consumers = [...]struct{ stream, name string }{
	{eventsStream, EventsConsumer}, {identityStream, IdentityConsumer}, {consentStream, ConsentConsumer},
}

// msgFeed is one subscription to the three consumers. Only the loop goroutine
// uses it after Start.
type msgFeed struct {
	in   chan jetstream.Msg
	stop chan struct{} // closed to release callbacks blocked on in
	ccs  []jetstream.ConsumeContext
}

// subscribe (re)creates the durable consumers from their ack floors and
// starts consuming them.
func (e *Engine) subscribe(ctx context.Context) (*msgFeed, error) {
	f := &msgFeed{in: make(chan jetstream.Msg, 4*e.cfg.Batch), stop: make(chan struct{})}
	for _, c := range consumers {
		var floor uint64
		switch old, err := e.js.Consumer(ctx, c.stream, c.name); {
		case err == nil:
			floor = old.CachedInfo().AckFloor.Stream
			if err := e.js.DeleteConsumer(ctx, c.stream, c.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				f.close()
				return nil, fmt.Errorf("segments: recreating consumer %s on %s: %w", c.name, c.stream, err)
			}
		case errors.Is(err, jetstream.ErrConsumerNotFound):
		default:
			f.close()
			return nil, fmt.Errorf("segments: consumer %s on %s: %w", c.name, c.stream, err)
		}
		cfg := jetstream.ConsumerConfig{
			Durable: c.name, AckPolicy: jetstream.AckAllPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			// Room for everything the engine can hold unacknowledged: the
			// uncommitted messages (up to MaxUncommitted plus one batch),
			// the feed (4 batches) and the client's pull buffer (1.5).
			AckWait: e.cfg.AckWait.D(), MaxAckPending: e.cfg.MaxUncommitted + 8*e.cfg.Batch,
			Description: "Tagway segments",
		}
		if floor > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
		}
		if c.stream == eventsStream && floor > e.applied.Load() {
			// Acknowledged means committed: applied before a restart.
			// Without this CatchUp (and so an erasure) waited after a
			// restart until a new event arrived, and timed out if none did.
			e.applied.Store(floor)
		}
		cons, err := e.js.CreateConsumer(ctx, c.stream, cfg)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("segments: consumer %s on %s: %w", c.name, c.stream, err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			select {
			case f.in <- m:
			case <-f.stop:
			}
		}, jetstream.PullMaxMessages(e.cfg.Batch), jetstream.PullExpiry(pullExpiry))
		if err != nil {
			f.close()
			return nil, fmt.Errorf("segments: consuming %s: %w", c.stream, err)
		}
		f.ccs = append(f.ccs, cc)
		if floor > 0 {
			e.log.Debug("consuming", "stream", c.stream, "from", floor+1)
		}
	}
	return f, nil
}

// close stops the feed's consumers and drops what they handed over but the
// engine did not take (the next subscription delivers it again).
func (f *msgFeed) close() {
	close(f.stop)
	for _, cc := range f.ccs {
		cc.Stop()
	}
	for _, cc := range f.ccs {
		<-cc.Closed()
	}
	for {
		select {
		case <-f.in:
		default:
			return
		}
	}
}

// Start creates TW_AUDIENCE and the durable consumers, publishes what a
// crash left in the outbox, applies a rule change, and starts consuming.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.createAudienceStream(ctx); err != nil {
		return err
	}
	if e.pub == nil {
		p, err := bus.NewPublisher(e.js.Conn(), publishTimeout, publishMaxPending)
		if err != nil {
			return fmt.Errorf("segments: %w", err)
		}
		e.pub = p
	}
	if err := e.scanPublished(ctx); err != nil {
		return err
	}
	if err := e.recover(ctx); err != nil {
		return err
	}
	f, err := e.subscribe(ctx)
	if err != nil {
		return err
	}
	ctx, e.cancel = context.WithCancel(context.Background())
	e.done = make(chan struct{})
	go e.loop(ctx, f)
	return nil
}

func (e *Engine) createAudienceStream(ctx context.Context) error {
	if _, err := e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: AudienceStream, Description: "Tagway segment membership changes (tw.audience.<segment>)",
		Subjects: []string{AudienceSubjects}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
		Discard: jetstream.DiscardOld, MaxAge: e.cfg.Audience.MaxAge.D(), Replicas: e.cfg.Audience.Replicas,
		Duplicates: e.cfg.Audience.DuplicateWindow.D(), MaxBytes: -1,
	}); err != nil {
		return fmt.Errorf("segments: creating stream %s: %w", AudienceStream, err)
	}
	return nil
}

// Stop stops consuming, applies what the consumers delivered, commits and
// acknowledges it. It may be called more than once.
func (e *Engine) Stop() { e.stopOnce.Do(e.stop) }

func (e *Engine) stop() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
	}
	// Return the cache's memory (fastcache keeps freed chunks for the next
	// cache); an admin read after Stop reads Badger.
	e.cache.Reset()
	if e.pub != nil {
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		_ = e.pub.Close(ctx) // the last commit waited for its deltas already
		cancel()
	}
}

// publishTimeout bounds the wait for a batch of deltas' PubAcks;
// publishMaxPending the deltas awaiting theirs (more wait for room).
const (
	publishTimeout    = 10 * time.Second
	publishMaxPending = 8192
)

// Applied is the last TW_EVENTS sequence applied (tests wait on it).
func (e *Engine) Applied() uint64 { return e.applied.Load() }

// CatchUp waits until every event TW_EVENTS held when it was called has
// been applied, so that an erasure cannot be undone by an event accepted
// before it but applied after it.
func (e *Engine) CatchUp(ctx context.Context) error {
	st, err := e.js.Stream(ctx, eventsStream)
	if err != nil {
		return fmt.Errorf("segments: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("segments: %w", err)
	}
	last := info.State.LastSeq
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for e.applied.Load() < last {
		select {
		case <-ctx.Done():
			return fmt.Errorf("segments: %d events behind: %w", last-e.applied.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// loop owns the feed: it batches messages, runs the sweep and the commit
// ticks, resubscribes after a failure, and drains on stop.
func (e *Engine) loop(ctx context.Context, f *msgFeed) {
	defer close(e.done)
	sweep := time.NewTicker(e.cfg.Sweep.D())
	defer sweep.Stop()
	commit := time.NewTicker(e.cfg.Commit.D())
	defer commit.Stop()
	batch := make([]jetstream.Msg, 0, e.cfg.Batch)
	for {
		if e.needsResubscribe() {
			f = e.resubscribe(ctx, f)
			if f == nil {
				return // stopped while NATS was unreachable; nothing uncommitted
			}
		}
		batch = batch[:0]
		if len(f.in) == 0 {
			// Nothing waits to be applied: settle the deltas in flight now
			// rather than with the next batch, so that Applied is current.
			e.settleIdle()
		}
		select {
		case <-ctx.Done():
			e.drain(f, batch)
			return
		case <-sweep.C:
			if _, err := e.Sweep(); err != nil {
				e.log.Error("sweep", "err", err)
			}
			continue
		case <-commit.C:
			e.mu.Lock()
			if !e.crashed && time.Since(e.lastCommit) >= e.cfg.Commit.D() {
				if err := e.commit(); err != nil {
					e.fail(err)
				}
			}
			e.mu.Unlock()
			continue
		case m := <-f.in:
			batch = append(batch, m)
		}
		linger := time.NewTimer(e.cfg.Linger.D())
	fill:
		for len(batch) < cap(batch) {
			select {
			case m := <-f.in:
				batch = append(batch, m)
			case <-linger.C:
				break fill
			}
		}
		linger.Stop()
		e.run(batch)
	}
}

// settleIdle settles the deltas in flight, if any (see deltaGroup).
func (e *Engine) settleIdle() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.crashed || e.inflight == nil {
		return
	}
	if err := e.settle(); err != nil {
		e.fail(err)
	}
}

// drain stops the consumers (which hand over what they already pulled),
// applies everything handed over, and commits it.
func (e *Engine) drain(f *msgFeed, batch []jetstream.Msg) {
	for _, cc := range f.ccs {
		cc.Drain()
	}
	for _, cc := range f.ccs {
		for closed := false; !closed; {
			select {
			case m := <-f.in:
				if batch = append(batch, m); len(batch) == cap(batch) {
					e.run(batch)
					batch = batch[:0]
				}
			case <-cc.Closed():
				closed = true
			}
		}
	}
	for more := true; more; {
		select {
		case m := <-f.in:
			if batch = append(batch, m); len(batch) == cap(batch) {
				e.run(batch)
				batch = batch[:0]
			}
		default:
			more = false
		}
	}
	e.run(batch)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.crashed {
		if err := e.commit(); err != nil {
			e.log.Error("final commit failed; the next start applies the uncommitted events again", "err", err)
		}
	}
}

func (e *Engine) needsResubscribe() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.resub
}

// resubscribe replaces the feed after fail dropped uncommitted work, so that
// delivery restarts at the first message not committed. It retries (the
// usual cause of a failure is NATS being away) until it succeeds or ctx ends.
func (e *Engine) resubscribe(ctx context.Context, old *msgFeed) *msgFeed {
	old.close()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := e.scanPublished(sctx)
		var f *msgFeed
		if err == nil {
			f, err = e.subscribe(sctx)
		}
		cancel()
		if err == nil {
			e.mu.Lock()
			e.resub = false
			e.mu.Unlock()
			e.log.Info("resubscribed after dropping uncommitted work")
			return f
		}
		e.log.Error("resubscribing; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// run applies a batch and publishes its deltas. The batch is acknowledged
// later, by the commit that stores its state (at most Commit later, or when
// MaxUncommitted messages wait).
func (e *Engine) run(batch []jetstream.Msg) {
	if len(batch) == 0 {
		return
	}
	t0 := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.crashed {
		return
	}
	for _, m := range batch {
		// AckAll: the highest sequence of each consumer covers the rest.
		if md, err := m.Metadata(); err == nil {
			if u, ok := e.unacked[md.Consumer]; !ok || md.Sequence.Stream > u.seq {
				e.unacked[md.Consumer] = unacked{m, md.Sequence.Stream}
			}
		}
	}
	e.uncommitted += len(batch)
	if err := e.apply(batch); err != nil {
		e.fail(err)
		return
	}
	if e.uncommitted >= e.cfg.MaxUncommitted || time.Since(e.lastCommit) >= e.cfg.Commit.D() {
		if err := e.commit(); err != nil {
			e.fail(err)
			return
		}
	}
	e.m.batchSeconds.Observe(time.Since(t0).Seconds())
}

// fail drops everything not committed: the in-memory state goes back to
// what Badger holds, and the loop resubscribes from the ack floor so the
// dropped messages are applied again. Deltas already published are
// computed again with the same ids; the resubscription reads back what
// TW_AUDIENCE holds since the last commit, and those are not published
// again.
func (e *Engine) fail(err error) {
	if errors.Is(err, errCrashed) {
		e.crashed = true
		return
	}
	e.m.errors.Inc()
	e.log.Error("dropping uncommitted work; it is consumed again from the ack floor", "messages", e.uncommitted, "err", err)
	clear(e.mem) // the cache holds only what was stored: it stays
	clear(e.aliasMem)
	clear(e.dirty)
	clear(e.dead)
	clear(e.outbox)
	e.inflight = nil // its deltas are computed again, with the same ids
	clear(e.unacked)
	e.idx = e.idx[:0]
	e.uncommitted = 0
	e.audSeq = e.audSeqStored // the resubscription reads back what was published since
	e.resub = true
}

// maxScan bounds scanPublished. What can be published again is the deltas
// of at most MaxUncommitted messages and a batch (a few per message); a
// larger gap means other publishers share the stream, and its oldest part
// is left to the duplicate window.
const maxScan = 1 << 20

// scanPublished reads back the ids of the deltas TW_AUDIENCE received after
// the sequence stored with the last commit: the deltas of the events not
// yet stored, which the engine will compute again (same ids) and must not
// publish twice. TW_AUDIENCE's duplicate window then only has to cover
// publish retries while running, not the time a crashed engine was away.
// Without a stored sequence (a new data directory, or one from before the
// marker existed) there is nothing to read back.
func (e *Engine) scanPublished(ctx context.Context) error {
	from, err := kv.GetUint64(e.db, audSeqKey)
	if err != nil {
		return fmt.Errorf("segments: reading the stored %s sequence: %w", AudienceStream, err)
	}
	e.mu.Lock()
	e.published = nil
	e.audSeq, e.audSeqStored = max(e.audSeq, from), from
	e.mu.Unlock()
	if from == 0 {
		return nil
	}
	ids, truncated, err := bus.MsgIDsAfter(ctx, e.js, AudienceStream, from, maxScan)
	if err != nil {
		return fmt.Errorf("segments: %w", err)
	}
	if truncated {
		e.log.Warn("more deltas published since the last commit than are read back; the oldest are left to the duplicate window",
			"stream", AudienceStream, "since", from, "read", maxScan)
	}
	e.log.Info("read back the deltas published since the last commit", "stream", AudienceStream, "deltas", len(ids))
	e.mu.Lock()
	e.published = ids
	e.mu.Unlock()
	return nil
}

// commit stores every dirty state and index change in one WriteBatch, then
// acknowledges the messages applied so far. It refuses while deltas wait
// to be published: a stored state must never claim a membership whose
// delta JetStream does not hold.
func (e *Engine) commit() error {
	if e.inflight != nil || len(e.outbox) > 0 {
		if err := e.publishOutbox(); err != nil {
			return err
		}
	}
	if e.crashBeforeCommit != nil && e.crashBeforeCommit() {
		return errCrashed
	}
	if err := e.flush(); err != nil {
		return err
	}
	// AckAll: the last message of each consumer acknowledges those before.
	// A lost ack only means a redelivery, which is skipped as applied.
	for c, u := range e.unacked {
		_ = u.m.Ack()
		delete(e.unacked, c)
	}
	e.uncommitted = 0
	e.lastCommit = time.Now()
	return nil
}
