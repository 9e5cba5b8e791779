package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MsgIDsAfter reads back the Nats-Msg-Id of every message stream holds after
// sequence after (headers only), at most limit of the newest; truncated
// says older ones were left out.
//
// A publisher that may publish again after a crash what it published
// before (the same ids) reads back what the stream received since its last
// durable point, instead of relying on a duplicate window as long as any
// outage: the broker keeps ~180 bytes per message inside the window.
func MsgIDsAfter(ctx context.Context, js jetstream.JetStream, stream string, after uint64, limit int) (ids map[string]struct{}, truncated bool, err error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, false, fmt.Errorf("reading back %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("reading back %s: %w", stream, err)
	}
	ids = map[string]struct{}{}
	last, start := info.State.LastSeq, max(after+1, info.State.FirstSeq)
	if last < start || info.State.Msgs == 0 {
		return ids, false, nil
	}
	if limit > 0 && last-start >= uint64(limit) {
		start, truncated = last-uint64(limit)+1, true
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start, HeadersOnly: true,
	})
	if err != nil {
		return nil, false, fmt.Errorf("reading back %s: %w", stream, err)
	}
	for seq := start - 1; seq < last; {
		batch, err := cons.Fetch(int(min(last-seq, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, false, fmt.Errorf("reading back %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if md, err := m.Metadata(); err == nil {
				seq = max(seq, md.Sequence.Stream)
			}
			if id := m.Headers().Get(nats.MsgIdHdr); id != "" {
				ids[id] = struct{}{}
			}
		}
		if err := batch.Error(); err != nil {
			return nil, false, fmt.Errorf("reading back %s: %w", stream, err)
		}
		if n == 0 {
			// Removed meanwhile (max age, or a purge): nothing left to read.
			break
		}
	}
	return ids, truncated, nil
}

// ReadLast calls fn with the data of every message stream stored within
// span before its newest one (as the stream stood when called), oldest
// first, and returns how many it read. A process that may have stopped
// between a PubAck and its own bookkeeping reads back the messages it
// could have been handling then.
func ReadLast(ctx context.Context, js jetstream.JetStream, stream string, span time.Duration, fn func(data []byte) error) (int, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("reading back %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading back %s: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	read := 0
	from := info.State.LastTime.Add(-span)
	err = scan(ctx, st, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from},
		info.State.LastSeq, func(m jetstream.Msg, _ *jetstream.MsgMetadata) (bool, error) {
			read++
			return false, fn(m.Data())
		})
	if err != nil {
		return read, fmt.Errorf("reading back %s: %w", stream, err)
	}
	return read, nil
}

// FindMsgIDs returns which of ids the messages stream holds on subject,
// stored between from and to, carry as their Nats-Msg-Id (headers only). It
// answers "was it stored?" for a message whose PubAck never came, after the
// duplicate window that could have answered by a re-publish has passed.
func (b *Bus) FindMsgIDs(ctx context.Context, stream, subject string, from, to time.Time, ids map[string]bool) (map[string]bool, error) {
	found := map[string]bool{}
	st, err := b.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return found, nil
	}
	err = scan(ctx, st, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, HeadersOnly: true,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from,
	}, info.State.LastSeq, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		if md.Timestamp.After(to) {
			return true, nil // stored after the span: the rest is later still
		}
		if id := m.Headers().Get(nats.MsgIdHdr); ids[id] {
			found[id] = true
		}
		return len(found) == len(ids), nil
	})
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", stream, err)
	}
	return found, nil
}

// scan reads st through an ordered consumer made with cfg, in order, up to
// sequence last (the stream's end when the caller looked), calling fn with
// each message until it says stop.
func scan(ctx context.Context, st jetstream.Stream, cfg jetstream.OrderedConsumerConfig, last uint64, fn func(jetstream.Msg, *jetstream.MsgMetadata) (stop bool, err error)) error {
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	// NumPending: from the start to the stream's end. Fetching no more than
	// that, a fetch never waits out its MaxWait for messages that are not
	// there.
	pending := ci.NumPending
	for seq := uint64(0); seq < last && pending > 0; {
		batch, err := cons.Fetch(int(min(pending, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			pending--
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if seq = md.Sequence.Stream; seq > last {
				return nil // stored after the caller looked
			}
			if stop, err := fn(m, md); stop || err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return nil // removed meanwhile (max age, a purge): nothing left
		}
	}
	return nil
}
