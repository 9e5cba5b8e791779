package dedup

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
	"github.com/tagway/tagway/gateway/wire"
)

func TestRecordCodec(t *testing.T) {
	var got0 record
	for _, r := range []record{
		{At: t0.UnixMilli(), Source: event.SourceServer, Profile: strings.Repeat("0f", 16), Kinds: 0b101, Device: true},
		{At: t0.UnixMilli(), Source: event.SourceBrowser, Profile: strings.Repeat("a1", 16)},
		{At: -5, Source: event.SourceBrowser, Profile: "Not-Hex", Kinds: 0xffff},
		{At: 1, Source: "import", Profile: "p"}, // stored as JSON
	} {
		b := encodeRecord(nil, &r)
		var got record
		if err := decodeRecord(b, &got); err != nil || got != r {
			t.Errorf("%+v: decoded %+v, %v", r, got, err)
		}
		if r.Source == "import" && b[0] != '{' {
			t.Errorf("an unknown source should be stored as JSON: %q", b)
		}
	}
	// A load-test record: 28 bytes, not the 89 of its JSON (nor the 45 of
	// the binary form that kept the profile id as text).
	r := record{At: t0.UnixMilli(), Source: event.SourceServer, Profile: "a:" + strings.Repeat("0f", 16), Kinds: 1}
	b := encodeRecord(nil, &r)
	if len(b) != 28 {
		t.Errorf("stored form is %d bytes, want 28", len(b))
	}
	// What the previous release wrote (the profile id as a string) reads.
	old := wire.AppendStr(append(b[:len(b)-19:len(b)-19], 0), r.Profile)
	if err := decodeRecord(old, &got0); err != nil || got0 != r {
		t.Errorf("previous release's record: %+v, %v", got0, err)
	}
	// Records stored as JSON by earlier versions still read.
	var got record
	if err := decodeRecord([]byte(`{"t":5,"s":"server","p":"ab","k":3,"d":true}`), &got); err != nil ||
		got != (record{At: 5, Source: event.SourceServer, Profile: "ab", Kinds: 3, Device: true}) {
		t.Errorf("JSON record: %+v %v", got, err)
	}
	// Errors name the field.
	good := encodeRecord(nil, &r)
	for _, c := range []struct {
		b    []byte
		want string
	}{
		{nil, "unknown format"},
		{[]byte{7}, "unknown format"},
		{[]byte{recordFormat}, "flags"},
		{[]byte{recordFormat, 4}, "flags is unknown"},
		{[]byte{recordFormat, 0}, "at"},
		{good[:len(good)-3], "profile"},
		{append(append([]byte{}, good...), 0), "after its profile"},
		{[]byte(`{"t":"x"}`), "not valid JSON"},
	} {
		if err := decodeRecord(c.b, &got); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.b, err, c.want)
		}
	}
}

// A record stored as JSON (before the binary form) is still a duplicate's
// first copy after an upgrade, with its profile and identifiers.
func TestJSONRecordFromBeforeStillDeduplicates(t *testing.T) {
	dir := t.TempDir()
	first := env(event.SourceServer, "old")
	old, _ := json.Marshal(record{At: t0.UnixMilli(), Source: event.SourceServer, Profile: first.Profile, Kinds: first.User.AliasSet()})
	before, err := kv.Open(dir, kv.Config{}, nil) // the store as the old version left it
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Update(before.DB(), func(txn *badger.Txn) error { return txn.Set([]byte(dedupKey(first)), old) }); err != nil {
		t.Fatal(err)
	}
	if err := before.Close(); err != nil {
		t.Fatal(err)
	}
	s, db := openStore(t, dir, Config{}, func() time.Time { return t0 })
	defer db.Close()
	b := s.Begin()
	v, err := b.Check(context.Background(), env(event.SourceBrowser, "old"))
	if err != nil || v.Kind != Duplicate || v.Pair != "server_browser" || v.Link == nil || v.Link.Profile != first.Profile {
		t.Fatalf("copy of a JSON-stored first: %+v %v", v, err)
	}
	b.Settle(v, true)
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	// The merged record is written back in the binary form.
	err = db.DB().View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(dedupKey(first)))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if v[0] != recordFormat {
				t.Errorf("merged record stored as %q", v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeDedupRecord(f *testing.F) {
	r := record{At: t0.UnixMilli(), Source: event.SourceServer, Profile: strings.Repeat("0f", 16), Kinds: 3, Device: true}
	f.Add(encodeRecord(nil, &r))
	j, _ := json.Marshal(r)
	f.Add(j)
	f.Add([]byte{recordFormat, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r record
		if err := decodeRecord(b, &r); err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if b[0] != recordFormat {
			return
		}
		var again record
		if err := decodeRecord(encodeRecord(nil, &r), &again); err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoded: %v\n%+v\n%+v", err, again, r)
		}
	})
}
