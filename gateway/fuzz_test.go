package gateway

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/gateway/event"
)

// fuzzBatch runs a body through everything the request path does to it
// short of publishing: batch parse, per-event decode, validation, identity,
// envelope encoding. It checks the invariants a bug would break.
func fuzzBatch(t *testing.T, body []byte, src event.Source) {
	var cfg Config
	cfg.SetDefaults()
	g := &Gateway{cfg: cfg}
	var b batchIn
	if rerr := parseBatch(body, &b); rerr != nil {
		if rerr.message == "" || rerr.reason.status() < 400 {
			t.Fatalf("refusal without a message or status: %+v", rerr)
		}
		return
	}
	ri := &reqInfo{source: src, site: "shop", now: testNow, user: b.User, consent: b.Consent}
	if src == event.SourceBrowser {
		ri.anonID, ri.ip = event.NewAnonID(), "192.0.2.0"
	}
	decode := g.rawDecoder(b.Data)
	lim := eventLimits{maxAge: 7 * 24 * time.Hour, maxFuture: 10 * time.Minute}
	var is issues
	accepted := 0
	for i := range b.Data {
		var ev eventIn
		if f, m, _ := decode(i, &ev); m != "" {
			is.fail(i, f, m, reasonInvalidField)
			continue
		}
		var env event.Envelope
		if !buildEnvelope(&ev, ri, lim, i, &is, &env) {
			continue
		}
		accepted++
		out, err := json.Marshal(&env)
		if err != nil {
			t.Fatalf("envelope does not encode: %v", err)
		}
		if !json.Valid(out) {
			t.Fatalf("envelope is not valid JSON: %s", out)
		}
		for _, h := range []string{env.User.EmailSHA256, env.User.PhoneSHA256, env.User.ExternalIDSHA256} {
			if h != "" && (len(h) != 64 || strings.ToLower(h) != h || !event.IsSHA256Hex(h)) {
				t.Fatalf("identifier not a lowercase SHA-256: %q", h)
			}
		}
		if env.User.IP != "" {
			a, err := netip.ParseAddr(env.User.IP)
			if err != nil || (a.Is4() && a.As4()[3] != 0) {
				t.Fatalf("IP not truncated: %q", env.User.IP)
			}
		}
		if !validEventName(env.Event) || env.EventID == "" || len(env.EventID) > 128 {
			t.Fatalf("invalid event accepted: %q %q", env.Event, env.EventID)
		}
		if env.Profile == "" && src == event.SourceBrowser {
			t.Fatal("browser event without a profile")
		}
	}
	if accepted+len(is.errors) != len(b.Data) {
		t.Fatalf("%d events: %d accepted + %d refused", len(b.Data), accepted, len(is.errors))
	}
	for _, e := range is.errors {
		if e.Index == nil || !strings.HasPrefix(e.Field, "data[") || e.Message == "" {
			t.Fatalf("error without index, field or message: %+v", e)
		}
	}
}

var fuzzSeeds = []string{
	`{"site":"shop","data":[{"event":"CompletePayment","event_time":1763800000,"event_id":"order-1001","user":{"email":"a@b.co","phone":"+1 555 123 4567","external_id":"x","ip":"203.0.113.9","user_agent":"UA","ttclid":"t"},"properties":{"currency":"USD","value":99.5,"contents":[{"content_id":"sku-1","quantity":1,"price":99.5}]},"page":{"url":"https://s.example/","referrer":"https://r.example/"},"consent":{"tcf":"CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA","gpp":"DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA","gpp_sid":[2],"usp":"1YNN","gpc":true}}]}`,
	`{"site":"shop","user":{"email":"3dc3f4a2cbb4b5b4d3f3b3f1b0d51d4f0e2b22c35e6c25b1cba4d8f7c8c7a1b2"},"consent":{"categories":{"analytics":true,"ads":false}},"data":[{"event":"PageView"},{"event":"x y"},{"event":"Lead","event_time":"now"},7,null,{"event":"AddToCart","properties":{"contents":[{"quantity":"1"}]}}]}`,
	`{"site":"shop","data":[{"event":"Lead","properties":{"value":1e999}},{"event":"Lead","event_time":-1e308},{"event":"Lead","user":{"ip":"::ffff:1.2.3.4"}}]}`,
	`{"site":"shop","data":[{"event":"\u0000"},{"event":"Lead","event_id":"\ud800"}]}`,
	`{"site":"shop","data":[`, `[]`, `{}`, `{"data":{}}`, `{"site":1}`, ``, `null`,
}

func FuzzServerBatch(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzBatch(t, body, event.SourceServer) })
}

func FuzzBrowserBatch(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzBatch(t, body, event.SourceBrowser) })
}
