package dedup

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/event"
)

// TestRecoverAfterACrash: an event was stored in TW_EVENTS (its PubAck came)
// but the process died before writing its record. The next start finds the
// store was not closed, reads back the stream's last events and writes the
// record, so the sender's retry is a duplicate however late it comes. After
// a clean stop nothing is read back.
func TestRecoverAfterACrash(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s, db := openStore(t, t.TempDir(), Config{}, clock)
	defer db.Close()
	b := bustest.OpenEmbedded(t)
	read := func(fn func([]byte) error) (int, error) {
		return bus.ReadLast(context.Background(), b.JetStream(), bus.EventsStream, time.Minute, fn)
	}
	publish := func(e *event.Envelope) {
		t.Helper()
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		acks := make([]bus.Ack, 1)
		b.PublishBatch(context.Background(), []bus.Msg{{Subject: event.Subject(e.Site, e.Event), MsgID: event.DedupKey(e.Site, e.Event, e.EventID), Data: data}}, acks)
		if acks[0].Err != nil {
			t.Fatal(acks[0].Err)
		}
	}
	if unclean, err := s.Opened(); err != nil || unclean {
		t.Fatalf("a new store: unclean %v, %v", unclean, err)
	}

	// Stored, then killed before the record's write: the claim dies with
	// the process, the record was never written.
	e := env(event.SourceServer, "crash-1")
	e.ReceivedAt = now.UnixMilli()
	e.User.IP = "203.0.113.0"
	if v := check(t, s, e, false); v.Kind != First {
		t.Fatalf("first copy: %v", v.Kind)
	}
	publish(e)
	publish(&event.Envelope{Site: "shop", Event: "Lead", EventID: "assigned-1", EventIDAssigned: true, ReceivedAt: now.UnixMilli()})

	// The restart.
	s2, err := New(Config{}, db.DB(), nil, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	unclean, err := s2.Opened()
	if err != nil || !unclean {
		t.Fatalf("after a crash: unclean %v, %v", unclean, err)
	}
	n, written, err := s2.Recover(read)
	if err != nil || n != 2 || written != 1 {
		t.Fatalf("recover: read %d, wrote %d (%v); want 2 read, 1 written (the event without an id of its own is skipped)", n, written, err)
	}
	later := env(event.SourceServer, "crash-1")
	later.ReceivedAt = now.UnixMilli()
	if v := check(t, s2, later, true); v.Kind != Duplicate {
		t.Fatalf("the retry after the restart: %v, want a duplicate", v.Kind)
	}
	// The recovered record is the one the request would have written: a
	// browser copy in the merge window adds only what it lacked.
	browser := env(event.SourceBrowser, "crash-1")
	browser.ReceivedAt = now.UnixMilli()
	browser.User.IP = "203.0.113.0"
	v := check(t, s2, browser, true)
	if v.Kind != Duplicate || v.Link == nil || v.Link.Aliases["anon_id"] == "" || v.Link.IP != "" {
		t.Fatalf("browser copy: %+v (link %+v); want a link adding the anon id only", v, v.Link)
	}
	// Nothing to redo: a second recovery writes nothing.
	if _, written, err := s2.Recover(read); err != nil || written != 0 {
		t.Fatalf("second recovery wrote %d (%v)", written, err)
	}

	// A clean stop: the next start reads nothing back.
	if err := s2.Closed(); err != nil {
		t.Fatal(err)
	}
	s3, err := New(Config{}, db.DB(), nil, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if unclean, err := s3.Opened(); err != nil || unclean {
		t.Fatalf("after a clean stop: unclean %v, %v", unclean, err)
	}
}
