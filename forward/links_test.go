package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/event"
)

// A backlog of identity links is stored in batches: each key ends with
// every alias kind its links taught, the first value of a kind kept (two
// links to one key, often in one transaction, merge as if written in
// turn), and every link is acknowledged.
func TestIdentityLinksStoredInBatches(t *testing.T) {
	p := newPipe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 400
	var last *jetstream.PubAck
	var acks []jetstream.PubAckFuture
	for i := range n {
		for _, al := range []map[string]string{
			{event.AliasEmail: fmt.Sprintf("email-%d", i)},
			{event.AliasEmail: "a later email", event.AliasPhone: fmt.Sprintf("phone-%d", i)},
		} {
			data, _ := json.Marshal(event.IdentityLink{Site: "shop", Profile: fmt.Sprintf("a:b%d", i), Event: "CompletePayment", EventID: fmt.Sprintf("o%d", i), Aliases: al})
			f, err := p.js.PublishAsync(event.IdentitySubject("shop"), data)
			if err != nil {
				t.Fatal(err)
			}
			acks = append(acks, f)
		}
	}
	for _, f := range acks {
		select {
		case a := <-f.Ok():
			last = a
		case err := <-f.Err():
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("no PubAck")
		}
	}
	waitFor(t, 20*time.Second, "the links acknowledged", func() bool {
		c, err := p.js.Consumer(ctx, identityStream, IdentityConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream >= last.Sequence && info.NumAckPending == 0
	})
	err := p.store.DB().View(func(txn *badger.Txn) error {
		for i := range n {
			item, err := txn.Get(linkKey("shop", "CompletePayment", fmt.Sprintf("o%d", i)))
			if err != nil {
				return fmt.Errorf("o%d: %w", i, err)
			}
			var have map[string]string
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &have) }); err != nil {
				return err
			}
			if have[event.AliasEmail] != fmt.Sprintf("email-%d", i) || have[event.AliasPhone] != fmt.Sprintf("phone-%d", i) {
				return fmt.Errorf("o%d holds %v", i, have)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
