package forward

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tagway/tagway/gateway/event"
)

var update = flag.Bool("update", false, "rewrite the expected payloads in testdata/payloads")

// payloadGolden is one testdata/payloads/<event>.json: an input envelope,
// the destination hashes the gateway would have computed, and the expected
// TikTok and Meta data[] elements (with the drop report, if any).
type payloadGolden struct {
	Comment  string          `json:"comment,omitempty"`
	Envelope json.RawMessage `json:"envelope"`
	Hashed   struct {
		TikTok Hashed `json:"tiktok"`
		Meta   Hashed `json:"meta"`
	} `json:"hashed"`
	TikTok      json.RawMessage `json:"tiktok,omitempty"`
	TikTokError string          `json:"tiktok_error,omitempty"`
	Meta        json.RawMessage `json:"meta,omitempty"`
	MetaError   string          `json:"meta_error,omitempty"`
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestPayloadGolden drives testdata/payloads: for each file, the envelope
// goes through MapEvent and TikTokEvent / MetaEvent, and the output must
// equal the stored JSON byte for byte (after indenting both). Run with
// -update to rewrite the expectations, then review the diff.
func TestPayloadGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/payloads/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden payloads: %v", err)
	}
	covered := map[string]bool{}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var g payloadGolden
			if err := json.Unmarshal(raw, &g); err != nil {
				t.Fatal(err)
			}
			var env event.Envelope
			if err := json.Unmarshal(g.Envelope, &env); err != nil {
				t.Fatal(err)
			}
			covered[env.Event] = true

			ttName, _ := MapEvent(KindTikTok, env.Event, nil)
			tt, ttErr := TikTokEvent(&env, ttName, g.Hashed.TikTok)
			metaName, _ := MapEvent(KindMeta, env.Event, nil)
			mt, mtErr := MetaEvent(&env, metaName, g.Hashed.Meta)
			for _, e := range []error{ttErr, mtErr} {
				if e != nil && !errors.Is(e, ErrDropped) {
					t.Fatalf("unexpected error: %v", e)
				}
			}
			if *update {
				g.TikTok, g.TikTokError = tt, errString(ttErr)
				g.Meta, g.MetaError = mt, errString(mtErr)
				out, err := json.MarshalIndent(&g, "", " ")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, append(out, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			equalJSON(t, "tiktok", tt, g.TikTok)
			equalJSON(t, "meta", mt, g.Meta)
			if got := errString(ttErr); got != g.TikTokError {
				t.Errorf("tiktok error = %q, want %q", got, g.TikTokError)
			}
			if got := errString(mtErr); got != g.MetaError {
				t.Errorf("meta error = %q, want %q", got, g.MetaError)
			}
		})
	}
	// One file per standard event of either catalogue and per legacy name.
	for _, e := range append(append(StandardEvents(KindTikTok), StandardEvents(KindMeta)...), tiktokLegacy...) {
		if !covered[e] {
			t.Errorf("testdata/payloads has no envelope for %s", e)
		}
	}
}

// equalJSON compares two JSON documents byte for byte after indenting, so
// field order is checked too.
func equalJSON(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w bytes.Buffer
	if err := json.Indent(&g, got, "", " "); err != nil {
		t.Fatalf("%s: output is not JSON: %v\n%s", what, err, got)
	}
	if err := json.Indent(&w, want, "", " "); err != nil {
		t.Fatalf("%s: expectation is not JSON: %v", what, err)
	}
	if g.String() != w.String() {
		t.Errorf("%s payload differs\n got: %s\nwant: %s", what, g.String(), w.String())
	}
}

// testEnvelope is a small valid envelope for the table tests.
func testEnvelope() *event.Envelope {
	return &event.Envelope{
		ID: "0194a1b2c3d400000000000000000001", EventID: "ev-1", Site: "shop",
		Source: event.SourceBrowser, Event: "CompletePayment",
		EventTime: 1767225600999, ReceivedAt: 1767225601500,
		User: event.User{
			EmailSHA256: Hash("jane.doe@example.com"), PhoneSHA256: Hash("12133734253"),
			IP: "203.0.113.0", UserAgent: "UA/1.0",
		},
		Page: event.Page{URL: "https://shop.example/thanks"},
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, b)
	}
	return m
}

func droppedFields(err error) []string {
	var de *DroppedError
	if !errors.As(err, &de) {
		return nil
	}
	var out []string
	for _, f := range de.Fields {
		out = append(out, f.Field)
	}
	return out
}

