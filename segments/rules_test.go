package segments

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// Invalid rules stop start-up with the segment and the field named.
func TestCompileErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ rules, want string }{
		{`[{include: {event: PageView, within: 7d}}]`, "segments.rules[0].name: required"},
		{`[{name: "a b", include: {event: PageView, within: 7d}}]`, `segments.rules[0].name: "a b" must be`},
		{`[{name: a, include: {event: PageView, within: 7d}}, {name: a, include: {event: Lead, within: 7d}}]`, `segments.rules[1].name: duplicate segment "a"`},
		{`[{name: a}]`, "segments.rules[0].include: required"},
		{`[{name: a, include: {event: PageView}}]`, "segments.rules[0].include.within: required"},
		{`[{name: a, include: {event: PageView, within: 181d}}]`, "segments.rules[0].include.within: 181d is longer than the 180d lookback"},
		{`[{name: a, include: {event: PageView, within: 30s}}]`, "segments.rules[0].include.within: 30s is shorter than a minute"},
		{`[{name: a, include: {event: "Page View", within: 7d}}]`, `segments.rules[0].include.event: "Page View" is not an event name`},
		{`[{name: a, include: {all: [{event: PageView, within: 7d}, {event: Lead}]}}]`, "segments.rules[0].include.all[1].within: required"},
		{`[{name: a, include: {all: []}}]`, "segments.rules[0].include.all: needs at least one condition"},
		{`[{name: a, include: {event: PageView, within: 7d, country: DE}}]`, "segments.rules[0].include: give exactly one of"},
		{`[{name: a, include: {country: DE, within: 7d}}]`, "segments.rules[0].include.within: only with event"},
		{`[{name: a, include: {event: PageView, within: 7d}, exclude: {not: {event: Lead, within: 7d, where: "value ~ 3"}}}]`, `segments.rules[0].exclude.not.where: "value ~ 3" must be "FIELD OP VALUE"`},
		{`[{name: a, include: {event: PageView, within: 7d, where: ["page.url contains /x", "value > lots"]}}]`, `segments.rules[0].include.where[1]: "value > lots": > needs a number`},
		{`[{name: a, include: {event: ViewContent, within: 7d, where: "contents.content_id in sku-1"}}]`, "in needs a list such as [a, b]"},
		{`[{name: a, include: {event: PageView, within: 7d, count: "< 3"}}]`, `segments.rules[0].include.count: "< 3" must be ">= N"`},
		{`[{name: a, include: {event: PageView, within: 7d, count: ">= 2.5"}}]`, `segments.rules[0].include.count: ">= 2.5"`},
		{`[{name: a, include: {event: CompletePayment, within: 7d, sum: "value"}}]`, `segments.rules[0].include.sum: "value" must be "FIELD >= X"`},
		{`[{name: a, include: {event: PageView, within: 7d, count: 2, sum: "value >= 1"}}]`, "segments.rules[0].include: give count or sum, not both"},
		{`[{name: a, include: {event: PageView, within: 7d, top_percent: 100}}]`, "segments.rules[0].include.top_percent: must be between 0 and 100"},
		{`[{name: a, include: {event: PageView, within: 7d, top_percent: 10, metric: "avg(x)"}}]`, `segments.rules[0].include.metric: "avg(x)" must be count or sum(FIELD)`},
		{`[{name: a, include: {event: PageView, within: 7d, metric: count}}]`, "segments.rules[0].include.metric: only with top_percent"},
		{`[{name: a, include: {country: [DE, Germany]}}]`, `segments.rules[0].include.country: "GERMANY" is not an ISO 3166-1 alpha-2 code`},
		{`[{name: a, include: {has: fax}}]`, `segments.rules[0].include.has: "fax" must be email, phone or external_id`},
		{`[{name: a, control_group: 60, include: {has: email}}]`, "segments.rules[0].control_group: must be a percentage from 0 to 50"},
		{`[{name: a, min_size: -1, include: {has: email}}]`, "segments.rules[0].min_size: must be positive"},
		{`[{name: a, target_cap: -5, include: {has: email}}]`, "segments.rules[0].target_cap: must be positive"},
		{`[{name: a, use: "Ads!", include: {has: email}}]`, `segments.rules[0].use: "Ads!" is not a consent use name`},
		{`[{name: a, include: {all: [{event: EngagementTime, within: 7d, top_percent: 10}, {event: PageView, within: 7d, top_percent: 5}]}}]`, "segments.rules[0].include.all[1].top_percent: one top_percent per segment"},
	} {
		cfg := parseRules(t, "rules: "+tc.rules)
		_, err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.rules, err, tc.want)
		}
	}
	for _, w := range []string{"10ms", "31d"} {
		cfg := parseRules(t, "audience: {duplicate_window: "+w+"}\nrules: [{name: a, include: {has: email}}]")
		if _, err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "segments.audience.duplicate_window:") {
			t.Errorf("duplicate_window %s: %v", w, err)
		}
	}
}

