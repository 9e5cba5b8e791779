package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagway/tagway/forward/forwardtest"
	"github.com/tagway/tagway/gateway/event"
)

func forwardRun(t *testing.T, admin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"forward"}, append(args, "--admin", admin)...), &out, &errOut, envFunc(nil))
	return out.String(), errOut.String(), err
}

// TestForwardEndToEnd runs `tagway serve` with a TikTok destination pointed
// at the fake Events API: the browser copy of a purchase (cookie, click id,
// user agent) and the backend's copy (hashed email) become one TikTok event
// carrying all of them, after the hold. A purchase TikTok refuses lands in
// the dead letters (`tagway forward dead`), and `tagway forward replay`
// delivers it once the fake accepts again.
func TestForwardEndToEnd(t *testing.T) {
	tt := forwardtest.NewTikTok(t, "tt-secret-token", "CPIX1")
	dir := t.TempDir()
	sum := sha256.Sum256([]byte("fw-key"))
	cfg := filepath.Join(dir, "tagway.yaml")
	if err := os.WriteFile(cfg, []byte(`
sites: [{id: shop, origins: ["https://shop.example"]}]
sources: [{name: backend, key_sha256: "`+hex.EncodeToString(sum[:])+`", sites: [shop]}]
consent: {default_regime: none}
dedup: {merge_window: 1s}
destinations:
  - {name: tiktok, type: tiktok, base_url: "`+tt.URL()+`", pixel_code: CPIX1, access_token_env: TT_TOKEN,
     min_backoff: 100ms, max_backoff: 1s, linger: 50ms}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ep, _, stderr := startServe(t, filepath.Join(dir, "data"), map[string]string{"TT_TOKEN": "tt-secret-token"}, "--config", cfg)
	browser := map[string]string{"Content-Type": "text/plain", "Origin": "https://shop.example", "User-Agent": "Mozilla/5.0 (e2e)"}
	resp, ans := post(t, ep.public+"/e", `{"site":"shop","data":[{"event":"CompletePayment","event_id":"ord-1","user":{"ttclid":"click-1"},
		"properties":{"value":10,"currency":"EUR"}}]}`, browser)
	if resp.StatusCode != 200 || ans["accepted"] != 1.0 {
		t.Fatalf("browser: %d %v", resp.StatusCode, ans)
	}
	server := map[string]string{"Authorization": "Bearer fw-key", "Content-Type": "application/json"}
	resp, ans = post(t, ep.public+"/v1/events", `{"site":"shop","data":[{"event":"CompletePayment","event_id":"ord-1",
		"user":{"email":"Buyer@Example.com"},"properties":{"value":10,"currency":"EUR"}}]}`, server)
	if resp.StatusCode != 200 || ans["duplicates"] != 1.0 {
		t.Fatalf("server copy: %d %v", resp.StatusCode, ans)
	}
	if !tt.WaitEventIDs(1, 20*time.Second) {
		t.Fatalf("TikTok got %v", tt.EventIDs())
	}
	var got map[string]any
	for _, r := range tt.Log() {
		if r.Accepted() && strings.Contains(string(r.Body), "ord-1") {
			got = decodeJSON(t, r.Body)
		}
	}
	ev := got["data"].([]any)[0].(map[string]any)
	user := ev["user"].(map[string]any)
	email, _ := event.HashEmail("buyer@example.com")
	if ev["event"] != "Purchase" || !strings.Contains(fmtAny(user["email"]), email) || user["ttclid"] != "click-1" || user["user_agent"] != "Mozilla/5.0 (e2e)" {
		t.Fatalf("the TikTok event lacks what the two copies carried: %v", ev)
	}
	if tt.EventIDs()["ord-1"] != 1 {
		t.Fatalf("ord-1 sent %d times", tt.EventIDs()["ord-1"])
	}

	// A refusal: dead letter, then replay.
	tt.RejectEvents(func(id string) bool { return id == "ord-2" })
	resp, _ = post(t, ep.public+"/v1/events", `{"site":"shop","data":[{"event":"CompletePayment","event_id":"ord-2","user":{"email":"b2@example.com"}}]}`, server)
	if resp.StatusCode != 200 {
		t.Fatal("ord-2 refused")
	}
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		out, _, err = forwardRun(t, ep.admin, "dead", "--dest", "tiktok")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "ord-2") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "ord-2") || !strings.Contains(out, "40002") {
		t.Fatalf("forward dead:\n%s", out)
	}
	tt.Accept()
	out, _, err := forwardRun(t, ep.admin, "replay", "--dest", "tiktok", "--since", "1h")
	if err != nil || !strings.HasPrefix(out, "1 dead letters of tiktok sent again") {
		t.Fatalf("replay: %v %q", err, out)
	}
	if !tt.WaitEventIDs(2, 20*time.Second) || tt.EventIDs()["ord-2"] != 1 {
		t.Fatalf("after the replay TikTok has %v", tt.EventIDs())
	}
	if out, _, _ := forwardRun(t, ep.admin, "replay", "--dest", "tiktok"); !strings.HasPrefix(out, "0 dead letters") {
		t.Fatalf("a second replay: %q", out)
	}
	if _, _, err := forwardRun(t, ep.admin, "dead", "--dest", "nope"); err == nil || !strings.Contains(err.Error(), "no such destination") {
		t.Fatalf("unknown destination: %v", err)
	}
	if strings.Contains(stderr.String(), "tt-secret-token") {
		t.Fatal("the access token reached the log")
	}
}

func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return m
}

func fmtAny(v any) string { return fmt.Sprint(v) }

// TestForwardConsentWithdrawalEndToEnd is the forward issue's acceptance 4
// through the real consent engine: a Californian's purchase is accepted
// with forwarding allowed, then, during its hold, the same browser sends
// Global Privacy Control: the purchase is not delivered, and the skip is in
// the audit log. Another visitor's purchase in the same run is delivered.
func TestForwardConsentWithdrawalEndToEnd(t *testing.T) {
	tt := forwardtest.NewTikTok(t, "tok", "CPIX2")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tagway.yaml")
	if err := os.WriteFile(cfg, []byte(`
sites: [{id: shop, origins: ["https://shop.example"]}]
trusted_proxies: ["127.0.0.1/32"]
consent: {default_regime: opt-in, geo: {country_header: CF-IPCountry, region_header: X-Region}}
destinations:
  - {name: tiktok, type: tiktok, base_url: "`+tt.URL()+`", pixel_code: CPIX2, access_token_env: TT_TOKEN, hold: 2s, linger: 50ms}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ep, _, _ := startServe(t, filepath.Join(dir, "data"), map[string]string{"TT_TOKEN": "tok"}, "--config", cfg)
	const withdrawer, keeper = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	browser := func(cookie string, gpc bool) map[string]string {
		h := map[string]string{"Content-Type": "text/plain", "Origin": "https://shop.example", "Cookie": "_tw_id=" + cookie,
			"CF-IPCountry": "US", "X-Region": "CA", "User-Agent": "Mozilla/5.0 (e2e)"}
		if gpc {
			h["Sec-GPC"] = "1"
		}
		return h
	}
	for _, c := range []struct{ cookie, id string }{{withdrawer, "w-1"}, {keeper, "k-1"}} {
		resp, ans := post(t, ep.public+"/e", `{"site":"shop","data":[{"event":"CompletePayment","event_id":"`+c.id+`","properties":{"value":5,"currency":"USD"}}]}`, browser(c.cookie, false))
		if resp.StatusCode != 200 || ans["accepted"] != 1.0 {
			t.Fatalf("purchase %s: %v", c.id, ans)
		}
	}
	resp, ans := post(t, ep.public+"/e", `{"site":"shop","data":[{"event":"PageView","event_id":"w-2"}]}`, browser(withdrawer, true))
	if resp.StatusCode != 200 {
		t.Fatalf("GPC page view: %v", ans)
	}
	if !tt.WaitEventIDs(1, 20*time.Second) {
		t.Fatal("the other visitor's purchase was not delivered")
	}
	profile := event.ProfileID(&event.User{AnonID: withdrawer})
	var audit string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(audit, "forward_skip") && time.Now().Before(deadline) {
		r, err := http.Get(ep.admin + "/admin/audit/query?profile=" + profile)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		audit = string(b)
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(audit, "forward_skip") || !strings.Contains(audit, "w-1") {
		t.Fatalf("no forward_skip audit record for the withdrawn purchase:\n%s", audit)
	}
	time.Sleep(500 * time.Millisecond)
	if ids := tt.EventIDs(); ids["w-1"] != 0 || ids["k-1"] != 1 {
		t.Fatalf("TikTok got %v: the withdrawn purchase was delivered", ids)
	}
}
