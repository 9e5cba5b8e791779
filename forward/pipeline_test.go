package forward

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tagway/tagway/forward/forwardtest"
	"github.com/tagway/tagway/gateway/event"
)

// acceptedEvents returns every data[] element the fake accepted, by event_id.
func acceptedEvents(t *testing.T, log []forwardtest.Request) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, r := range log {
		if !r.Accepted() {
			continue
		}
		var body struct {
			Data []map[string]any `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("accepted body does not decode: %v", err)
		}
		for _, e := range body.Data {
			id, _ := e["event_id"].(string)
			out[id] = e
		}
	}
	return out
}

// A held conversion is sent once to every destination that wants it and
// whose forward use consent allows, with the identifiers the other copy
// brought during the hold; a page view is not a conversion.
func TestForwardsConversionsWithMergedIdentifiers(t *testing.T) {
	p := newPipe(t)
	email := forwardtest.SHA256Hex("jane@example.com")
	sent := time.Now()
	p.publish(conv{name: "CompletePayment", id: "o1", anon: "b1"})
	// The server copy's hashed email arrives during the hold.
	p.link(event.IdentityLink{Profile: "a:b1", Event: "CompletePayment", EventID: "o1", Aliases: map[string]string{event.AliasEmail: email}})
	p.publish(conv{name: "PageView", id: "pv1", anon: "b1"})
	p.publish(conv{name: "Purchase", id: "o2", anon: "b2", allowed: []string{"forward:meta"}}) // TikTok's 2025 name
	p.publish(conv{name: "AddToCart", id: "c1", anon: "b3", allowed: []string{"measurement"}})
	waitFor(t, 10*time.Second, "deliveries", func() bool {
		return p.tiktok.EventIDs()["o1"] == 1 && p.meta.EventIDs()["o1"] == 1 && p.meta.EventIDs()["o2"] == 1 && p.hook.count("o1") == 1
	})
	time.Sleep(500 * time.Millisecond) // anything more would show now
	if got := p.tiktok.EventIDs(); len(got) != 1 {
		t.Fatalf("tiktok got %v, want only o1", got)
	}
	if got := p.meta.EventIDs(); len(got) != 2 {
		t.Fatalf("meta got %v, want o1 and o2", got)
	}
	if p.hook.count("pv1") != 0 || p.hook.count("c1") != 0 || p.hook.count("o2") != 0 {
		t.Fatal("the webhook got an event it should not")
	}
	tt := acceptedEvents(t, p.tiktok.Log())["o1"]
	user, _ := tt["user"].(map[string]any)
	if tt["event"] != "Purchase" || fmt.Sprint(user["email"]) != email && fmt.Sprint(user["email"]) != "["+email+"]" || user["user_agent"] == nil {
		t.Fatalf("tiktok event: %v", tt)
	}
	if tt["event_time"].(float64) > 1e11 {
		t.Fatalf("event_time %v is not in seconds", tt["event_time"])
	}
	mt := acceptedEvents(t, p.meta.Log())["o1"]
	ud, _ := mt["user_data"].(map[string]any)
	if mt["event_name"] != "Purchase" || !strings.Contains(fmt.Sprint(ud["em"]), email) {
		t.Fatalf("meta event: %v", mt)
	}
	// The hold: nothing was sent before it ended.
	for _, r := range p.tiktok.Log() {
		if r.Time.Sub(sent) < 300*time.Millisecond {
			t.Fatalf("a request %s after the conversion, before its 300ms hold ended", r.Time.Sub(sent))
		}
	}
}

// A server copy's profile is keyed by the email; the visitor withdraws in
// the browser, whose state is keyed by the cookie. The re-check follows the
// cookie the hold brought (Tw-Profiles) and skips the conversion.
func TestWithdrawalOnTheCookieProfileStopsTheServerCopy(t *testing.T) {
	p := newPipe(t)
	email := forwardtest.SHA256Hex("late@example.com")
	p.publish(conv{name: "CompletePayment", id: "s1", email: email, source: event.SourceServer})
	p.link(event.IdentityLink{Profile: "e:" + email[:32], Event: "CompletePayment", EventID: "s1",
		Aliases: map[string]string{event.AliasAnonID: "b9"}})
	p.consent.set("a:b9", "forward:tiktok", false)
	waitFor(t, 10*time.Second, "meta and the webhook", func() bool { return p.meta.EventIDs()["s1"] == 1 && p.hook.count("s1") == 1 })
	time.Sleep(500 * time.Millisecond)
	if n := p.tiktok.EventIDs()["s1"]; n != 0 {
		t.Fatalf("TikTok got s1 %d times after the cookie profile withdrew", n)
	}
	p.consent.mu.Lock()
	defer p.consent.mu.Unlock()
	if len(p.consent.skipped) != 1 || p.consent.skipped[0] != "tiktok|s1" {
		t.Fatalf("audited skips: %v", p.consent.skipped)
	}
}

// A property value that cannot be sent is left out, the conversion still
// goes, and the drop is counted per destination.
func TestUnusablePropertiesAreDroppedAndCounted(t *testing.T) {
	p := newPipe(t)
	p.publish(conv{name: "CompletePayment", id: "d1", anon: "b1", props: `{"value":"lots","currency":"EUR"}`})
	p.publish(conv{name: "CompletePayment", id: "d2", anon: "b2"})
	waitFor(t, 10*time.Second, "deliveries", func() bool { return p.tiktok.EventIDs()["d1"] == 1 && p.tiktok.EventIDs()["d2"] == 1 })
	if n := p.metric("tagway_forward_payloads_with_dropped_fields_total", "destination", "tiktok"); n != 1 {
		t.Fatalf("dropped-field payloads for tiktok: %v, want 1", n)
	}
	if props, _ := acceptedEvents(t, p.tiktok.Log())["d1"]["properties"].(map[string]any); props["value"] != nil || props["currency"] != "EUR" {
		t.Fatalf("d1 properties: %v", props)
	}
}
