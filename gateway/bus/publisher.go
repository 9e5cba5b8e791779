package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes to JetStream asynchronously and reports each
// message's PubAck, for a group of messages at once. It is what nats.go's
// jetstream.PublishAsync does, with less per message: the full-pipeline
// profile had nats.go decode every PubAck with encoding/json holding its
// publisher's lock (2.2 % of the CPU), arm a timer per message, and build a
// header map and two channels per future. Here a PubAck is read by hand (the
// server writes them from a fixed template; anything else goes through
// encoding/json), one sweeper times out the messages in publish order, and a
// group's outcome is one callback or one channel.
//
// A Publisher is safe for concurrent use.
type Publisher struct {
	nc      *nats.Conn
	prefix  string // reply subjects: prefix + token (base 36)
	sub     *nats.Subscription
	timeout time.Duration
	slots   chan struct{} // one per message awaiting its PubAck (MaxPending)

	mu      sync.Mutex
	next    uint64
	pending map[uint64]pendingMsg
	queue   []timed // tokens in publish order, for the sweeper
	closed  bool

	stop   chan struct{}
	done   chan struct{}
	status chan nats.Status // the connection's losses
	hdrs   sync.Pool        // *msgHeader
}

type pendingMsg struct {
	g *group
	i int
}

type timed struct {
	token    uint64
	deadline int64 // unix nanoseconds
}

// group is messages published together: acks[i] is msgs[i]'s outcome.
type group struct {
	acks   []Ack
	left   atomic.Int32
	tokens []uint64
	then   func([]Ack) // nil: close done
	done   chan struct{}
}

type msgHeader struct {
	h  nats.Header
	id []string
}

// stallWait is how long a publish waits for a free slot when MaxPending
// messages await their PubAcks (nats.go's default stall wait).
const stallWait = 200 * time.Millisecond

// NewPublisher starts a publisher on nc: timeout bounds the wait for each
// PubAck (an Ack that is Unsure past it), maxPending the messages awaiting
// theirs.
func NewPublisher(nc *nats.Conn, timeout time.Duration, maxPending int) (*Publisher, error) {
	if timeout <= 0 || maxPending <= 0 {
		return nil, errors.New("bus: a publisher needs a positive timeout and max pending")
	}
	p := &Publisher{nc: nc, prefix: nc.NewRespInbox() + ".", timeout: timeout, slots: make(chan struct{}, maxPending),
		pending: make(map[uint64]pendingMsg), stop: make(chan struct{}), done: make(chan struct{})}
	p.hdrs.New = func() any { return &msgHeader{h: nats.Header{}, id: make([]string, 1)} }
	sub, err := nc.Subscribe(p.prefix+"*", p.onReply)
	if err != nil {
		return nil, fmt.Errorf("bus: subscribing to PubAcks: %w", err)
	}
	p.sub = sub
	p.status = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	go p.sweep()
	return p, nil
}

// Publish publishes msgs and calls then(acks) once every message has its
// outcome (from the goroutine that reads PubAcks, the sweeper, or this
// call). acks[i] is msgs[i]'s. then must not block for long.
func (p *Publisher) Publish(msgs []Msg, then func([]Ack)) {
	g := &group{acks: make([]Ack, len(msgs)), then: then}
	p.publish(g, msgs)
}

// PublishWait publishes msgs and waits until each has its outcome in
// acks[i], or ctx ends (the rest are then Unsure).
func (p *Publisher) PublishWait(ctx context.Context, msgs []Msg, acks []Ack) {
	g := &group{acks: acks[:len(msgs)], done: make(chan struct{})}
	p.publish(g, msgs)
	select {
	case <-g.done:
		return
	case <-ctx.Done():
	}
	// Take back the messages still pending: their answers are now ours to
	// write. Those already taken by the reply reader are being written;
	// the group completes as soon as they are.
	err := fmt.Errorf("%w: waiting for ack: %v", ErrUnavailable, ctx.Err())
	p.mu.Lock()
	var mine []int
	for _, tok := range g.tokens {
		if pm, ok := p.pending[tok]; ok && pm.g == g {
			delete(p.pending, tok)
			mine = append(mine, pm.i)
		}
	}
	p.mu.Unlock()
	for _, i := range mine {
		p.resolve(g, i, Ack{Err: err, Unsure: true})
	}
	<-g.done
}

