package forward

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/kv"
)

// Reading back. The router publishes a conversion's payloads on TW_FORWARD,
// then acknowledges its TW_EVENTS message. Should the process die in
// between, JetStream redelivers the conversion after the router's AckWait
// (the longest hold plus routeAckSlack: 5 min 30 s by default) and the
// router builds the same payloads again, with the same Nats-Msg-Id. A
// duplicate window as long as AckWait plus any outage would drop them, but
// the broker keeps ~180 bytes per message inside the window: an hour of
// conversions at a few thousand a second is most of a GiB.
//
// Instead the router stores, every second, a TW_FORWARD sequence that every
// payload whose acknowledgement may not have reached JetStream comes after
// (markKey: the highest sequence acknowledged markLag ago), and at start
// reads back the ids published after it. A redelivered conversion whose
// payload is among them is acknowledged without publishing it again. The
// duplicate window (forward.stream.duplicate_window, 30 s) then only covers
// retries while running.

var markKey = []byte("Fq")

// markLag is how old the stored sequence is: longer than a payload can wait
// for its PubAck plus the acknowledgement's trip to the server. A variable
// only for tests.
var markLag = routePubAckTimeout + 10*time.Second

// maxReadBack bounds the read-back: what can be published again is at most
// markLag plus AckWait of conversions; a larger gap means other publishers
// share the stream, and its oldest part is left to the duplicate window.
const maxReadBack = 1 << 20

// readBack loads the ids TW_FORWARD received after the stored sequence.
// Without one (a new data directory, or one from before the mark existed)
// there is nothing to read back.
func (f *Forwarder) readBack(ctx context.Context) (from uint64, err error) {
	from, err = kv.GetUint64(f.db, markKey)
	if err != nil {
		return 0, fmt.Errorf("forward: reading the stored %s sequence: %w", ForwardStream, err)
	}
	if from == 0 {
		return 0, nil
	}
	ids, truncated, err := bus.MsgIDsAfter(ctx, f.js, ForwardStream, from, maxReadBack)
	if err != nil {
		return 0, fmt.Errorf("forward: %w", err)
	}
	if truncated {
		f.log.Warn("more payloads published since the stored sequence than are read back; the oldest are left to the duplicate window",
			"stream", ForwardStream, "since", from, "read", maxReadBack)
	}
	if len(ids) > 0 {
		f.log.Info("read back the payloads published before the restart", "stream", ForwardStream, "payloads", len(ids))
	}
	f.published = ids
	return from, nil
}

// acked records a PubAck's sequence.
func (f *Forwarder) acked(seq uint64) {
	for {
		cur := f.fwdSeq.Load()
		if seq <= cur || f.fwdSeq.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// markLoop stores the mark every second. It stays where it was until the
// conversions redelivered from before this start (within AckWait) have
// been routed, so a second crash meanwhile still reads theirs back.
func (f *Forwarder) markLoop(ctx context.Context, stored uint64) {
	defer f.wg.Done()
	type sample struct {
		at  time.Time
		seq uint64
	}
	notBefore := time.Now().Add(f.hold + routeAckSlack)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var ring []sample
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if now.Before(notBefore) {
			continue
		}
		ring = append(ring, sample{now, f.fwdSeq.Load()})
		// The newest sample at least markLag old.
		i := -1
		for j, s := range ring {
			if now.Sub(s.at) >= markLag {
				i = j
			}
		}
		if i < 0 {
			continue
		}
		s := ring[i]
		ring = ring[i:]
		if s.seq <= stored {
			continue
		}
		err := kv.Update(f.db, func(txn *badger.Txn) error {
			return txn.Set(markKey, binary.BigEndian.AppendUint64(nil, s.seq))
		})
		if err != nil {
			f.log.Error("storing the read-back sequence", "err", err)
			continue
		}
		stored = s.seq
	}
}
