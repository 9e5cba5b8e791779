package forward

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/units"
)

// fakeMsg is a TW_FORWARD message for the pure parts: only its data and
// headers (any other method panics).
type fakeMsg struct {
	jetstream.Msg
	data []byte
}

func (m fakeMsg) Data() []byte         { return m.data }
func (m fakeMsg) Headers() nats.Header { return nats.Header{HeaderEventID: {"a"}} }

func fakeMsgs(data ...string) []jetstream.Msg {
	var out []jetstream.Msg
	for _, d := range data {
		out = append(out, fakeMsg{data: []byte(d)})
	}
	return out
}

func testDeliverer(kind Kind, min, max time.Duration) *deliverer {
	f := &Forwarder{now: time.Now, log: slog.New(slog.DiscardHandler)}
	d := &Destination{Name: "x", Type: kind, MinBackoff: units.Duration(min), MaxBackoff: units.Duration(max),
		Timeout: units.Duration(2 * time.Second), PixelCode: "P", PixelID: "1", APIVersion: "v21.0", token: "tok"}
	return &deliverer{f: f, d: d, http: http.DefaultClient}
}

// The retry delay stays within [min_backoff, max_backoff], its ceiling
// doubles with each attempt, and the API's Retry-After wins up to
// max_backoff.
func TestBackoff(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 2 * time.Second
	d := testDeliverer(KindTikTok, lo, hi)
	for n := uint64(0); n <= 12; n++ {
		ceil := lo
		for i := uint64(1); i < n; i++ {
			ceil = min(2*ceil, hi)
		}
		var top time.Duration
		for range 500 {
			b := d.backoff(n, 0)
			if b < lo || b > ceil {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, b, lo, ceil)
			}
			top = max(top, b)
		}
		// Full jitter: the draws reach the upper part of the range.
		if top < lo+(ceil-lo)*3/4 {
			t.Errorf("backoff(%d): the largest of 500 draws is %s, ceiling %s", n, top, ceil)
		}
	}
	if b := d.backoff(1<<63, 0); b < lo || b > hi {
		t.Errorf("backoff(2^63) = %s", b)
	}
	for _, tc := range []struct{ ra, want time.Duration }{
		{time.Second, time.Second}, // Retry-After wins over the exponential delay
		{1500 * time.Millisecond, 1500 * time.Millisecond},
		{time.Hour, hi}, // capped at max_backoff
		{50 * time.Millisecond, 50 * time.Millisecond},
	} {
		for _, n := range []uint64{1, 10} {
			if got := d.backoff(n, tc.ra); got != tc.want {
				t.Errorf("backoff(%d, Retry-After %s) = %s, want %s", n, tc.ra, got, tc.want)
			}
		}
	}
	// min == max: always that.
	if b := testDeliverer(KindMeta, time.Second, time.Second).backoff(5, 0); b != time.Second {
		t.Errorf("backoff with min = max = 1s: %s", b)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"1", time.Second},
		{" 120 ", 2 * time.Minute},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second}, // the other HTTP date forms
		{now.Add(5 * time.Second).Format(time.ANSIC), 5 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0}, // in the past
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{"Tue, 99 Foo 2026 00:00:00 GMT", 0},
		// Far too long: not negative or small after overflow, but long
		// (backoff caps it at max_backoff).
		{"9223372037", time.Duration(1<<63 - 1)},
		{"99999999999999999999999", time.Duration(1<<63 - 1)},
	} {
		got := retryAfter(tc.in, now)
		if tc.want == 1<<63-1 {
			if got < 24*time.Hour {
				t.Errorf("retryAfter(%q) = %s, want a very long delay", tc.in, got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// verdict is an outcome's classification, for tables.
func verdict(o outcome) string {
	switch {
	case o.ok:
		return "ok"
	case o.retry:
		return "retry"
	case o.whole:
		return "reject-all"
	}
	return "reject"
}

func TestClassifyTikTok(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{200, `{"code":0,"message":"OK","request_id":"1","data":{}}`, "ok"},
		{200, `{"code":40100,"message":"Too many requests."}`, "retry"},
		{200, `{"code":50000,"message":"Internal service error."}`, "retry"},
		{200, `{"code":51001}`, "retry"},
		{200, `{"code":40001,"message":"No permission"}`, "reject-all"},
		{200, `{"code":40104,"message":"access token is null"}`, "reject-all"},
		{200, `{"code":40105,"message":"Access token is incorrect or has been revoked."}`, "reject-all"},
		{200, `{"code":40002,"message":"data.0.event_time: …"}`, "reject"},
		{200, `{"code":40000}`, "reject"},
		{200, `{"message":"no code"}`, "retry"}, // not TikTok's answer
		{200, `<html>gateway</html>`, "retry"},  // a proxy's page
		{200, ``, "retry"},                      // empty
		{204, `{"code":0}`, "ok"},               // any 2xx with code 0
		{400, `{"code":0}`, "reject"},           // not 2xx: post decided already
		{404, `404 page not found`, "reject"},   //
		{200, `{"code":"0"}`, "retry"},          // a string code is not TikTok's
	} {
		o := classifyTikTok(outcome{status: tc.status, body: tc.body, retryAfter: 7}, []byte(tc.body))
		if got := verdict(o); got != tc.want {
			t.Errorf("classifyTikTok(%d %s) = %s, want %s", tc.status, tc.body, got, tc.want)
		}
		if o.status != tc.status || o.body != tc.body || o.retryAfter != 7 {
			t.Errorf("classifyTikTok(%d %s) lost the answer: %+v", tc.status, tc.body, o)
		}
	}
}

func TestClassifyMeta(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{200, `{"events_received":2,"messages":[],"fbtrace_id":"x"}`, "ok"},
		{201, ``, "ok"},
		{400, `{"error":{"code":1,"message":"An unknown error occurred"}}`, "retry"},
		{400, `{"error":{"code":2,"message":"Service temporarily unavailable"}}`, "retry"},
		{400, `{"error":{"code":4,"message":"Application request limit reached"}}`, "retry"},
		{400, `{"error":{"code":17}}`, "retry"},
		{400, `{"error":{"code":32}}`, "retry"},
		{400, `{"error":{"code":613}}`, "retry"},
		{400, `{"error":{"code":80004}}`, "retry"},
		{400, `{"error":{"code":100,"is_transient":true}}`, "retry"},
		{400, `{"error":{"code":190,"message":"Invalid OAuth access token"}}`, "reject-all"},
		{400, `{"error":{"code":104,"message":"An access token is required"}}`, "reject-all"},
		{400, `{"error":{"code":100,"error_subcode":2804016,"is_transient":false}}`, "reject"},
		{400, `{"error":{"code":2500}}`, "reject"},
		{400, `not json`, "reject"},
		{404, ``, "reject"},
	} {
		o := classifyMeta(outcome{status: tc.status, body: tc.body}, []byte(tc.body))
		if got := verdict(o); got != tc.want {
			t.Errorf("classifyMeta(%d %s) = %s, want %s", tc.status, tc.body, got, tc.want)
		}
	}
}

// post classifies the HTTP status before the API's own codes: 429, 5xx
// and 408 are retried (with Retry-After), 401 and 403 reject every event.
func TestPostClassifiesStatus(t *testing.T) {
	for _, kind := range []Kind{KindTikTok, KindMeta} {
		for _, tc := range []struct {
			status     int
			retryAfter string
			body       string
			want       string
		}{
			{429, "3", `{}`, "retry"},
			{500, "", `{}`, "retry"},
			{503, "", `<html>`, "retry"},
			{408, "", ``, "retry"},
			{401, "", `{}`, "reject-all"},
			{403, "", `{}`, "reject-all"},
			{200, "", `{"code":0}`, "ok"},
		} {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			d := testDeliverer(kind, time.Second, time.Minute)
			d.d.BaseURL = srv.URL
			o := d.post(context.Background(), fakeMsgs(`{"event_id":"a"}`))
			srv.Close()
			if got := verdict(o); got != tc.want || o.status != tc.status {
				t.Errorf("%s: HTTP %d → %s (status %d), want %s", kind, tc.status, got, o.status, tc.want)
			}
			if tc.retryAfter == "3" && o.retryAfter != 3*time.Second {
				t.Errorf("%s: HTTP 429 Retry-After 3 → %s", kind, o.retryAfter)
			}
		}
	}
	// No answer at all: retried.
	d := testDeliverer(KindTikTok, time.Second, time.Minute)
	d.d.BaseURL = "http://127.0.0.1:1"
	if o := d.post(context.Background(), fakeMsgs(`{}`)); !o.retry {
		t.Errorf("connection refused: %+v", o)
	}
}

func TestWithAccessToken(t *testing.T) {
	for _, tc := range []struct {
		body, token string
		want        map[string]any
	}{
		{`{}`, "t", map[string]any{"access_token": "t"}},
		{`{ }`, "t", map[string]any{"access_token": "t"}},
		{`{"data":[]}`, "t", map[string]any{"access_token": "t", "data": []any{}}},
		{`{ "data":[1],"test_event_code":"X"}`, "EAAB", map[string]any{"access_token": "EAAB", "data": []any{1.0}, "test_event_code": "X"}},
		{`{"data":[]}`, `we"ird\tok<en>`, map[string]any{"access_token": `we"ird\tok<en>`, "data": []any{}}},
		{"{\n}", "é", map[string]any{"access_token": "é"}},
		{``, "t", map[string]any{"access_token": "t"}}, // never panics on an empty body
		{`  `, "t", map[string]any{"access_token": "t"}},
	} {
		out := withAccessToken([]byte(tc.body), tc.token)
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Errorf("withAccessToken(%s, %q) = %s: %v", tc.body, tc.token, out, err)
			continue
		}
		if gj, wj := mustJSON(got), mustJSON(tc.want); gj != wj {
			t.Errorf("withAccessToken(%s, %q) = %s, want %s", tc.body, tc.token, gj, wj)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
