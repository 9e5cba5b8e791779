package forward

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is a conversion a destination refused, as kept on
// tw.forward.dead.<destination>.
type DeadLetter struct {
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"` // where a replay sends it
	EventID string    `json:"event_id"`
	Event   string    `json:"event"`
	Status  int       `json:"status"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// ErrUnknownDestination is returned for a destination not in config.
var ErrUnknownDestination = errors.New("forward: no such destination")

func (f *Forwarder) known(dest string) bool {
	for _, d := range f.dests {
		if d.d.Name == dest {
			return true
		}
	}
	return false
}

// DeadLetters calls fn for each of dest's dead letters stored since since
// (zero: all), oldest first.
func (f *Forwarder) DeadLetters(ctx context.Context, dest string, since time.Time, fn func(DeadLetter, jetstream.Msg) error) error {
	if !f.known(dest) {
		return fmt.Errorf("%w: %q", ErrUnknownDestination, dest)
	}
	st, err := f.js.Stream(ctx, ForwardStream)
	if err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{DeadSubject(dest)}}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	c, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("forward: reading dead letters: %w", err)
	}
	for {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("forward: reading dead letters: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, _ := m.Metadata()
			h := m.Headers()
			status, _ := strconv.Atoi(h.Get(HeaderDeadStatus))
			at, _ := strconv.ParseInt(h.Get(HeaderDeadAt), 10, 64)
			dl := DeadLetter{Subject: h.Get(HeaderDeadSubject), EventID: h.Get(HeaderEventID), Event: h.Get(HeaderEvent),
				Status: status, Reason: h.Get(HeaderDeadReason), At: time.UnixMilli(at).UTC()}
			if md != nil {
				dl.Seq = md.Sequence.Stream
			}
			if err := fn(dl, m); err != nil {
				return err
			}
			if md != nil && md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("forward: reading dead letters: %w", err)
		}
		if got == 0 {
			return nil
		}
	}
}

// Replay sends dest's dead letters stored since since (zero: all) to the
// destination again: each is republished on its original subject and then
// removed from the dead letters, so a second replay does not send it twice.
func (f *Forwarder) Replay(ctx context.Context, dest string, since time.Time) (int, error) {
	st, err := f.js.Stream(ctx, ForwardStream)
	if err != nil {
		return 0, fmt.Errorf("forward: %w", err)
	}
	n := 0
	err = f.DeadLetters(ctx, dest, since, func(dl DeadLetter, m jetstream.Msg) error {
		if dl.Subject == "" {
			return nil
		}
		msg := nats.NewMsg(dl.Subject)
		msg.Data = m.Data()
		for k, v := range m.Headers() {
			switch k {
			case HeaderDeadSubject, HeaderDeadStatus, HeaderDeadReason, HeaderDeadAt, "Nats-Msg-Id":
			default:
				msg.Header[k] = v
			}
		}
		if _, err := f.js.PublishMsg(ctx, msg, jetstream.WithMsgID("replay|"+dest+"|"+strconv.FormatUint(dl.Seq, 10))); err != nil {
			return fmt.Errorf("forward: replaying %d: %w", dl.Seq, err)
		}
		if err := st.DeleteMsg(ctx, dl.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("forward: removing replayed dead letter %d: %w", dl.Seq, err)
		}
		n++
		return nil
	})
	if n > 0 {
		f.log.Info("dead letters replayed", "destination", dest, "count", n)
	}
	return n, err
}
