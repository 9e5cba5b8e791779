package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/dedup"
)

// Unsure publishes. When an event's PubAck does not come (a timeout, a
// dropped connection), the stream may or may not have stored it. The request
// is answered 503, but the event's dedup claim is not released: the resolver
// publishes the same message again, with the same Nats-Msg-Id, until the
// stream answers. A duplicate means the first attempt was stored; a new
// sequence means this attempt is the one. Either way the event is then in
// TW_EVENTS once and its dedup record is written, so the sender's retry,
// whenever it comes, is answered as a duplicate. Until then a retry waits for
// the claim (dedup.claim_wait) and is answered 503 again.
//
// The stream's answer only proves "once" within its duplicate window of the
// first attempt, so no attempt is sent that could be answered after that
// window ends. An event still unresolved then is looked for instead: the
// messages stored on its subject from its first attempt to twice the window
// after it, headers only, for its Nats-Msg-Id (once the broker answers
// again). Found, it was stored; not found, it was not, and its claim is
// released. So the broker's window need only cover the resolver's retries
// and a restart, not the senders' retry schedules.

// unsureMax bounds the events awaiting resolution (each holds its encoded
// envelope, ~1 KiB); beyond it a claim is released at once (counted
// "dropped").
const unsureMax = 50_000

type unsureMsg struct {
	msg  bus.Msg
	p    *dedup.Pending
	sent time.Time // when the first attempt was published
}

// msgFinder searches a stream for messages by Nats-Msg-Id (*bus.Bus).
type msgFinder interface {
	FindMsgIDs(ctx context.Context, stream, subject string, from, to time.Time, ids map[string]bool) (map[string]bool, error)
}

type resolver struct {
	pub    Publisher
	find   msgFinder     // nil: past the window, a claim is released ("gave_up")
	window time.Duration // TW_EVENTS' duplicate window, less a margin for clocks
	wait   time.Duration // longest wait for one attempt's PubAck
	every  time.Duration // pause between rounds
	log    *slog.Logger

	outcomes *prometheus.CounterVec
	pending  prometheus.Gauge

	mu      sync.Mutex
	queue   []unsureMsg
	inRound int // taken out of queue by the round in progress

	ctx    context.Context // canceled by stop
	cancel context.CancelFunc
	kick   chan struct{}
	done   chan struct{}
	// released counts what stop left unresolved (set before done closes).
	released int
}

// newResolver returns a running resolver for a stream whose duplicate window
// is window, publishing through pub; wait bounds one attempt. It keeps real
// time (the broker's window does), not the gateway's clock.
func newResolver(pub Publisher, window, wait time.Duration, log *slog.Logger, reg prometheus.Registerer) *resolver {
	r := &resolver{
		pub: pub, window: window - time.Second, wait: wait, every: time.Second, log: log,
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagway_publish_unsure_total",
			Help: "Events whose PubAck did not come, by how that was resolved: stored (a later attempt stored it), already_stored (the first attempt had), found (past the duplicate window, found in the stream), not_found (past the window, not in the stream: released), gave_up (past the window, no search possible: released), dropped (too many awaiting: released), shutdown (released at stop).",
		}, []string{"outcome"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tagway_publish_unsure_pending", Help: "Events whose PubAck did not come, awaiting resolution.",
		}),
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	reg.MustRegister(r.outcomes, r.pending)
	for _, o := range []string{"stored", "already_stored", "found", "not_found", "gave_up", "dropped", "shutdown"} {
		r.outcomes.WithLabelValues(o)
	}
	r.find, _ = pub.(msgFinder)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	go r.run()
	return r
}

// add hands over an event whose publish at sent got no answer.
func (r *resolver) add(msg bus.Msg, p *dedup.Pending, sent time.Time) {
	r.mu.Lock()
	if len(r.queue) >= unsureMax || r.ctx.Err() != nil {
		r.mu.Unlock()
		r.resolve(unsureMsg{msg: msg, p: p, sent: sent}, false, "dropped")
		return
	}
	r.queue = append(r.queue, unsureMsg{msg: msg, p: p, sent: sent})
	r.pending.Set(float64(len(r.queue)))
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *resolver) run() {
	defer close(r.done)
	for {
		select {
		case <-r.ctx.Done():
			r.mu.Lock()
			left := r.queue
			r.queue = nil
			r.pending.Set(0)
			r.mu.Unlock()
			for _, u := range left {
				r.resolve(u, false, "shutdown")
			}
			r.released = len(left)
			return
		case <-r.kick:
		}
		r.round()
		// Keep trying while anything is left, a second apart.
		r.mu.Lock()
		more := len(r.queue) > 0
		r.mu.Unlock()
		if more {
			select {
			case <-r.ctx.Done():
			case <-time.After(r.every):
				select {
				case r.kick <- struct{}{}:
				default:
				}
			}
		}
	}
}

