package consent

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// fixture is one string made by the IAB's own encoder (testdata/gen, npm
// @iabtcf/core and @iabgpp/cmpapi) with the values it was made from.
type fixture struct {
	Name   string                     `json:"name"`
	String string                     `json:"string"`
	Expect map[string]json.RawMessage `json:"expect"`
}

func loadFixtures(t *testing.T, file string) []fixture {
	t.Helper()
	b, err := os.ReadFile("testdata/fixtures/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var fs []fixture
	if err := json.Unmarshal(b, &fs); err != nil {
		t.Fatal(err)
	}
	if len(fs) == 0 {
		t.Fatal("no fixtures")
	}
	return fs
}

// tcfContractKeys are the keys the consent issue fixes for the tcf object,
// plus the segments whose shape both sides share. Fixture key → ours.
var tcfContractKeys = map[string]string{
	"version": "version", "cmp_id": "cmp_id", "cmp_version": "cmp_version", "consent_screen": "consent_screen",
	"consent_language": "consent_language", "vendor_list_version": "vendor_list_version", "policy_version": "policy_version",
	"is_service_specific": "is_service_specific", "purpose_one_treatment": "purpose_one_treatment", "publisher_cc": "publisher_cc",
	"created": "created", "last_updated": "last_updated", "purposes_consent": "purposes_consent", "purposes_li": "purposes_li",
	"special_features": "special_features", "vendor_consent": "vendor_consent", "vendor_li": "vendor_li",
	"publisher_restrictions": "publisher_restrictions", "vendors_disclosed": "disclosed_vendors",
	"use_non_standard_stacks": "use_non_standard_texts",
}

// compareKeys checks every mapped fixture key against our JSON for it.
func compareKeys(t *testing.T, name string, expect map[string]json.RawMessage, got any, keys map[string]string) {
	t.Helper()
	raw, _ := json.Marshal(got)
	var ours map[string]json.RawMessage
	_ = json.Unmarshal(raw, &ours)
	for fk, want := range expect {
		ok, mapped := keys[fk]
		if !mapped {
			continue
		}
		var w, g any
		_ = json.Unmarshal(want, &w)
		if v, present := ours[ok]; present {
			_ = json.Unmarshal(v, &g)
		}
		if l, isList := w.([]any); isList && len(l) == 0 && g == nil {
			continue // an empty segment and an absent one say the same
		}
		if !reflect.DeepEqual(w, g) {
			t.Errorf("%s: %s = %s, want %s", name, ok, short(g), short(w))
		}
	}
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func TestTCFFixtures(t *testing.T) {
	for _, f := range loadFixtures(t, "tcf.json") {
		t.Run(f.Name, func(t *testing.T) {
			got, err := DecodeTCF(f.String)
			if err != nil {
				t.Fatalf("%s: %v", f.String, err)
			}
			compareKeys(t, f.Name, f.Expect, got, tcfContractKeys)
		})
	}
}

func TestGPPFixtures(t *testing.T) {
	for _, f := range loadFixtures(t, "gpp.json") {
		t.Run(f.Name, func(t *testing.T) {
			got, err := DecodeGPP(f.String)
			if err != nil {
				t.Fatalf("%s: %v", f.String, err)
			}
			var wantIDs []int
			_ = json.Unmarshal(f.Expect["section_ids"], &wantIDs)
			if !reflect.DeepEqual(got.SectionIDs, wantIDs) {
				t.Fatalf("section_ids = %v, want %v", got.SectionIDs, wantIDs)
			}
			var want map[string]map[string]json.RawMessage
			_ = json.Unmarshal(f.Expect["sections"], &want)
			if len(got.Sections) != len(want) {
				t.Errorf("%d sections decoded, want %d", len(got.Sections), len(want))
			}
			for name, exp := range want {
				sec, ok := got.Sections[name]
				if !ok {
					t.Errorf("section %s missing", name)
					continue
				}
				switch name {
				case "tcfeuv2":
					compareKeys(t, name, exp, sec, tcfContractKeys)
				case "tcfcav1": // no decoder: must say so, not pretend
					if m, ok := sec.(map[string]string); !ok || m["undecoded"] == "" {
						t.Errorf("tcfcav1 = %v, want it marked undecoded", sec)
					}
				default:
					keys := map[string]string{}
					for k := range exp {
						keys[k] = k
					}
					compareKeys(t, name, exp, sec, keys)
					// And nothing we add beyond the spec's fields.
					raw, _ := json.Marshal(sec)
					var ours map[string]any
					_ = json.Unmarshal(raw, &ours)
					for k := range ours {
						if _, ok := exp[k]; !ok {
							t.Errorf("%s: extra key %s", name, k)
						}
					}
				}
			}
		})
	}
}