func TestTikTokEventEdgeCases(t *testing.T) {
	phone := Hash("+12133734253")
	cases := []struct {
		name    string
		mod     func(*event.Envelope)
		ids     Hashed
		check   func(t *testing.T, m map[string]any)
		dropped []string
	}{
		{
			name: "milliseconds become seconds, floored",
			check: func(t *testing.T, m map[string]any) {
				if m["event_time"] != float64(1767225600) {
					t.Errorf("event_time = %v", m["event_time"])
				}
			},
		},
		{
			name: "missing event time falls back to received_at",
			mod:  func(e *event.Envelope) { e.EventTime = 0 },
			check: func(t *testing.T, m map[string]any) {
				if m["event_time"] != float64(1767225601) {
					t.Errorf("event_time = %v", m["event_time"])
				}
			},
		},
		{
			name: "no identifiers at all: user is an empty object",
			mod:  func(e *event.Envelope) { e.User = event.User{} },
			check: func(t *testing.T, m map[string]any) {
				if u, ok := m["user"].(map[string]any); !ok || len(u) != 0 {
					t.Errorf("user = %v", m["user"])
				}
			},
		},
		{
			name: "missing event_id is left out",
			mod:  func(e *event.Envelope) { e.EventID = "" },
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m["event_id"]; ok {
					t.Error("event_id present")
				}
			},
		},
		{
			name: "envelope phone hash (no +) is never sent to TikTok",
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m["user"].(map[string]any)["phone"]; ok {
					t.Error("phone sent without a tiktok-events/v2 hash")
				}
			},
		},
		{
			name: "destination hashes win; uppercase hex is lowered",
			ids:  Hashed{Phone: strings.ToUpper(phone), Email: Hash("other@example.com")},
			check: func(t *testing.T, m map[string]any) {
				u := m["user"].(map[string]any)
				if u["phone"] != phone || u["email"] != Hash("other@example.com") {
					t.Errorf("user = %v", u)
				}
			},
		},
		{
			name:    "a destination hash that is not a hash is dropped",
			ids:     Hashed{Phone: "+12133734253"},
			dropped: []string{"user.phone"},
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m["user"].(map[string]any)["phone"]; ok {
					t.Error("raw phone sent")
				}
			},
		},
		{
			name: "value not a number, contents not an array",
			mod: func(e *event.Envelope) {
				e.Properties = []byte(`{"value":"12.50","contents":{"content_id":"x"},"currency":"usd"}`)
			},
			dropped: []string{"properties.contents", "properties.value"},
			check: func(t *testing.T, m map[string]any) {
				p := m["properties"].(map[string]any)
				if len(p) != 1 || p["currency"] != "USD" {
					t.Errorf("properties = %v", p)
				}
			},
		},
		{
			name:    "properties not an object: all dropped, event still sent",
			mod:     func(e *event.Envelope) { e.Properties = []byte(`[1,2,3]`) },
			dropped: []string{"properties"},
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m["properties"]; ok {
					t.Error("properties present")
				}
				if m["event"] != "Purchase" {
					t.Errorf("event = %v", m["event"])
				}
			},
		},
		{
			name:    "properties not JSON",
			mod:     func(e *event.Envelope) { e.Properties = []byte(`{"value":`) },
			dropped: []string{"properties"},
		},
		{
			name: "bad content fields cost only themselves",
			mod: func(e *event.Envelope) {
				e.Properties = []byte(`{"contents":[{"content_id":"a","quantity":1.5,"price":-1},"nope",{"content_id":7,"quantity":2.0,"content_type":"socks"},{}],"content_type":"sku","currency":"DOLLARS","order_id":{"x":1},"query":5}`)
			},
			dropped: []string{
				"properties.contents[0].quantity", "properties.contents[0].price", "properties.contents[1]",
				"properties.contents[2].content_type", "properties.content_type", "properties.currency",
				"properties.order_id", "properties.query",
			},
			check: func(t *testing.T, m map[string]any) {
				c := m["properties"].(map[string]any)["contents"].([]any)
				if len(c) != 2 || c[0].(map[string]any)["content_id"] != "a" || c[1].(map[string]any)["content_id"] != "7" || c[1].(map[string]any)["quantity"] != float64(2) {
					t.Errorf("contents = %v", c)
				}
			},
		},
		{
			name: "null properties and null values are absent",
			mod:  func(e *event.Envelope) { e.Properties = []byte(`{"value":null,"contents":null,"query":null}`) },
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m["properties"]; ok {
					t.Errorf("properties = %v", m["properties"])
				}
			},
		},
		{
			name: "search_string stands in for query; unknown keys are not sent",
			mod:  func(e *event.Envelope) { e.Properties = []byte(`{"search_string":"socks","secret_note":"x"}`) },
			check: func(t *testing.T, m map[string]any) {
				p := m["properties"].(map[string]any)
				if len(p) != 1 || p["query"] != "socks" {
					t.Errorf("properties = %v", p)
				}
			},
		},
		{
			name: "no page: page left out",
			mod:  func(e *event.Envelope) { e.Page = event.Page{} },
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m["page"]; ok {
					t.Error("page present")
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := testEnvelope()
			if c.mod != nil {
				c.mod(env)
			}
			b, err := TikTokEvent(env, "Purchase", c.ids)
			if b == nil {
				t.Fatalf("no payload: %v", err)
			}
			got := droppedFields(err)
			slices.Sort(got)
			want := slices.Clone(c.dropped)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("dropped %v, want %v (err %v)", got, want, err)
			}
			if (err != nil) != (len(c.dropped) > 0) || err != nil && !errors.Is(err, ErrDropped) {
				t.Errorf("err = %v", err)
			}
			m := decode(t, b)
			if c.check != nil {
				c.check(t, m)
			}
		})
	}
}