func TestWherePredicates(t *testing.T) {
	env := func(props, url string) *fields {
		f := &fields{env: genEnvelope(props, url)}
		return f
	}
	for _, tc := range []struct {
		pred, props, url string
		want             bool
	}{
		{"page.url contains /pricing", "", "https://x/pricing?a=1", true},
		{"page.url contains /pricing", "", "https://x/about", false},
		{"page.url starts_with https://x/p", "", "https://x/pricing", true},
		{"page.url ends_with .pdf", "", "https://x/a.pdf", true},
		{"percent >= 75", `{"percent":75}`, "", true},
		{"percent >= 75", `{"percent":74.9}`, "", false},
		{"percent > 75", `{"percent":75}`, "", false},
		{"value < 10", `{"value":"9.5"}`, "", true},
		{"value <= 10", `{}`, "", false},
		{"contents.content_id in [sku-1, sku-2]", `{"contents":[{"content_id":"sku-9"},{"content_id":"sku-2"}]}`, "", true},
		{"contents.content_id in [sku-1, sku-2]", `{"contents":[{"content_id":"sku-9"}]}`, "", false},
		{"contents.content_id not_in [sku-1]", `{"contents":[{"content_id":"sku-9"}]}`, "", true},
		{"contents.content_id not_in [sku-1]", `{"contents":[{"content_id":"sku-1"}]}`, "", false},
		{"content_type == product", `{"content_type":"product"}`, "", true},
		{"content_type != product", `{"content_type":"product"}`, "", false},
		{"content_type != product", `{}`, "", true},
		{"quantity == 2", `{"contents":[{"quantity":2.0}]}`, "", false},
		{"contents.quantity == 2", `{"contents":[{"quantity":2.0}]}`, "", true},
		{"source == browser", "", "", true},
		{"properties.order_id = A-1", `{"order_id":"A-1"}`, "", true},
	} {
		p, err := parsePred(tc.pred)
		if err != nil {
			t.Fatalf("%s: %v", tc.pred, err)
		}
		if got := p.match(env(tc.props, tc.url)); got != tc.want {
			t.Errorf("%s on %s %s = %v, want %v", tc.pred, tc.props, tc.url, got, tc.want)
		}
	}
}

// FuzzDecodeState: stored bytes (either version) never panic the decoder,
// and whatever decodes encodes to bytes that decode and encode to the same
// bytes again.
func FuzzDecodeState(f *testing.F) {
	prog, _ := Compile(nil)
	s := &state{site: "s", id: "a:x", seq: 9, firstSeen: 5, email: "e", aliases: []string{"ax"}, uses: []string{"segments"},
		streams: map[uint32][]entry{1: {{sec: 100, count: 2, sum: 3.5}}}, members: []string{"m"}, trans: map[string]uint32{"m": 1},
		metrics: map[string]float64{"t": 2}}
	f.Add(s.encode(nil, prog))
	for _, g := range goldenStates() {
		f.Add(g.encode(nil, prog))
	}
	if b, err := os.ReadFile("testdata/state-v1.hex"); err == nil {
		for _, line := range strings.Fields(string(b)) {
			if v1, err := hex.DecodeString(line); err == nil {
				f.Add(v1)
			}
		}
	}
	f.Add([]byte{1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState("s", "a:x", b)
		if err != nil {
			return
		}
		enc := st.encode(nil, prog)
		again, err := decodeState("s", "a:x", enc)
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if !bytes.Equal(again.encode(nil, prog), enc) {
			t.Fatalf("round trip changed the state")
		}
	})
}

// FuzzParsePred: rule text never panics the predicate parser.
func FuzzParsePred(f *testing.F) {
	for _, s := range []string{"page.url contains /pricing", "contents.content_id in [a, b]", "value >= 5", "x ~ y", "", "a in [", ">= 3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePred(s)
		if err == nil {
			p.match(&fields{env: genEnvelope(`{"value":1,"contents":[{"content_id":"a"}]}`, "https://x/")})
		}
		_, _, _ = parseAtLeast(s)
	})
}
