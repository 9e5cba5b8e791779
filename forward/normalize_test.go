package forward

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tagway/tagway/gateway/event"
)

type normVector struct {
	Profile    string `json:"profile"`
	Field      string `json:"field"`
	Raw        string `json:"raw"`
	Normalized string `json:"normalized"`
	SHA256     string `json:"sha256"`
	Error      string `json:"error"`
	Source     string `json:"source"`
}

func loadVectors(t testing.TB) []normVector {
	t.Helper()
	b, err := os.ReadFile("testdata/normalize_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []normVector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("testdata/normalize_vectors.json: %v", err)
	}
	return f.Vectors
}

func fieldFunc(p NormProfile, field string) func(string) (string, error) {
	switch field {
	case "email":
		return p.Email
	case "phone":
		return p.Phone
	case "external_id":
		return p.ExternalID
	}
	return nil
}

var vectorErrors = map[string]error{
	"email":       event.ErrEmail,
	"phone":       event.ErrPhone,
	"external_id": event.ErrExternalID,
	"hashed":      ErrHashed,
	"unsupported": ErrUnsupported,
}

// TestNormalizeVectors drives testdata/normalize_vectors.json: raw value →
// normalised value → SHA-256, per profile and field.
func TestNormalizeVectors(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range loadVectors(t) {
		p, ok := Profile(v.Profile)
		if !ok {
			t.Errorf("unknown profile %q", v.Profile)
			continue
		}
		fn := fieldFunc(p, v.Field)
		if fn == nil {
			t.Errorf("unknown field %q", v.Field)
			continue
		}
		seen[v.Profile+" "+v.Field] = true
		got, err := fn(v.Raw)
		if v.Error != "" {
			if want := vectorErrors[v.Error]; !errors.Is(err, want) || got != "" {
				t.Errorf("%s %s(%q) = %q, %v; want error %v", v.Profile, v.Field, v.Raw, got, err, want)
			}
			continue
		}
		if err != nil || got != v.Normalized {
			t.Errorf("%s %s(%q) = %q, %v; want %q", v.Profile, v.Field, v.Raw, got, err, v.Normalized)
			continue
		}
		if h := Hash(got); h != v.SHA256 {
			t.Errorf("%s %s(%q): Hash = %s, want %s", v.Profile, v.Field, v.Raw, h, v.SHA256)
		}
	}
	for _, p := range Profiles() {
		for _, f := range []string{"email", "phone", "external_id"} {
			if !seen[p.Name+" "+f] {
				t.Errorf("no vector for %s %s", p.Name, f)
			}
		}
	}
}

// The table in normalize.go says which envelope hash each profile matches;
// check it against gateway/event's hashing on every valid vector.
func TestProfilesMatchEnvelopeHashes(t *testing.T) {
	envHash := map[string]func(string) (string, error){
		"email":       event.HashEmail,
		"phone":       event.HashPhone,
		"external_id": event.HashExternalID,
	}
	matches := map[string]bool{
		ProfileTikTokEvents + " email":             true,
		ProfileTikTokEvents + " phone":             false,
		ProfileTikTokEvents + " external_id":       true,
		ProfileTikTokCustomerFile + " phone":       true,
		ProfileMetaCAPI + " email":                 true,
		ProfileMetaCAPI + " phone":                 true,
		ProfileMetaCAPI + " external_id":           true,
		ProfileTikTokCustomerFile + " email (tag)": false,
	}
	for _, v := range loadVectors(t) {
		if v.Error != "" {
			continue
		}
		key := v.Profile + " " + v.Field
		if v.Profile == ProfileTikTokCustomerFile && v.Field == "email" {
			if !strings.Contains(v.Raw, "+") {
				continue // without a tag the two agree; nothing to learn
			}
			key += " (tag)"
		}
		want, ok := matches[key]
		if !ok {
			t.Errorf("no expectation for %s", key)
			continue
		}
		e, err := envHash[v.Field](v.Raw)
		if err != nil {
			t.Errorf("event hash of %s %q: %v", v.Field, v.Raw, err)
			continue
		}
		if got := e == v.SHA256; got != want {
			t.Errorf("%s %q: envelope hash matches profile = %v, want %v", key, v.Raw, got, want)
		}
	}
}

func TestProfileLookup(t *testing.T) {
	if _, ok := Profile("tiktok-events/v1"); ok {
		t.Error("unknown profile found")
	}
	ps := Profiles()
	if len(ps) != 3 || ps[0].Name != ProfileMetaCAPI || ps[2].Name != ProfileTikTokEvents {
		t.Errorf("Profiles() = %v", names(ps))
	}
	for k, want := range map[Kind]string{KindTikTok: ProfileTikTokEvents, KindMeta: ProfileMetaCAPI} {
		if p, ok := EventProfile(k); !ok || p.Name != want {
			t.Errorf("EventProfile(%s) = %s, %v", k, p.Name, ok)
		}
	}
	if _, ok := EventProfile(KindWebhook); ok {
		t.Error("webhook has an event profile")
	}
	for _, p := range ps {
		if p.Email == nil || p.Phone == nil || p.ExternalID == nil {
			t.Errorf("%s has a nil function", p.Name)
		}
	}
}

func names(ps []NormProfile) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name)
	}
	return s
}

// FuzzProfiles: no profile panics, and a value it accepts is stable (its
// normalised form normalises to itself).
func FuzzProfiles(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.Raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range Profiles() {
			for _, fn := range []func(string) (string, error){p.Email, p.Phone, p.ExternalID} {
				n, err := fn(raw)
				if err != nil {
					if n != "" {
						t.Fatalf("%s: value with error", p.Name)
					}
					continue
				}
				if n == "" {
					t.Fatalf("%s: empty value without error for %q", p.Name, raw)
				}
				if n2, err := fn(n); err != nil || n2 != n {
					t.Fatalf("%s: %q normalises to %q, then to %q, %v", p.Name, raw, n, n2, err)
				}
			}
		}
	})
}
