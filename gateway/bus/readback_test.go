package bus_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
)

func TestMsgIDsAfter(t *testing.T) {
	b := bustest.OpenEmbedded(t)
	ctx := context.Background()
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := make([]bus.Msg, 2500) // more than one fetch
	for i := range msgs {
		msgs[i] = bus.Msg{Subject: "tw.events.s.A", MsgID: fmt.Sprint("id-", i+1), Data: []byte(`{}`)}
	}
	msgs = append(msgs, bus.Msg{Subject: "tw.events.s.A", Data: []byte(`{}`)}) // no id: not listed
	acks := make([]bus.Ack, len(msgs))
	b.PublishBatch(ctx, msgs, acks)
	for i, a := range acks {
		if a.Err != nil || a.Seq != uint64(i+1) {
			t.Fatalf("ack %d: %+v", i, a)
		}
	}
	sorted := func(m map[string]struct{}) []string { return slices.Sorted(maps.Keys(m)) }
	ids, truncated, err := bus.MsgIDsAfter(ctx, b.JetStream(), bus.EventsStream, 2497, 0)
	if err != nil || truncated {
		t.Fatal(err, truncated)
	}
	if got := sorted(ids); !slices.Equal(got, []string{"id-2498", "id-2499", "id-2500"}) {
		t.Fatalf("after 2497: %v", got)
	}
	ids, _, err = bus.MsgIDsAfter(ctx, b.JetStream(), bus.EventsStream, 0, 0)
	if err != nil || len(ids) != 2500 {
		t.Fatalf("after 0: %d ids, %v", len(ids), err)
	}
	ids, truncated, err = bus.MsgIDsAfter(ctx, b.JetStream(), bus.EventsStream, 0, 3)
	if err != nil || !truncated || !slices.Equal(sorted(ids), []string{"id-2499", "id-2500"}) {
		t.Fatalf("limit 3 (the last is id-less): %v, %v, %v", sorted(ids), truncated, err)
	}
	ids, truncated, err = bus.MsgIDsAfter(ctx, b.JetStream(), bus.EventsStream, 2501, 0)
	if err != nil || truncated || len(ids) != 0 {
		t.Fatalf("after the last: %v, %v, %v", ids, truncated, err)
	}
	if _, _, err := bus.MsgIDsAfter(ctx, b.JetStream(), "NOPE", 0, 0); err == nil {
		t.Fatal("a missing stream read back without an error")
	}
}
