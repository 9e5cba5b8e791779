package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/event"
)

// fixtureTCF returns a TCF string the IAB's encoder made (consent/testdata).
func fixtureTCF(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../consent/testdata/fixtures/tcf.json")
	if err != nil {
		t.Fatal(err)
	}
	var fs []struct{ Name, String string }
	_ = json.Unmarshal(b, &fs)
	for _, f := range fs {
		if f.Name == name {
			return f.String
		}
	}
	t.Fatalf("no fixture %s", name)
	return ""
}

// TestConsentEnforcedEndToEnd is the consent issue's acceptance 3.
func TestConsentEnforcedEndToEnd(t *testing.T) {
	// Measurement here needs purposes 1 and 2 so the IAB-made fixtures fit:
	// tcf_publisher_restrictions grants 1-4 (service-specific, policy 4);
	// tcf_pubrestr_range_spans_gvl_gap grants only 2 (a withdrawal of 1).
	cfg := filepath.Join(t.TempDir(), "tagway.yaml")
	_ = os.WriteFile(cfg, []byte(`sites: [{id: shop}]
trusted_proxies: ["127.0.0.1/32"]
consent:
  geo: {country_header: CF-IPCountry, region_header: X-Region}
  default_regime: opt-in
  policy:
    measurement: {purposes: [1], any_purposes: [2]}
    segments: {purposes: [1, 3, 4], opt_outs: [sharing, targeted_advertising, gpc]}
`), 0o600)
	ep, stop, _ := startServe(t, t.TempDir(), map[string]string{"TAGWAY_DEMO_KEY": "k"}, "--config", cfg)
	defer stop()
	const cookie = "_tw_id=0123456789abcdef0123456789abcdef"
	send := func(tcf, id string) map[string]any {
		body := `{"site":"shop","data":[{"event":"PageView","event_id":"` + id + `"}]}`
		if tcf != "" {
			body = `{"site":"shop","consent":{"tcf":"` + tcf + `"},"data":[{"event":"PageView","event_id":"` + id + `"}]}`
		}
		resp, ans := post(t, ep.public+"/e", body, map[string]string{"Content-Type": "text/plain", "Cookie": cookie, "CF-IPCountry": "FR"})
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", id, resp.StatusCode, ans)
		}
		return ans
	}
	if a := send("", "no-consent"); a["accepted"] != 0.0 || a["not_consented"] != 1.0 {
		t.Fatalf("no consent from FR: %v", a)
	}
	if a := send(fixtureTCF(t, "tcf_publisher_restrictions"), "consented"); a["accepted"] != 1.0 {
		t.Fatalf("with TCF consent: %v", a)
	}
	if a := send(fixtureTCF(t, "tcf_pubrestr_range_spans_gvl_gap"), "withdrawn"); a["accepted"] != 0.0 || a["not_consented"] != 1.0 {
		t.Fatalf("after withdrawal: %v", a)
	}
	nc, err := nats.Connect(ep.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	msgs := bustest.ReadStream(t, js, bus.EventsStream)
	if len(msgs) != 1 {
		t.Fatalf("TW_EVENTS holds %d events, want only the consented one", len(msgs))
	}
	var env event.Envelope
	_ = json.Unmarshal(msgs[0].Data, &env)
	if env.EventID != "consented" || !env.Consent.Decided || env.Consent.Jurisdiction != "FR" || env.Consent.AuditID == "" ||
		!strings.Contains(strings.Join(env.Consent.Allowed, ","), "segments") {
		t.Fatalf("stored envelope: %+v", env.Consent)
	}

	changes := bustest.ReadStream(t, js, bus.ConsentStream)
	if len(changes) != 2 {
		t.Fatalf("%d consent changes on tw.consent.shop, want 2 (granted, withdrawn; no signal is no state)", len(changes))
	}
	var last consent.Change
	_ = json.Unmarshal(changes[1].Data, &last)
	if changes[1].Subject != "tw.consent.shop" || last.Profile != "a:0123456789abcdef0123456789abcdef" || len(last.Allowed) != 0 || last.Denied["measurement"] == "" {
		t.Fatalf("withdrawal message: %s %+v", changes[1].Subject, last)
	}
	var granted consent.Change
	_ = json.Unmarshal(changes[0].Data, &granted)
	if granted.AuditID != env.Consent.AuditID {
		t.Fatalf("the envelope's audit id %s is not the grant's %s", env.Consent.AuditID, granted.AuditID)
	}

	// The audit log holds the three states for the profile, the grant under
	// the id the envelope carries, and verifies.
	out, err := auditRun(t, ep.admin, "query", "--profile", "a:0123456789abcdef0123456789abcdef", "--site", "shop")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"id":"`+env.Consent.AuditID+`"`) || !strings.Contains(lines[0], `"tcf":"`) {
		t.Fatalf("audit query: %s", out)
	}
	if out, err := auditRun(t, ep.admin, "verify"); err != nil || !strings.HasPrefix(out, "audit log ok: 3 records") {
		t.Fatalf("verify: %q %v", out, err) // policy + 2 consent records
	}
}