func TestEventBuildersRefuseUnusableEnvelopes(t *testing.T) {
	noTime := testEnvelope()
	noTime.EventTime, noTime.ReceivedAt = 0, 0
	for _, c := range []struct {
		name string
		env  *event.Envelope
		ev   string
	}{
		{"nil envelope", nil, "Purchase"},
		{"empty name", testEnvelope(), ""},
		{"no time", noTime, "Purchase"},
	} {
		for kind, fn := range map[string]func(*event.Envelope, string, Hashed) ([]byte, error){"tiktok": TikTokEvent, "meta": MetaEvent} {
			b, err := fn(c.env, c.ev, Hashed{})
			if b != nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %s: %s, %v", kind, c.name, b, err)
			}
		}
	}
}

func TestDroppedErrorMessage(t *testing.T) {
	env := testEnvelope()
	env.Properties = []byte(`{"value":"secret-looking-value"}`)
	_, err := TikTokEvent(env, "Purchase", Hashed{})
	if err == nil || strings.Contains(err.Error(), "secret-looking-value") {
		t.Fatalf("error %q must name the field, not the value", err)
	}
	if !strings.Contains(err.Error(), "properties.value") {
		t.Errorf("error %q does not name the field", err)
	}
}

func TestTikTokRequest(t *testing.T) {
	a, _ := TikTokEvent(testEnvelope(), "Purchase", Hashed{})
	b := TikTokRequest("", "CXXXXPIXEL", "TEST123", [][]byte{a, a})
	var req struct {
		EventSource   string            `json:"event_source"`
		EventSourceID string            `json:"event_source_id"`
		TestEventCode string            `json:"test_event_code"`
		Data          []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if req.EventSource != "web" || req.EventSourceID != "CXXXXPIXEL" || req.TestEventCode != "TEST123" || len(req.Data) != 2 {
		t.Errorf("request = %s", b)
	}
	empty := TikTokRequest("web", `pix"el`, "", nil)
	if string(empty) != `{"event_source":"web","event_source_id":"pix\"el","data":[]}` {
		t.Errorf("empty request = %s", empty)
	}
}

func fuzzSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/payloads/*.json")
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var g struct {
			Envelope struct {
				Properties json.RawMessage `json:"properties"`
			} `json:"envelope"`
		}
		if err := json.Unmarshal(raw, &g); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(g.Envelope.Properties))
	}
	for _, s := range []string{
		``, `null`, `[]`, `"x"`, `{"value":"1"}`, `{"contents":{}}`, `{"contents":[null,1,"a",[]]}`,
		`{"value":1e400}`, `{"value":-0}`, `{"contents":[{"quantity":1e10,"price":"3"}]}`,
		`{"content_ids":[1,"a",null,{}]}`, `{"currency":"€€€"}`, "{\"query\":\"\xff\xfe\"}", `{"value":1,"value":"x"}`,
		`{"order_id":-1.5e-3}`, `{"contents":[{"content_id":""}]}`, ` { } `, `{"action_source":"website"}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzTikTokEvent: any properties give a valid JSON payload (or a clean
// error), never a panic.
func FuzzTikTokEvent(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, props []byte) {
		env := testEnvelope()
		env.Properties = props
		b, err := TikTokEvent(env, "Purchase", Hashed{})
		if b == nil {
			t.Fatalf("no payload: %v", err)
		}
		if err != nil && !errors.Is(err, ErrDropped) {
			t.Fatalf("unexpected error: %v", err)
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %s", b)
		}
		if !json.Valid(TikTokRequest("web", "P", "", [][]byte{b})) {
			t.Fatal("invalid request")
		}
	})
}

// benchGolden loads the CompletePayment golden the payload benchmarks use.
func benchGolden(b *testing.B) (payloadGolden, event.Envelope) {
	b.Helper()
	raw, err := os.ReadFile("testdata/payloads/CompletePayment.json")
	if err != nil {
		b.Fatal(err)
	}
	var g payloadGolden
	var env event.Envelope
	if err := json.Unmarshal(raw, &g); err != nil {
		b.Fatal(err)
	}
	if err := json.Unmarshal(g.Envelope, &env); err != nil {
		b.Fatal(err)
	}
	return g, env
}

func BenchmarkTikTokEvent(b *testing.B) {
	g, env := benchGolden(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TikTokEvent(&env, "Purchase", g.Hashed.TikTok); err != nil {
			b.Fatal(err)
		}
	}
}