func (p *Publisher) publish(g *group, msgs []Msg) {
	n := int32(len(msgs))
	if n == 0 {
		p.finish(g)
		return
	}
	g.left.Store(n)
	g.tokens = make([]uint64, len(msgs))
	for i := range msgs {
		if err := p.acquire(); err != nil {
			p.resolveFree(g, i, Ack{Err: err})
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			<-p.slots
			p.resolveFree(g, i, Ack{Err: ErrClosed})
			continue
		}
		p.next++
		tok := p.next
		g.tokens[i] = tok
		p.pending[tok] = pendingMsg{g: g, i: i}
		p.queue = append(p.queue, timed{tok, time.Now().Add(p.timeout).UnixNano()})
		p.mu.Unlock()
		if err := p.send(&msgs[i], tok); err != nil {
			if p.take(tok) {
				p.resolve(g, i, Ack{Err: fmt.Errorf("%w: %v", ErrUnavailable, err)})
			}
		}
	}
}

func (p *Publisher) send(m *Msg, tok uint64) error {
	var buf [48]byte
	reply := string(strconv.AppendUint(append(buf[:0], p.prefix...), tok, 36))
	h := m.Header // the caller's own, with the id added for the call
	if m.MsgID != "" {
		mh := p.hdrs.Get().(*msgHeader)
		defer p.hdrs.Put(mh)
		if h == nil {
			h = mh.h
		}
		mh.id[0] = m.MsgID
		h[jetstream.MsgIDHeader] = mh.id
		// nats.go writes the headers into its buffer before PublishMsg
		// returns: the pooled map and slice can be used again after.
		defer delete(h, jetstream.MsgIDHeader)
	}
	return p.nc.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: reply, Header: h, Data: m.Data})
}

// acquire takes a slot, waiting up to stallWait.
func (p *Publisher) acquire() error {
	select {
	case p.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(stallWait)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: %d messages await their PubAcks", ErrUnavailable, cap(p.slots))
	}
}

// take removes tok from the pending messages; only its taker resolves it.
func (p *Publisher) take(tok uint64) bool {
	p.mu.Lock()
	_, ok := p.pending[tok]
	delete(p.pending, tok)
	p.mu.Unlock()
	return ok
}

// resolve records a pending message's outcome and frees its slot.
func (p *Publisher) resolve(g *group, i int, a Ack) {
	<-p.slots
	p.resolveFree(g, i, a)
}

// resolveFree records the outcome of a message that holds no slot.
func (p *Publisher) resolveFree(g *group, i int, a Ack) {
	g.acks[i] = a
	if g.left.Add(-1) == 0 {
		p.finish(g)
	}
}

func (p *Publisher) finish(g *group) {
	if g.then != nil {
		g.then(g.acks)
	} else {
		close(g.done)
	}
}

func (p *Publisher) onReply(m *nats.Msg) {
	tok, err := strconv.ParseUint(m.Subject[min(len(p.prefix), len(m.Subject)):], 36, 64)
	if err != nil {
		return
	}
	p.mu.Lock()
	pm, ok := p.pending[tok]
	delete(p.pending, tok)
	p.mu.Unlock()
	if !ok {
		return // timed out or given up already
	}
	p.resolve(pm.g, pm.i, parseAck(m))
}

// parseAck reads a PubAck: {"stream":"S","seq":N} from the server's
// template, else whatever JSON the server sent (a duplicate, an error), or
// a no-responders status (no stream on the subject).
func parseAck(m *nats.Msg) Ack {
	d := m.Data
	if len(d) == 0 {
		if m.Header.Get("Status") == "503" {
			return Ack{Err: fmt.Errorf("%w: %v", ErrUnavailable, nats.ErrNoResponders)}
		}
		return Ack{Err: fmt.Errorf("%w: an empty PubAck", ErrUnavailable), Unsure: true}
	}
	if seq, ok := fastAck(d); ok {
		return Ack{Seq: seq}
	}
	var r struct {
		Error     *jetstream.APIError `json:"error"`
		Stream    string              `json:"stream"`
		Seq       uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
	}
	switch err := json.Unmarshal(d, &r); {
	case err != nil:
		return Ack{Err: fmt.Errorf("%w: a PubAck that does not decode: %v", ErrUnavailable, err), Unsure: true}
	case r.Error != nil:
		return Ack{Err: fmt.Errorf("%w: %w", ErrUnavailable, r.Error)}
	case r.Stream == "":
		return Ack{Err: fmt.Errorf("%w: a PubAck without a stream", ErrUnavailable), Unsure: true}
	}
	return Ack{Seq: r.Seq, Duplicate: r.Duplicate}
}

