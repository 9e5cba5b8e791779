package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/segments"
)

func segmentsRun(t *testing.T, admin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"segments"}, args...), &out, &errOut, envFunc(map[string]string{"TAGWAY_ADMIN_URL": admin}))
	return out.String(), errOut.String(), err
}

// readDeltas reads everything on TW_AUDIENCE over NATS's TCP port.
func readDeltas(t *testing.T, natsURL string) []segments.Delta {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var out []segments.Delta
	if _, err := js.Stream(t.Context(), segments.AudienceStream); err != nil {
		return nil
	}
	for _, m := range bustest.ReadStream(t, js, segments.AudienceStream) {
		var d segments.Delta
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// waitDeltas waits until exactly want deltas are on tw.audience.
func waitDeltas(t *testing.T, natsURL string, want int) []segments.Delta {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := readDeltas(t, natsURL)
		if len(out) >= want || time.Now().After(deadline) {
			if len(out) != want {
				t.Fatalf("got %d deltas, want %d: %+v", len(out), want, out)
			}
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSegmentsEndToEnd runs `tagway serve` with its demo segments: a server
// AddToCart with an email becomes an add on tw.audience.cart_abandoners_7d
// carrying the hashed email; the CLI lists, explains and exports it; erasing
// the user publishes the remove and the segment is empty again.
func TestSegmentsEndToEnd(t *testing.T) {
	ep, _, _ := startServe(t, t.TempDir(), map[string]string{"TAGWAY_DEMO_KEY": "k"})
	resp, ans := post(t, ep.public+"/v1/events", `{"site":"demo","data":[
		{"event":"AddToCart","event_id":"c-1","user":{"email":"Shopper@Example.com"},"properties":{"value":20,"currency":"EUR"}},
		{"event":"PageView","event_id":"p-1","user":{"email":"Shopper@Example.com"}}]}`,
		map[string]string{"Authorization": "Bearer k", "Content-Type": "application/json"})
	if resp.StatusCode != 200 || ans["accepted"] != 2.0 {
		t.Fatalf("events: %v", ans)
	}
	email, _ := event.HashEmail("shopper@example.com")
	profile := event.ProfileID(&event.User{EmailSHA256: email})
	ds := waitDeltas(t, ep.nats, 2)
	got := map[string]segments.Delta{}
	for _, d := range ds {
		got[d.Segment] = d
	}
	if d := got["cart_abandoners_7d"]; d.Op != "add" || d.Profile != profile || d.Site != "demo" || d.Identifiers.EmailSHA256 != email || d.Reason != "event AddToCart,PageView" {
		t.Fatalf("cart delta: %+v", d)
	}
	if d := got["visitors_30d"]; d.Op != "add" || d.Profile != profile {
		t.Fatalf("visitors delta: %+v", d)
	}

	out, _, err := segmentsRun(t, ep.admin, "list")
	if err != nil || !regexpLine(out, `cart_abandoners_7d\s+1\s+0\s+no \(< 1000\)\s+20\d\d-`) || !regexpLine(out, `high_value_90d\s+0\s+0\s+no`) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _, err = segmentsRun(t, ep.admin, "explain", "--profile", "Shopper@Example.com")
	var xs []segments.Explanation
	if err != nil || json.Unmarshal([]byte(out), &xs) != nil || len(xs) != 1 || xs[0].Profile != profile {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	for _, m := range xs[0].Segments {
		want := m.Segment == "cart_abandoners_7d" || m.Segment == "visitors_30d"
		if m.Member != want || m.Tree.Holds != want {
			t.Fatalf("explain %s: %+v", m.Segment, m)
		}
	}
	if strings.Contains(strings.ToLower(out), "shopper@") {
		t.Fatal("the raw email travelled")
	}
	if !strings.Contains(out, `"condition": "AddToCart count >= 1 within 7d"`) || strings.Index(out, `"site"`) > strings.Index(out, `"segments"`) {
		t.Fatalf("explain is not readable (escaped conditions, or fields out of the server's order):\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "cart.csv")
	_, stderr, err := segmentsRun(t, ep.admin, "export", "cart_abandoners_7d", "--out", file)
	csv, _ := os.ReadFile(file)
	if err != nil || string(csv) != "Email_SHA256,Phone_SHA256\n"+email+",\n" || !strings.Contains(stderr, "1 members exported") {
		t.Fatalf("export: %v %q %q", err, csv, stderr)
	}
	out, _, err = segmentsRun(t, ep.admin, "export", "visitors_30d", "--format", "jsonl")
	if err != nil || !strings.Contains(out, `"email_sha256":"`+email+`"`) {
		t.Fatalf("jsonl export: %v %q", err, out)
	}
	if _, _, err := segmentsRun(t, ep.admin, "export", "no_such"); err == nil || !strings.Contains(err.Error(), `"no_such": no such segment`) {
		t.Fatalf("unknown segment: %v", err)
	}

	if out, err := userRun(t, ep.admin, "erase", "Shopper@Example.com"); err != nil || !strings.Contains(out, `"segments"`) {
		t.Fatalf("erase: %v %s", err, out)
	}
	ds = waitDeltas(t, ep.nats, 4)
	for _, d := range ds[2:] {
		if d.Op != "remove" || d.Reason != "erased" || d.Profile != profile {
			t.Fatalf("after erase: %+v", d)
		}
	}
	out, _, _ = segmentsRun(t, ep.admin, "list", "--json")
	var l []segments.Summary
	if json.Unmarshal([]byte(out), &l) != nil || len(l) != 4 || l[0].Members != 0 {
		t.Fatalf("list after erase: %s", out)
	}
	_, _, err = segmentsRun(t, ep.admin, "explain", profile)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("explain after erase: %v", err)
	}
}

func regexpLine(s, re string) bool {
	for _, l := range strings.Split(s, "\n") {
		if ok, _ := regexpMatch(re, l); ok {
			return true
		}
	}
	return false
}

func regexpMatch(re, s string) (bool, error) { return regexp.MatchString(re, s) }
