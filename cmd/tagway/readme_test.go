package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeCurlExample keeps the README true: its server-event curl example,
// with the key `make run` uses, is accepted by a running gateway, and a second
// send is reported as a duplicate, as the README says.
func TestReadmeCurlExample(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	block := regexp.MustCompile("(?s)### Send a server event\\s+```sh\\n(.*?)```").FindStringSubmatch(readme)
	if block == nil {
		t.Fatal("README has no server-event curl example")
	}
	body := regexp.MustCompile(`(?s)-d '(.*?)'`).FindStringSubmatch(block[1])
	key := regexp.MustCompile(`Bearer (\S+?)'`).FindStringSubmatch(block[1])
	url := regexp.MustCompile(`curl -s (\S+)`).FindStringSubmatch(block[1])
	if body == nil || key == nil || url == nil {
		t.Fatalf("cannot read the example:\n%s", block[1])
	}
	mk, _ := os.ReadFile("../../Makefile")
	if !strings.Contains(string(mk), "TAGWAY_DEMO_KEY ?= "+key[1]) {
		t.Fatalf("the README uses key %q but make run sets another", key[1])
	}
	if !strings.HasSuffix(url[1], "/v1/events") {
		t.Fatalf("example URL %q", url[1])
	}
	ep, stop, _ := startServe(t, t.TempDir(), map[string]string{"TAGWAY_DEMO_KEY": key[1]})
	defer stop()
	hdr := map[string]string{"Authorization": "Bearer " + key[1], "Content-Type": "application/json"}
	resp, ans := post(t, ep.public+"/v1/events", body[1], hdr)
	if resp.StatusCode != 200 || ans["accepted"] != 1.0 || ans["duplicates"] != 0.0 || len(ans["errors"].([]any)) != 0 {
		t.Fatalf("README example: %d %v", resp.StatusCode, ans)
	}
	resp, ans = post(t, ep.public+"/v1/events", body[1], hdr)
	if resp.StatusCode != 200 || ans["accepted"] != 0.0 || ans["duplicates"] != 1.0 {
		t.Fatalf("README example sent twice: %d %v", resp.StatusCode, ans)
	}
	// The browser example too.
	bb := regexp.MustCompile(`(?s)curl -s http://localhost:8080/e .*?-d '(.*?)'`).FindStringSubmatch(readme)
	if bb == nil {
		t.Fatal("README has no browser curl example")
	}
	resp, ans = post(t, ep.public+"/e", bb[1], map[string]string{"Content-Type": "text/plain"})
	if resp.StatusCode != 200 || ans["accepted"] != 1.0 {
		t.Fatalf("README browser example: %d %v", resp.StatusCode, ans)
	}
	// The consent example: the same beacon from France, without consent.
	fr := regexp.MustCompile(`(?s)curl -s http://localhost:8080/e -H 'CF-IPCountry: FR'.*?-d '(.*?)'`).FindStringSubmatch(readme)
	if fr == nil {
		t.Fatal("README has no consent example")
	}
	resp, ans = post(t, ep.public+"/e", fr[1], map[string]string{"Content-Type": "text/plain", "CF-IPCountry": "FR"})
	if resp.StatusCode != 200 || ans["accepted"] != 0.0 || ans["not_consented"] != 1.0 {
		t.Fatalf("README consent example: %d %v", resp.StatusCode, ans)
	}
}

// The README's destinations example loads (with its secrets in the
// environment) and names the three destinations.
func TestReadmeForwardingExampleLoads(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Forwarding\\n.*?```yaml\\n(.*?)```").FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatal("no yaml block under ## Forwarding")
	}
	c, err := loadFile(t, "sites: [{id: shop}]\n"+m[1], map[string]string{
		"TIKTOK_ACCESS_TOKEN": "t", "META_CAPI_TOKEN": "m", "CRM_WEBHOOK_SECRET": "s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Destinations) != 3 || c.Destinations[2].Events[1] != "Lead" || c.Destinations[1].EventMap["PlaceAnOrder"] != "Purchase" {
		t.Fatalf("destinations: %+v", c.Destinations)
	}
}
