package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/kv"
)

// A record comes back from its stored form exactly as it was hashed, hex
// fields or not, and the stored form is smaller than the JSON.
func TestRecordCodecRoundTrip(t *testing.T) {
	h := strings.Repeat("ab", 32)
	recs := []Record{
		{Seq: 2, ID: "01a235af66235ef9dcc58dbda45f737b", At: 1796197017123, Kind: KindConsent, Site: "bench",
			ProfileRef: "385c7b0af9c24d4f72916e1deb8d6e3516e07749709c59f9feae12e715f4deca", Source: "browser",
			Data: json.RawMessage(`{"decision":{"jurisdiction":"","regime":"opt-out","allowed":["measurement"],"denied":{"forward:tiktok":"opted out of gpc (Global Privacy Control)","segments":"opted out of gpc (Global Privacy Control)"}},"inherited":false,"signals":{"gpc":true}}`),
			Prev: genesis, Hash: h},
		{Seq: 1, Kind: KindPolicy, Source: "admin", Prev: genesis, Hash: h},                    // no id, site, ref, data
		{Seq: 1 << 40, At: -5, Kind: "x", ID: "ABCD", ProfileRef: "abc", Prev: "", Hash: "zz"}, // not lowercase hex of even length: kept as strings
	}
	for _, r := range recs {
		b := encodeRecord(nil, &r)
		var got Record
		if err := decodeRecord(b, &got); err != nil {
			t.Fatalf("decode %d: %v", r.Seq, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
		want, _ := hashOf(r)
		if have, _ := hashOf(got); have != want {
			t.Fatalf("hash changed by the round trip")
		}
		if j, _ := json.Marshal(r); len(b) >= len(j) {
			t.Fatalf("stored form %d bytes, JSON %d", len(b), len(j))
		}
	}
	b := encodeRecord(nil, &recs[0])
	j, _ := json.Marshal(recs[0])
	t.Logf("consent record: %d bytes stored, %d as JSON", len(b), len(j))
	if len(b) > len(j)*70/100 {
		t.Fatalf("stored form %d bytes, JSON %d: the hex fields are not packed", len(b), len(j))
	}
}

// Stores written before the binary form hold JSON records: they still read,
// and a chain of JSON records followed by binary ones verifies.
func TestJSONRecordsFromBeforeStillRead(t *testing.T) {
	l, db, now := openLog(t)
	fill(t, l, now, 6)
	for seq := uint64(1); seq <= 3; seq++ { // rewrite the first three as before
		var r Record
		if err := decodeRecord(raw(t, db, seq), &r); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(r)
		set(t, db, recordKey(seq), b)
	}
	if raw(t, db, 1)[0] != '{' || raw(t, db, 4)[0] != formatBinary {
		t.Fatal("expected JSON records 1-3 and binary 4-6")
	}
	fill(t, l, now, 2)
	if n, err := l.Verify(); err != nil || n != 8 {
		t.Fatalf("verify: %d %v", n, err)
	}
	var got []uint64
	if err := l.Query("shop", "a:alice", t0, t0.Add(time.Hour), func(r *Record) error {
		if r.Profile != "a:alice" || len(r.Data) == 0 {
			t.Fatalf("record %d: %+v", r.Seq, r)
		}
		got = append(got, r.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []uint64{1, 3, 5, 7}) {
		t.Fatalf("alice's records: %v", got)
	}
	// A tampered JSON record is still caught.
	set(t, db, recordKey(2), bytes.Replace(raw(t, db, 2), []byte(`"US-CA"`), []byte(`"US-NY"`), 1))
	if _, err := l.Verify(); err == nil || !strings.Contains(err.Error(), "record 2: content does not match") {
		t.Fatalf("verify after tampering with a JSON record: %v", err)
	}
}

// The record's Data does not alias Badger's buffer.
func TestDecodedDataIsCopied(t *testing.T) {
	l, db, now := openLog(t)
	fill(t, l, now, 1)
	var r Record
	_ = db.View(func(txn *badger.Txn) error {
		_, err := kv.GetIn(txn, recordKey(1), func(b []byte) error {
			err := decodeRecord(b, &r)
			for i := range b {
				b[i] = 0 // what Badger may do to the buffer after the callback
			}
			return err
		})
		return err
	})
	if !json.Valid(r.Data) {
		t.Fatalf("data after the buffer changed: %q", r.Data)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	r := Record{Seq: 9, ID: "01a2", At: 17, Kind: KindConsent, Site: "s", ProfileRef: strings.Repeat("0f", 32),
		Jurisdiction: "US-CA", Source: "browser", Data: json.RawMessage(`{"a":1}`), Prev: genesis, Hash: genesis}
	f.Add(encodeRecord(nil, &r))
	j, _ := json.Marshal(r)
	f.Add(j)
	f.Add([]byte{formatBinary, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := decodeRecord(b, &r); err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if b[0] != formatBinary {
			return
		}
		// What decodes re-encodes to a record that decodes the same.
		var again Record
		if err := decodeRecord(encodeRecord(nil, &r), &again); err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoded: %v\n%+v\n%+v", err, again, r)
		}
	})
}
