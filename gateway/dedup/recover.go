package dedup

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

// Recovery after a crash. A first copy's record is written after its
// PubAck (never before: a failed publish must not turn the retry into a
// "duplicate"), so a process killed between the two leaves an event stored
// without its record, and the sender, who got no answer, retries — maybe
// later than JetStream's short Nats-Msg-Id window. So while the gateway
// runs, a key says so (openKey); at a clean stop it is deleted. A start
// that finds it reads back the events stream's last messages (every event
// whose record could have been in flight: its publish wait and the
// resolver's window, gateway/unsure.go) and writes the records missing.

// openKey is present while a process uses the store. 'd' and a 0 byte: no
// record's key (a site id is never empty).
var openKey = []byte("d\x00open")

// Opened reports whether the last process to use the store did not stop
// cleanly, and marks the store as in use (until Closed).
func (s *Store) Opened() (unclean bool, err error) {
	err = kv.Update(s.db, func(txn *badger.Txn) error {
		_, err := txn.Get(openKey)
		switch {
		case err == nil:
			unclean = true
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		return txn.Set(openKey, nil)
	})
	if err != nil {
		return false, fmt.Errorf("dedup: marking the store open: %w", err)
	}
	return unclean, nil
}

// Closed marks a clean stop: every record of a stored event is written.
// Call it once nothing publishes any more.
func (s *Store) Closed() error {
	if err := kv.Update(s.db, func(txn *badger.Txn) error { return txn.Delete(openKey) }); err != nil {
		return fmt.Errorf("dedup: marking the store closed: %w", err)
	}
	return nil
}

// Recover writes the records missing for the envelopes that read passes
// to its callback (the events stream's last messages, encoded), and returns
// how many it read and wrote. A record already there is left as it is.
func (s *Store) Recover(read func(fn func(data []byte) error) (int, error)) (n, written int, err error) {
	b := s.Begin()
	flush := func() error {
		if len(b.writes) == 0 {
			return nil
		}
		err := b.write()
		b.writes = b.writes[:0]
		return err
	}
	now := s.now().UnixMilli()
	n, err = read(func(data []byte) error {
		var env event.Envelope
		if err := json.Unmarshal(data, &env); err != nil || env.Site == "" || env.EventID == "" {
			return nil // not an envelope of ours: nothing to remember
		}
		if env.EventIDAssigned || now-env.ReceivedAt >= s.cfg.Window.D().Milliseconds() {
			return nil
		}
		key := dedupKey(&env)
		found := false
		if s.mayBeStored(key) { // most are: they were stored before the crash
			if err := s.db.View(func(txn *badger.Txn) error {
				rec, err := getRecord(txn, key)
				found = rec != nil
				return err
			}); err != nil {
				return err
			}
		}
		if found {
			return nil
		}
		b.queueRecord(key, &record{At: env.ReceivedAt, Source: env.Source, Profile: env.Profile, Kinds: env.User.AliasSet(), Device: env.User.IP != ""})
		written++
		if len(b.writes) >= 512 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return n, written, fmt.Errorf("dedup: recovering records: %w", err)
	}
	return n, written, nil
}
