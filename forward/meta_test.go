package forward

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/tagway/tagway/gateway/event"
)

func TestMetaEventEdgeCases(t *testing.T) {
	cases := []struct {
		name    string
		mod     func(*event.Envelope)
		ids     Hashed
		check   func(t *testing.T, m map[string]any)
		dropped []string
	}{
		{
			name: "browser event with page and user agent is website",
			check: func(t *testing.T, m map[string]any) {
				if m["action_source"] != "website" || m["event_source_url"] != "https://shop.example/thanks" {
					t.Errorf("action_source %v, url %v", m["action_source"], m["event_source_url"])
				}
				if m["event_time"] != float64(1767225600) {
					t.Errorf("event_time = %v", m["event_time"])
				}
			},
		},
		{
			name: "server event without page is other, without event_source_url",
			mod:  func(e *event.Envelope) { e.Source, e.Page = event.SourceServer, event.Page{} },
			check: func(t *testing.T, m map[string]any) {
				if m["action_source"] != "other" {
					t.Errorf("action_source = %v", m["action_source"])
				}
				if _, ok := m["event_source_url"]; ok {
					t.Error("event_source_url present")
				}
			},
		},
		{
			name: "page without user agent is not website (Meta requires client_user_agent)",
			mod:  func(e *event.Envelope) { e.User.UserAgent = "" },
			check: func(t *testing.T, m map[string]any) {
				if m["action_source"] != "other" {
					t.Errorf("action_source = %v", m["action_source"])
				}
			},
		},
		{
			name: "sender's action_source wins",
			mod:  func(e *event.Envelope) { e.Properties = []byte(`{"action_source":"physical_store"}`) },
			check: func(t *testing.T, m map[string]any) {
				if m["action_source"] != "physical_store" {
					t.Errorf("action_source = %v", m["action_source"])
				}
				if _, ok := m["event_source_url"]; ok {
					t.Error("event_source_url sent for a store event")
				}
			},
		},
		{
			name:    "unknown action_source is dropped",
			mod:     func(e *event.Envelope) { e.Properties = []byte(`{"action_source":"fax"}`) },
			dropped: []string{"properties.action_source"},
			check: func(t *testing.T, m map[string]any) {
				if m["action_source"] != "website" {
					t.Errorf("action_source = %v", m["action_source"])
				}
			},
		},
		{
			name: "identifiers are one-element arrays, envelope hashes used",
			check: func(t *testing.T, m map[string]any) {
				u := m["user_data"].(map[string]any)
				if em := u["em"].([]any); len(em) != 1 || em[0] != Hash("jane.doe@example.com") {
					t.Errorf("em = %v", u["em"])
				}
				if ph := u["ph"].([]any); len(ph) != 1 || ph[0] != Hash("12133734253") {
					t.Errorf("ph = %v", u["ph"])
				}
				if _, ok := u["external_id"]; ok {
					t.Error("external_id present without one")
				}
			},
		},
		{
			name: "no identifiers at all: user_data is an empty object",
			mod:  func(e *event.Envelope) { e.User = event.User{} },
			check: func(t *testing.T, m map[string]any) {
				if u, ok := m["user_data"].(map[string]any); !ok || len(u) != 0 {
					t.Errorf("user_data = %v", m["user_data"])
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
			name: "content without an id is left out for Meta; content_ids follow contents",
			mod: func(e *event.Envelope) {
				e.Properties = []byte(`{"contents":[{"content_name":"mystery","price":3},{"id":"B","quantity":2}]}`)
			},
			dropped: []string{"properties.contents[0]"},
			check: func(t *testing.T, m map[string]any) {
				cd := m["custom_data"].(map[string]any)
				c := cd["contents"].([]any)
				if len(c) != 1 || c[0].(map[string]any)["id"] != "B" || c[0].(map[string]any)["quantity"] != float64(2) {
					t.Errorf("contents = %v", c)
				}
				if ids := cd["content_ids"].([]any); len(ids) != 1 || ids[0] != "B" {
					t.Errorf("content_ids = %v", ids)
				}
			},
		},
		{
			name: "sender's content_ids are kept as given",
			mod: func(e *event.Envelope) {
				e.Properties = []byte(`{"content_ids":["X",42],"contents":[{"content_id":"A"}]}`)
			},
			check: func(t *testing.T, m map[string]any) {
				ids := m["custom_data"].(map[string]any)["content_ids"].([]any)
				if len(ids) != 2 || ids[0] != "X" || ids[1] != "42" {
					t.Errorf("content_ids = %v", ids)
				}
			},
		},
		{
			name:    "malformed properties: custom_data left out, event sent",
			mod:     func(e *event.Envelope) { e.Properties = []byte(`"not an object"`) },
			dropped: []string{"properties"},
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m["custom_data"]; ok {
					t.Error("custom_data present")
				}
				if m["event_name"] != "Purchase" {
					t.Errorf("event_name = %v", m["event_name"])
				}
			},
		},
		{
			name: "query becomes search_string",
			mod:  func(e *event.Envelope) { e.Properties = []byte(`{"query":"socks"}`) },
			check: func(t *testing.T, m map[string]any) {
				if cd := m["custom_data"].(map[string]any); cd["search_string"] != "socks" || len(cd) != 1 {
					t.Errorf("custom_data = %v", cd)
				}
			},
		},
		{
			name: "fbc and fbp passed through",
			mod:  func(e *event.Envelope) { e.User.FBC, e.User.FBP = "fb.1.1.abc", "fb.1.1.123" },
			check: func(t *testing.T, m map[string]any) {
				u := m["user_data"].(map[string]any)
				if u["fbc"] != "fb.1.1.abc" || u["fbp"] != "fb.1.1.123" || u["client_ip_address"] != "203.0.113.0" || u["client_user_agent"] != "UA/1.0" {
					t.Errorf("user_data = %v", u)
				}
			},
		},
		{
			name:    "bad destination hash is dropped, not replaced by the envelope's",
			ids:     Hashed{Email: "jane@example.com"},
			dropped: []string{"user.email"},
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m["user_data"].(map[string]any)["em"]; ok {
					t.Error("em present")
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
			b, err := MetaEvent(env, "Purchase", c.ids)
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
			if err != nil && !errors.Is(err, ErrDropped) {
				t.Errorf("err = %v", err)
			}
			if c.check != nil {
				c.check(t, decode(t, b))
			}
		})
	}
}

func TestMetaRequest(t *testing.T) {
	a, _ := MetaEvent(testEnvelope(), "Purchase", Hashed{})
	b := MetaRequest([][]byte{a}, "TEST4242")
	var req struct {
		Data          []json.RawMessage `json:"data"`
		TestEventCode string            `json:"test_event_code"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if len(req.Data) != 1 || req.TestEventCode != "TEST4242" {
		t.Errorf("request = %s", b)
	}
	if got := string(MetaRequest(nil, "")); got != `{"data":[]}` {
		t.Errorf("empty request = %s", got)
	}
}

// FuzzMetaEvent: any properties give a valid JSON payload (or a clean
// error), never a panic.
func FuzzMetaEvent(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, props []byte) {
		env := testEnvelope()
		env.Properties = props
		b, err := MetaEvent(env, "Purchase", Hashed{})
		if b == nil {
			t.Fatalf("no payload: %v", err)
		}
		if err != nil && !errors.Is(err, ErrDropped) {
			t.Fatalf("unexpected error: %v", err)
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %s", b)
		}
		if !json.Valid(MetaRequest([][]byte{b, b}, "T")) {
			t.Fatal("invalid request")
		}
	})
}

func BenchmarkMetaEvent(b *testing.B) {
	g, env := benchGolden(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MetaEvent(&env, "Purchase", g.Hashed.Meta); err != nil {
			b.Fatal(err)
		}
	}
}
