package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/gateway/event"
)

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func TestBrowserBatchCookieAndIdentity(t *testing.T) {
	tg := startGateway(t, func(c *Config) { c.TrustedProxies = []string{"127.0.0.1/32"} })
	body := `{"site":"shop",
		"user":{"email":"  Jane.Doe@Example.COM ","phone":"+1 (555) 123-4567","ttclid":"E.C.P.abc"},
		"consent":{"usp":"1YNN","tcf":"CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"},
		"data":[
			{"event":"PageView","event_id":"b1","page":{"url":"https://shop.example/p?x=1","referrer":"https://www.tiktok.com/","title":"Shoes"}},
			{"event":"AddToCart","event_id":"b2","user":{"external_id":"cust-9"},"consent":{"usp":"1YYN"},"properties":{"value":20,"currency":"USD"}},
			{"event":"Lead","user":{"phone":"call me"}}
		]}`
	resp, a := tg.postBrowser(t, body, map[string]string{
		"Origin": "https://shop.example", "Sec-GPC": "1", "User-Agent": "Mozilla/5.0 test",
		"X-Forwarded-For": "198.51.100.23, 127.0.0.1", "X-Forwarded-Proto": "https",
	})
	if resp.StatusCode != 200 || a.Accepted != 3 {
		t.Fatalf("status %d %+v", resp.StatusCode, a)
	}
	if len(a.Warnings) != 1 || a.Warnings[0].Field != "data[2].user.phone" {
		t.Fatalf("warnings = %+v, want the unusable phone of data[2]", a.Warnings)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://shop.example" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("CORS headers: %q", got)
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			ck = c
		}
	}
	if ck == nil {
		t.Fatal("no _tw_id cookie set")
	}
	if !event.IsAnonID(ck.Value) || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Domain != "shop.example" || ck.MaxAge != 396*24*3600 || ck.Path != "/" {
		t.Fatalf("cookie attributes wrong: %+v", ck)
	}

	envs, msgs := tg.envelopes(t)
	if len(envs) != 3 {
		t.Fatalf("%d envelopes", len(envs))
	}
	for i, m := range msgs {
		e := envs[i]
		if m.Subject != "tw.events.shop."+e.Event {
			t.Errorf("subject %s for %s", m.Subject, e.Event)
		}
		if got := m.Header.Get("Nats-Msg-Id"); got != "shop|"+e.Event+"|"+e.EventID {
			t.Errorf("Nats-Msg-Id = %q", got)
		}
		// Probes that cannot turn up in the envelope's random hex ids by
		// chance ("555" alone did, in about 2 % of runs).
		for _, raw := range []string{"Jane", "jane.doe", "5551234567", "(555)", "cust-9", "198.51.100.23"} {
			if bytes.Contains(bytes.ToLower(m.Data), bytes.ToLower([]byte(raw))) {
				t.Errorf("envelope %d carries raw %q: %s", i, raw, m.Data)
			}
		}
		if e.Source != event.SourceBrowser || e.User.AnonID != ck.Value || e.Profile != "a:"+ck.Value {
			t.Errorf("identity: %+v profile %s", e.User, e.Profile)
		}
		if e.User.IP != "198.51.100.0" || e.User.UserAgent != "Mozilla/5.0 test" {
			t.Errorf("ip/ua from request: %q %q", e.User.IP, e.User.UserAgent)
		}
		if !e.Consent.Signals.GPC || e.Consent.Decided {
			t.Errorf("consent: %+v", e.Consent)
		}
		if e.User.EmailSHA256 != sha("jane.doe@example.com") || e.User.TTCLID != "E.C.P.abc" {
			t.Errorf("batch-level user not applied: %+v", e.User)
		}
	}
	if envs[0].User.PhoneSHA256 != sha("15551234567") || envs[2].User.PhoneSHA256 != "" {
		t.Errorf("phones: %q %q", envs[0].User.PhoneSHA256, envs[2].User.PhoneSHA256)
	}
	if envs[1].User.ExternalIDSHA256 != sha("cust-9") {
		t.Error("event-level external_id not hashed")
	}
	if envs[0].Consent.Signals.USP != "1YNN" || envs[1].Consent.Signals.USP != "1YYN" || envs[1].Consent.Signals.TCF == "" {
		t.Errorf("consent merge: %+v / %+v", envs[0].Consent.Signals, envs[1].Consent.Signals)
	}
	if envs[0].Page.Title != "Shoes" || envs[0].Page.Referrer != "https://www.tiktok.com/" {
		t.Errorf("page: %+v", envs[0].Page)
	}
	if !envs[2].EventIDAssigned || envs[2].EventID != envs[2].ID {
		t.Error("browser event without event_id was not given one")
	}

	// The same browser keeps its id: the cookie is read back and refreshed.
	resp, _ = tg.postBrowser(t, `{"site":"shop","data":[{"event":"PageView"}]}`, map[string]string{"Cookie": CookieName + "=" + ck.Value})
	if c := resp.Cookies(); len(c) != 1 || c[0].Value != ck.Value {
		t.Fatalf("cookie not kept: %+v", c)
	}
	// Without a trusted proxy the Secure flag follows the real scheme (http).
	resp, _ = startGateway(t, nil).postBrowser(t, `{"site":"shop","data":[{"event":"PageView"}]}`, map[string]string{"X-Forwarded-Proto": "https"})
	if c := resp.Cookies(); len(c) != 1 || c[0].Secure {
		t.Fatalf("untrusted X-Forwarded-Proto made the cookie Secure: %+v", c)
	}
}