var (
	ackStream = []byte(`{"stream":`)
	ackSeq    = []byte(`"seq":`)
)

// fastAck reads the sequence of a plain PubAck: one that starts as the
// server's template does and says nothing of errors or duplicates.
func fastAck(d []byte) (uint64, bool) {
	if !bytes.HasPrefix(d, ackStream) || bytes.Contains(d, []byte(`"error"`)) || bytes.Contains(d, []byte(`"duplicate"`)) {
		return 0, false
	}
	i := bytes.Index(d, ackSeq)
	if i < 0 {
		return 0, false
	}
	d = d[i+len(ackSeq):]
	j := 0
	for j < len(d) && d[j] >= '0' && d[j] <= '9' {
		j++
	}
	if j == 0 || j > 20 || j == len(d) || (d[j] != '}' && d[j] != ',') {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(d[:j]), 10, 64)
	return seq, err == nil
}

// sweep times out messages whose PubAck did not come in time (the queue is
// in publish order, so its head is always the next to expire), and gives
// up on every pending message when the connection is lost: their PubAcks,
// if any, went with it (as nats.go's publisher does).
func (p *Publisher) sweep() {
	defer close(p.done)
	tick := time.NewTicker(max(min(p.timeout/10, 100*time.Millisecond), time.Millisecond))
	defer tick.Stop()
	var expired []pendingMsg
	status := p.status
	for {
		lost := false
		select {
		case <-p.stop:
			return
		case st, ok := <-status:
			if !ok {
				status = nil // closed: nothing more comes
				continue
			}
			lost = st == nats.RECONNECTING || st == nats.CLOSED
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		p.mu.Lock()
		if lost {
			for tok, pm := range p.pending {
				delete(p.pending, tok)
				expired = append(expired, pm)
			}
			p.queue = p.queue[:0]
		}
		n := 0
		for ; n < len(p.queue); n++ {
			pm, ok := p.pending[p.queue[n].token]
			if !ok {
				continue // answered: drop it now, not at its deadline
			}
			if p.queue[n].deadline > now {
				break
			}
			delete(p.pending, p.queue[n].token)
			expired = append(expired, pm)
		}
		// Drop the head (expired or answered); answered tokens behind a
		// pending one wait for the next turn. Compact once the dropped head
		// is most of the array.
		p.queue = p.queue[n:]
		if cap(p.queue) > 1024 && len(p.queue) < cap(p.queue)/4 {
			p.queue = append(make([]timed, 0, 2*len(p.queue)), p.queue...)
		}
		p.mu.Unlock()
		err := fmt.Errorf("%w: no PubAck within %s", ErrUnavailable, p.timeout)
		if lost {
			err = fmt.Errorf("%w: %v before the PubAck", ErrUnavailable, nats.ErrDisconnected)
		}
		for _, pm := range expired {
			p.resolve(pm.g, pm.i, Ack{Err: err, Unsure: true})
		}
		expired = expired[:0]
	}
}

// Pending is the number of messages awaiting their PubAcks.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Close waits (bounded by ctx) for the messages awaiting their PubAcks,
// then stops: later publishes fail with ErrClosed. The connection is the
// caller's.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	var err error
	for wait := true; wait && p.Pending() > 0; {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("bus: %d publishes still unacknowledged at shutdown", p.Pending())
			wait = false
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(p.stop)
	<-p.done
	p.nc.RemoveStatusListener(p.status)
	// Whatever is still pending will not be waited for: its senders learn
	// that it may or may not have been stored.
	p.mu.Lock()
	left := p.pending
	p.pending = map[uint64]pendingMsg{}
	p.queue = nil
	p.mu.Unlock()
	for _, pm := range left {
		p.resolve(pm.g, pm.i, Ack{Err: fmt.Errorf("%w: closed before its PubAck", ErrClosed), Unsure: true})
	}
	_ = p.sub.Unsubscribe()
	return err
}
