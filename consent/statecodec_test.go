package consent

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/gateway/kv"
)

func sampleStates() []state {
	return []state{
		{Signals: storedSignals{GPP: "DBABLA~CVVpGGGGkmVk.YA", GPPSID: []int{7}}, Decision: Decision{Jurisdiction: "", Regime: OptOut,
			Allowed: []string{"measurement"}, Denied: map[string]string{"forward:tiktok": "opted out of targeted advertising (GPP usnat)",
				"segments": "opted out of targeted advertising (GPP usnat)"}}, AuditID: "01a235af70e685b0ad80629e7f205175", At: 1796197019878, Source: "browser"},
		{Signals: storedSignals{TCF: "CP9HEwAP9HEwAAfAFCDEDwEoAPLAAEMAAAqIABuAAAAA", USP: "1YNN", GPC: true, Categories: map[string]bool{"ads": false, "analytics": true}},
			Country: "US", Region: "CA", Decision: Decision{Jurisdiction: "US-CA", Regime: OptIn, Allowed: []string{}, Denied: map[string]string{
				"a": "r1", "b": "r2", "c": "r1", "d": "r2", "e": "r3"}},
			AuditID: "not-hex", At: -1, Unpublished: true, Source: "server", Pending: []byte(`{"site":"s"}`)},
		{Decision: Decision{Allowed: []string{}, Denied: map[string]string{}}},
	}
}

// A state comes back exactly, reasons shared or not, and smaller than JSON.
func TestStateCodecRoundTrip(t *testing.T) {
	for i, st := range sampleStates() {
		b := encodeState(nil, &st)
		var got state
		if err := decodeState(b, &got); err != nil {
			t.Fatalf("state %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, st) {
			t.Fatalf("state %d:\n got %+v\nwant %+v", i, got, st)
		}
		j, _ := json.Marshal(st)
		if i == 0 {
			t.Logf("state: %d bytes stored, %d as JSON", len(b), len(j))
			if len(b) > len(j)/2 {
				t.Fatalf("stored %d bytes, JSON %d: reasons or the audit id not packed", len(b), len(j))
			}
		}
		if a, _ := json.Marshal(got); string(a) != string(j) { // Show's output unchanged ("allowed": [] stays [])
			t.Fatalf("state %d as JSON:\n%s\n%s", i, a, j)
		}
	}
}

// A state stored as JSON by an earlier version is still read, and the next
// change is written in the binary form.
func TestStateStoredAsJSONStillReads(t *testing.T) {
	st, err := kv.Open(t.TempDir(), kv.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := NewEngine(Config{}, st.DB(), nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := sampleStates()[1]
	b, _ := json.Marshal(old)
	if err := kv.Update(st.DB(), func(txn *badger.Txn) error { return txn.Set(stateKey("shop", "a:1"), b) }); err != nil {
		t.Fatal(err)
	}
	e.known.Add(stateKey("shop", "a:1"))
	got, err := e.load("shop", "a:1")
	if err != nil || !reflect.DeepEqual(*got, old) {
		t.Fatalf("load: %v\n%+v", err, got)
	}
	got.Unpublished = false
	if err := e.store("shop", "a:1", got); err != nil {
		t.Fatal(err)
	}
	_ = st.DB().View(func(txn *badger.Txn) error {
		item, err := txn.Get(stateKey("shop", "a:1"))
		if err != nil {
			t.Fatal(err)
		}
		return item.Value(func(v []byte) error {
			if v[0] != stateFormat {
				t.Fatalf("rewritten as %q", v)
			}
			return nil
		})
	})
	again, err := e.load("shop", "a:1")
	if err != nil || again.Unpublished || again.Signals.TCF != old.Signals.TCF {
		t.Fatalf("after the rewrite: %v %+v", err, again)
	}
}

func TestStateDecodeErrorsNameTheField(t *testing.T) {
	st := sampleStates()[1]
	b := encodeState(nil, &st)
	var got state
	if err := decodeState(b[:len(b)-3], &got); err == nil || !strings.Contains(err.Error(), "consent state's pending is truncated") {
		t.Fatalf("truncated: %v", err)
	}
	if err := decodeState([]byte{9}, &got); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Fatalf("format: %v", err)
	}
}

func FuzzDecodeConsentState(f *testing.F) {
	for _, st := range sampleStates() {
		f.Add(encodeState(nil, &st))
	}
	f.Add([]byte(`{"signals":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st state
		if err := decodeState(b, &st); err != nil || b[0] != stateFormat {
			return
		}
		var again state
		if err := decodeState(encodeState(nil, &st), &again); err != nil || !reflect.DeepEqual(again, st) {
			t.Fatalf("re-encoded: %v\n%+v\n%+v", err, again, st)
		}
	})
}