func TestBrowserCORSAndContentTypes(t *testing.T) {
	tg := startGateway(t, nil)
	ev := `{"site":"shop","data":[{"event":"PageView"}]}`
	if resp, a := tg.postBrowser(t, ev, map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != 403 || a.Error.Code != "origin_not_allowed" {
		t.Fatalf("foreign origin: %d %+v", resp.StatusCode, a.Error)
	}
	// Site "other" has no origins: only same-origin pages may post.
	host := strings.TrimPrefix(tg.url, "http://")
	if resp, _ := tg.postBrowser(t, `{"site":"other","data":[{"event":"PageView"}]}`, map[string]string{"Origin": "http://" + host}); resp.StatusCode != 200 {
		t.Fatalf("same origin refused: %d", resp.StatusCode)
	}
	if resp, _ := tg.postBrowser(t, `{"site":"other","data":[{"event":"PageView"}]}`, map[string]string{"Origin": "https://shop.example"}); resp.StatusCode != 403 {
		t.Fatalf("other site accepted shop's origin: %d", resp.StatusCode)
	}
	if resp, a := tg.postBrowser(t, `{"site":"nope","data":[{"event":"PageView"}]}`, nil); resp.StatusCode != 400 || a.Error.Code != "unknown_site" || a.Error.Field != "site" {
		t.Fatalf("unknown site: %d %+v", resp.StatusCode, a.Error)
	}
	for ct, want := range map[string]int{"application/json": 200, "text/plain;charset=UTF-8": 200, "application/x-www-form-urlencoded": 415, "multipart/form-data": 415} {
		if resp, _ := tg.postBrowser(t, ev, map[string]string{"Content-Type": ct}); resp.StatusCode != want {
			t.Errorf("Content-Type %s: %d, want %d", ct, resp.StatusCode, want)
		}
	}
	req, _ := http.NewRequest("OPTIONS", tg.url+"/e", nil)
	req.Header.Set("Origin", "https://shop.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, _ := tg.do(t, req)
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	req.Header.Set("Origin", "https://evil.example")
	if resp, _ := tg.do(t, req); resp.StatusCode != 403 {
		t.Fatalf("preflight from a foreign origin: %d", resp.StatusCode)
	}
	tooMany := `{"site":"shop","data":[` + strings.TrimSuffix(strings.Repeat(`{"event":"PageView"},`, 51), ",") + `]}`
	if resp, a := tg.postBrowser(t, tooMany, nil); resp.StatusCode != 413 || a.Error.Code != "batch_too_large" {
		t.Fatalf("51 browser events: %d %+v", resp.StatusCode, a.Error)
	}
	big := `{"site":"shop","data":[{"event":"PageView","properties":{"x":"` + strings.Repeat("a", 64<<10) + `"}}]}`
	if resp, a := tg.postBrowser(t, big, nil); resp.StatusCode != 413 || a.Error.Code != "body_too_large" {
		t.Fatalf("65 KiB browser body: %d %+v", resp.StatusCode, a.Error)
	}
	if resp, _ := tg.do(t, mustReq("GET", tg.url+"/e")); resp.StatusCode != 405 || resp.Header.Get("Allow") == "" {
		t.Fatalf("GET /e: %d", resp.StatusCode)
	}
	for _, p := range []string{"/nope", "/demo", "/demo/events"} { // no demo page outside demo mode
		if resp, _ := tg.do(t, mustReq("GET", tg.url+p)); resp.StatusCode != 404 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
}

func mustReq(method, url string) *http.Request {
	r, _ := http.NewRequest(method, url, nil)
	return r
}

func TestPixel(t *testing.T) {
	tg := startGateway(t, nil)
	get := func(q string, hdr map[string]string) *http.Response {
		req := mustReq("GET", tg.url+"/p.gif?"+q)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get("site=shop&event=ViewContent&event_id=px1&value=12.5&currency=EUR&content_id=sku-9&p.color=red&usp=1YNN&gpp=DBABLA~BVQqAAAAAgA.QA&gpp_sid=7&gpc=1",
		map[string]string{"Referer": "https://shop.example/item/9"})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || !bytes.Equal(body, transparentGIF) {
		t.Fatalf("pixel answer: %d %s %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	if len(resp.Cookies()) != 1 {
		t.Fatal("pixel did not set the cookie")
	}
	resp = get("site=shop&event=ViewContent&value=abc&currency=EUR", nil)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(resp.Header.Get("X-Tagway-Error"), "data[0].properties.value") {
		t.Fatalf("bad pixel value: %d %q", resp.StatusCode, resp.Header.Get("X-Tagway-Error"))
	}
	resp = get("site=nope&event=PageView", nil)
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "image/gif" || resp.Header.Get("X-Tagway-Error") != "unknown_site" {
		t.Fatalf("unknown site pixel: %d %v", resp.StatusCode, resp.Header)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 1 {
		t.Fatalf("%d envelopes", len(envs))
	}
	e := envs[0]
	if e.EventID != "px1" || e.Page.URL != "https://shop.example/item/9" || e.Consent.Signals.USP != "1YNN" || !e.Consent.Signals.GPC ||
		len(e.Consent.Signals.GPPSID) != 1 || e.Consent.Signals.GPPSID[0] != 7 {
		t.Fatalf("pixel envelope: %+v", e)
	}
	if p := string(e.Properties); !strings.Contains(p, `"value":12.5`) || !strings.Contains(p, `"color":"red"`) || !strings.Contains(p, `"content_id":"sku-9"`) {
		t.Fatalf("pixel properties: %s", p)
	}
}

func TestRateLimits(t *testing.T) {
	tg := startGateway(t, func(c *Config) {
		c.Limits.IPRate = &Rate{RPS: 0.001, Burst: 2}
		c.Sources[0].RateLimit = Rate{RPS: 0.001, Burst: 1}
	})
	ev := `{"site":"shop","data":[{"event":"PageView"}]}`
	for i, want := range []int{200, 200, 429} {
		resp, _ := tg.postBrowser(t, ev, nil)
		if resp.StatusCode != want {
			t.Fatalf("browser request %d: %d, want %d", i, resp.StatusCode, want)
		}
		if want == 429 && resp.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	for i, want := range []int{200, 429} {
		resp, _ := tg.postServer(t, `{"site":"shop","data":[`+goodEvent+`]}`)
		if resp.StatusCode != want {
			t.Fatalf("server request %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

func TestServerIdentityAndDuplicates(t *testing.T) {
	tg := startGateway(t, nil)
	h := sha("already@hashed.example")
	body := `{"site":"shop","data":[{"event":"CompletePayment","event_id":"order-1","event_time":1763800000,
		"user":{"email":"` + strings.ToUpper(h) + `","phone":"0044 20 7946 0958","external_id":" u-1 ","anon_id":"0123456789abcdef0123456789abcdef","ip":"2001:db8:1:2::9","user_agent":"Shop/1.0","ttclid":"tt-1"},
		"properties":{"currency":"USD","value":99.5,"contents":[{"content_id":"sku-1","quantity":1,"price":99.5}]}},
		{"event":"Lead"}]}`
	resp, a := tg.postServer(t, body)
	if resp.StatusCode != 200 || a.Accepted != 2 {
		t.Fatalf("%d %+v", resp.StatusCode, a)
	}
	// The same event again within JetStream's duplicate window is stored once.
	resp, a = tg.postServer(t, `{"site":"shop","data":[{"event":"CompletePayment","event_id":"order-1","event_time":1763800000}]}`)
	if resp.StatusCode != 200 || a.Accepted != 0 || a.Duplicates != 1 {
		t.Fatalf("retry: %d %+v", resp.StatusCode, a)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 2 {
		t.Fatalf("%d envelopes, want 2", len(envs))
	}
	u := envs[0].User
	if u.EmailSHA256 != h || u.PhoneSHA256 != sha("442079460958") || u.PhoneE164SHA256 != sha("+442079460958") || u.ExternalIDSHA256 != sha("u-1") ||
		u.AnonID != "0123456789abcdef0123456789abcdef" || u.IP != "2001:db8:1::" || u.UserAgent != "Shop/1.0" || u.TTCLID != "tt-1" {
		t.Fatalf("server user: %+v", u)
	}
	if envs[0].Source != event.SourceServer || envs[0].SourceName != "backend" || envs[0].EventTime != 1763800000000 {
		t.Fatalf("envelope: %+v", envs[0])
	}
	if !envs[1].EventIDAssigned || tg.counter(t, "tagway_server_events_without_event_id_total", nil) != 1 {
		t.Fatal("a server event without event_id must be accepted and counted")
	}
}

func TestPixelHEADRecordsNothing(t *testing.T) {
	tg := startGateway(t, nil)
	resp, err := http.Head(tg.url + "/p.gif?site=shop&event=PageView")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("HEAD: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if envs, _ := tg.envelopes(t); len(envs) != 0 {
		t.Fatalf("HEAD stored %d events", len(envs))
	}
}

// panicConsent makes the consent step panic, standing in for any bug.
type panicConsent struct{}

func (panicConsent) Decide(*event.Envelope, consent.Geo) (*consent.Outcome, error) { panic("boom") }
func (panicConsent) Published(*consent.Outcome, bool) error                        { return nil }

func TestPanicIsAnswered500AndServingContinues(t *testing.T) {
	tg := startGateway(t, nil)
	g, err := New(tg.g.cfg, Deps{Publisher: tg.bus, Consent: panicConsent{}, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	tg.g.Shutdown(context.Background())
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	tg.url = "http://" + g.Addr().String()
	for i := 0; i < 2; i++ { // the server survives the first panic
		resp, a := tg.postServer(t, `{"site":"shop","data":[`+goodEvent+`]}`)
		if resp.StatusCode != 500 || a.Error == nil || a.Error.Code != "internal" {
			t.Fatalf("request %d: %d %+v", i, resp.StatusCode, a.Error)
		}
	}
}
