package forward

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
)

type catalogGolden struct {
	CatalogVersion string `json:"catalog_version"`
	MapEvent       []struct {
		Kind      Kind              `json:"kind"`
		Event     string            `json:"event"`
		Overrides map[string]string `json:"overrides"`
		Want      string            `json:"want"`
		Standard  bool              `json:"standard"`
		Note      string            `json:"note"`
	} `json:"map_event"`
	Canonical []struct {
		Event string `json:"event"`
		Want  string `json:"want"`
	} `json:"canonical"`
}

func loadCatalogGolden(t *testing.T) catalogGolden {
	t.Helper()
	b, err := os.ReadFile("testdata/events.json")
	if err != nil {
		t.Fatal(err)
	}
	var g catalogGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("testdata/events.json: %v", err)
	}
	return g
}

// TestMapEventGolden drives testdata/events.json: every standard event of
// both catalogues, the legacy names, custom names and overrides.
func TestMapEventGolden(t *testing.T) {
	g := loadCatalogGolden(t)
	if g.CatalogVersion != CatalogVersion {
		t.Fatalf("testdata/events.json is for catalogue %q, code is %q: review the table", g.CatalogVersion, CatalogVersion)
	}
	for _, c := range g.MapEvent {
		got, std := MapEvent(c.Kind, c.Event, c.Overrides)
		if got != c.Want || std != c.Standard {
			t.Errorf("MapEvent(%s, %q, %v) = %q, %v; want %q, %v (%s)", c.Kind, c.Event, c.Overrides, got, std, c.Want, c.Standard, c.Note)
		}
	}
	for _, c := range g.Canonical {
		if got := Canonical(c.Event); got != c.Want {
			t.Errorf("Canonical(%q) = %q, want %q", c.Event, got, c.Want)
		}
	}
}

// TestMapEventGoldenCoversCatalogue keeps the table honest: each standard
// event of each kind, and each default event, has a row without overrides.
func TestMapEventGoldenCoversCatalogue(t *testing.T) {
	g := loadCatalogGolden(t)
	covered := map[Kind]map[string]bool{}
	for _, c := range g.MapEvent {
		if c.Overrides != nil {
			continue
		}
		if covered[c.Kind] == nil {
			covered[c.Kind] = map[string]bool{}
		}
		covered[c.Kind][c.Event] = true
	}
	for _, k := range []Kind{KindTikTok, KindMeta} {
		for _, e := range append(StandardEvents(k), DefaultEvents...) {
			if !covered[k][e] {
				t.Errorf("testdata/events.json has no %s row for %q", k, e)
			}
		}
	}
}

func TestStandardEvents(t *testing.T) {
	tt := StandardEvents(KindTikTok)
	for _, e := range []string{"Purchase", "Lead", "ApplicationApproval", "StartTrial", "SubmitApplication", "PlaceAnOrder", "ClickButton"} {
		if !slices.Contains(tt, e) {
			t.Errorf("TikTok standard events lack %s", e)
		}
	}
	for _, e := range []string{"CompletePayment", "SubmitForm"} {
		if slices.Contains(tt, e) {
			t.Errorf("TikTok standard events list the renamed %s", e)
		}
	}
	if !slices.IsSorted(tt) {
		t.Error("not sorted")
	}
	m := StandardEvents(KindMeta)
	if len(m) != 18 || slices.Contains(m, "PlaceAnOrder") {
		t.Errorf("Meta standard events = %v", m)
	}
	w := StandardEvents(KindWebhook)
	if !slices.Contains(w, "Donate") || !slices.Contains(w, "Download") {
		t.Errorf("webhook union = %v", w)
	}
	if StandardEvents("fax") != nil {
		t.Error("unknown kind has standard events")
	}
	// The returned slice is a copy.
	tt[0] = "x"
	if StandardEvents(KindTikTok)[0] == "x" {
		t.Error("StandardEvents shares its slice")
	}
}

func TestSelects(t *testing.T) {
	cases := []struct {
		events []string
		name   string
		want   bool
	}{
		{[]string{"CompletePayment"}, "Purchase", true},
		{[]string{"Purchase"}, "CompletePayment", true},
		{[]string{"Lead"}, "SubmitForm", true},
		{[]string{"CompletePayment"}, "PlaceAnOrder", false},
		{nil, "Purchase", true},
		{nil, "PlaceAnOrder", true},
		{nil, "SubmitForm", true},
		{nil, "Search", false},
		{[]string{}, "AddToCart", true},
		{[]string{"Search"}, "Search", true},
		{[]string{"Search"}, "search", false},
	}
	for _, c := range cases {
		if got := Selects(c.events, c.name); got != c.want {
			t.Errorf("Selects(%v, %q) = %v, want %v", c.events, c.name, got, c.want)
		}
	}
}

// Every default event maps to a TikTok standard event; the renamed ones
// map to TikTok's current names.
func TestDefaultEventsAreStandard(t *testing.T) {
	for _, e := range DefaultEvents {
		if Canonical(e) != e {
			t.Errorf("default event %q is not canonical", e)
		}
		if _, std := MapEvent(KindTikTok, e, nil); !std {
			t.Errorf("default event %q is not a TikTok standard event", e)
		}
	}
}