// round publishes again every waiting event still within the window and
// resolves those the stream answered; it searches the stream for those past
// the window whose search time has come.
func (r *resolver) round() {
	r.mu.Lock()
	items := r.queue
	r.queue = nil
	r.inRound = len(items)
	r.mu.Unlock()
	now := time.Now()
	var try, late, wait []unsureMsg
	for _, u := range items {
		// An answer to an attempt sent now may come as late as now+wait;
		// it proves "stored once" only within the window of the first.
		switch {
		case now.Add(r.wait).Before(u.sent.Add(r.window)):
			try = append(try, u)
		case r.find == nil:
			r.resolve(u, false, "gave_up")
		case now.After(r.searchTo(u.sent)):
			late = append(late, u)
		default:
			wait = append(wait, u) // until anything it became is in the stream
		}
	}
	wait = append(wait, r.search(late)...)
	if len(try) > 0 {
		msgs := make([]bus.Msg, len(try))
		for i, u := range try {
			msgs[i] = u.msg
		}
		acks := make([]bus.Ack, len(try))
		ctx, cancel := context.WithTimeout(r.ctx, r.wait)
		r.pub.PublishBatch(ctx, msgs, acks)
		cancel()
		var again []unsureMsg
		for i, a := range acks {
			switch {
			case a.Err == nil && a.Duplicate:
				r.resolve(try[i], true, "already_stored")
			case a.Err == nil:
				r.resolve(try[i], true, "stored")
			default:
				again = append(again, try[i])
			}
		}
		try = again
	}
	r.mu.Lock()
	r.queue = append(append(r.queue, try...), wait...)
	r.inRound = 0
	r.pending.Set(float64(len(r.queue)))
	r.mu.Unlock()
}

// searchTo is when a message first sent at sent has been stored if it ever
// will be: a message the broker took in before it went quiet is stored long
// before twice the window after.
func (r *resolver) searchTo(sent time.Time) time.Time {
	return sent.Add(2 * (r.window + time.Second))
}

// search looks for events in the stream, a search per subject, and returns
// those it could not search (the broker did not answer): they are searched
// again next round.
func (r *resolver) search(late []unsureMsg) []unsureMsg {
	bySubject := map[string][]unsureMsg{}
	for _, u := range late {
		bySubject[u.msg.Subject] = append(bySubject[u.msg.Subject], u)
	}
	var again []unsureMsg
	var failed error
	for subject, us := range bySubject {
		if failed != nil { // the broker is not answering: no use asking again now
			again = append(again, us...)
			continue
		}
		ids := make(map[string]bool, len(us))
		from, to := us[0].sent, us[0].sent
		for _, u := range us {
			ids[u.msg.MsgID] = true
			from, to = minTime(from, u.sent), maxTime(to, u.sent)
		}
		// Stored at the earliest when sent.
		ctx, cancel := context.WithTimeout(r.ctx, r.wait)
		found, err := r.find.FindMsgIDs(ctx, bus.EventsStream, subject, from.Add(-time.Second), r.searchTo(to), ids)
		cancel()
		if err != nil {
			failed = err
			again = append(again, us...)
			continue
		}
		for _, u := range us {
			if found[u.msg.MsgID] {
				r.resolve(u, true, "found")
			} else {
				r.resolve(u, false, "not_found")
			}
		}
	}
	return again
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (r *resolver) resolve(u unsureMsg, stored bool, outcome string) {
	r.outcomes.WithLabelValues(outcome).Inc()
	switch outcome {
	case "gave_up":
		r.log.Warn("an event's publish got no answer within the events stream's duplicate window; its claim is released, and a retry may store it twice",
			"subject", u.msg.Subject, "sent", u.sent)
	case "dropped":
		r.log.Warn("too many events await their PubAck's outcome; this one's claim is released, and a retry may store it twice",
			"subject", u.msg.Subject, "sent", u.sent)
	}
	if err := u.p.Resolve(stored); err != nil {
		r.log.Error("dedup state not written for an event resolved as stored; a later copy may be accepted again", "err", err)
	}
}

// stop gives the events awaiting resolution until ctx ends, then releases
// what is left, waits for the loop to end and returns how many it released:
// events that may be stored without their dedup records.
func (r *resolver) stop(ctx context.Context) int {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for r.waiting() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	r.cancel()
	<-r.done
	return r.released
}

// waiting counts the events not yet resolved, the round's in progress too.
func (r *resolver) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) + r.inRound
}
