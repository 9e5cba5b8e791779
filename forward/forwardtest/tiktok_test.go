package forwardtest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	ttToken = "tt-token-123"
	ttPixel = "CABC123DEF456GHI789J"
)

type ttResp struct {
	Code      int            `json:"code"`
	Message   string         `json:"message"`
	RequestID string         `json:"request_id"`
	Data      map[string]any `json:"data"`
}

func newTT(t *testing.T, opts ...Option) *TikTok {
	f := NewTikTok(t, ttToken, ttPixel, opts...)
	f.SetNow(fixedClock)
	return f
}

func ttEvent(id string) map[string]any {
	return map[string]any{
		"event":      "CompletePayment",
		"event_time": testNow.Add(-time.Hour).Unix(),
		"event_id":   id,
		"user": map[string]any{
			"email":       SHA256Hex("buyer@example.com"),
			"phone":       []any{SHA256Hex("+33612345678")},
			"external_id": []any{SHA256Hex("crm-42"), SHA256Hex("tw-anon-9")},
			"ttclid":      "E.C.P.v3ZQ",
			"ttp":         "2F7h37YkS1j57AYSKTI7IHhJPYH",
			"ip":          "203.0.113.7",
			"user_agent":  "Mozilla/5.0 (X11; Linux x86_64)",
		},
		"properties": map[string]any{
			"contents": []any{map[string]any{
				"content_id": "sku-1", "content_type": "product", "content_name": "Shirt", "quantity": 2, "price": 9.5,
			}},
			"content_type": "product",
			"currency":     "EUR",
			"value":        19.0,
		},
		"page": map[string]any{"url": "https://shop.example/checkout", "referrer": "https://shop.example/cart"},
	}
}

func ttBody(ids ...string) map[string]any {
	data := make([]any, len(ids))
	for i, id := range ids {
		data[i] = ttEvent(id)
	}
	return map[string]any{"event_source": "web", "event_source_id": ttPixel, "test_event_code": "TEST12345", "data": data}
}

func ttPost(t *testing.T, f *TikTok, body any) (int, ttResp) {
	t.Helper()
	status, _, b := post(t, f.Client(), f.EndpointURL(), map[string]string{"Access-Token": ttToken}, body)
	var r ttResp
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("answer %q is not TikTok JSON: %v", b, err)
	}
	return status, r
}

func TestTikTokAcceptsValidRequest(t *testing.T) {
	f := newTT(t)
	status, r := ttPost(t, f, ttBody("ord-1", "ord-2"))
	if status != http.StatusOK || r.Code != 0 || r.Message != "OK" || r.RequestID == "" || r.Data == nil {
		t.Fatalf("answer = %d %+v, want 200 {code 0, message OK, request_id, data {}}", status, r)
	}
	if got := f.EventIDs(); len(got) != 2 || got["ord-1"] != 1 || got["ord-2"] != 1 {
		t.Errorf("EventIDs = %v", got)
	}
	if f.Accepted() != 1 || f.Rejected() != 0 || f.Requests() != 1 || f.Events() != 2 {
		t.Errorf("accepted/rejected/requests/events = %d/%d/%d/%d, want 1/0/1/2", f.Accepted(), f.Rejected(), f.Requests(), f.Events())
	}
	log := f.Log()
	if len(log) != 1 || !log[0].Accepted() || log[0].Status != 200 || log[0].Events != 2 || log[0].Time != testNow || len(log[0].Body) == 0 {
		t.Errorf("log = %+v", log)
	}
}

func TestTikTokAcceptsMinimalEventsAndEverySource(t *testing.T) {
	f := newTT(t)
	for _, src := range []string{"web", "app", "offline", "crm"} {
		body := map[string]any{"event_source": src, "event_source_id": ttPixel,
			"data": []any{map[string]any{"event": "Lead", "event_time": testNow.Unix()}}}
		if status, r := ttPost(t, f, body); status != 200 || r.Code != 0 {
			t.Errorf("event_source %s: %d %+v", src, status, r)
		}
	}
	if f.Events() != 4 || len(f.EventIDs()) != 0 {
		t.Errorf("events %d, ids %v: events without event_id count only in Events", f.Events(), f.EventIDs())
	}
}

func TestTikTokRejects(t *testing.T) {
	many := func(n int) func(m map[string]any) {
		return func(m map[string]any) {
			data := make([]any, n)
			for i := range data {
				data[i] = ttEvent(fmt.Sprintf("e%d", i))
			}
			m["data"] = data
		}
	}
	cases := []struct {
		name   string
		token  string // "" keeps the right token, "-" sends none
		raw    string // raw body instead of the mutated valid one
		mutate func(m map[string]any)
		code   int
		msg    string // prefix of the answered message
		field  string
	}{
		{name: "no token", token: "-", code: 40104, msg: "access token is null"},
		{name: "wrong token", token: "nope", code: 40105, msg: "Access token is incorrect or has been revoked."},
		{name: "other pixel", mutate: func(m map[string]any) { m["event_source_id"] = "COTHERPIXEL" }, code: 40001, msg: "No permission to operate pixel code: COTHERPIXEL.", field: "event_source_id"},
		{name: "not JSON", raw: `{"data":[`, code: 40002, msg: "Invalid JSON"},
		{name: "body is a list", raw: `[]`, code: 40002, msg: "Invalid input type"},
		{name: "event_source missing", mutate: func(m map[string]any) { delete(m, "event_source") }, code: 40002, msg: "event_source: Missing data for required field.", field: "event_source"},
		{name: "event_source unknown", mutate: func(m map[string]any) { m["event_source"] = "website" }, code: 40002, msg: "event_source: Must be one of", field: "event_source"},
		{name: "event_source_id missing", mutate: func(m map[string]any) { delete(m, "event_source_id") }, code: 40002, msg: "event_source_id: Missing data", field: "event_source_id"},
		{name: "data missing", mutate: func(m map[string]any) { delete(m, "data") }, code: 40002, msg: "data: Missing data for required field.", field: "data"},
		{name: "data not a list", mutate: func(m map[string]any) { m["data"] = map[string]any{} }, code: 40002, msg: "data: Not a valid list.", field: "data"},
		{name: "data empty", mutate: func(m map[string]any) { m["data"] = []any{} }, code: 40002, msg: "data: Length must be between 1 and 1000.", field: "data"},
		{name: "1001 events", mutate: many(1001), code: 40002, msg: "data: Length must be between 1 and 1000.", field: "data"},
		{name: "event missing", mutate: func(m map[string]any) { del(m, "data.0.event") }, code: 40002, msg: "data.0.event: Missing data for required field.", field: "data.0.event"},
		{name: "event not a string", mutate: func(m map[string]any) { set(m, "data.0.event", 7) }, code: 40002, msg: "data.0.event: Not a valid string.", field: "data.0.event"},
		{name: "second event bad", mutate: func(m map[string]any) { del(m, "data.1.event") }, code: 40002, msg: "data.1.event: Missing data", field: "data.1.event"},
		{name: "event_time missing", mutate: func(m map[string]any) { del(m, "data.0.event_time") }, code: 40002, msg: "data.0.event_time: Missing data", field: "data.0.event_time"},
		{name: "event_time string", mutate: func(m map[string]any) { set(m, "data.0.event_time", "1773144000") }, code: 40002, msg: "data.0.event_time: Not a valid integer.", field: "data.0.event_time"},
		{name: "event_time fraction", mutate: func(m map[string]any) { set(m, "data.0.event_time", 1773144000.5) }, code: 40002, msg: "data.0.event_time: Not a valid integer.", field: "data.0.event_time"},
		{name: "event_time milliseconds", mutate: func(m map[string]any) { set(m, "data.0.event_time", testNow.UnixMilli()) }, code: 40002, msg: "data.0.event_time: event_time must be a Unix timestamp in seconds; 1773144000000 looks like milliseconds.", field: "data.0.event_time"},
		{name: "event_time 8 days old", mutate: func(m map[string]any) { set(m, "data.0.event_time", testNow.Add(-8*24*time.Hour).Unix()) }, code: 40002, msg: "data.0.event_time: event_time is more than", field: "data.0.event_time"},
		{name: "event_time an hour ahead", mutate: func(m map[string]any) { set(m, "data.0.event_time", testNow.Add(time.Hour).Unix()) }, code: 40002, msg: "data.0.event_time: event_time must be a Unix timestamp in seconds, not in the future.", field: "data.0.event_time"},
		{name: "event_id a number", mutate: func(m map[string]any) { set(m, "data.0.event_id", 42) }, code: 40002, msg: "data.0.event_id: Not a valid string.", field: "data.0.event_id"},
		{name: "email in clear", mutate: func(m map[string]any) { set(m, "data.0.user.email", "buyer@example.com") }, code: 40002, msg: "data.0.user.email: Not a valid SHA-256 hash", field: "data.0.user.email"},
		{name: "email uppercase hex", mutate: func(m map[string]any) { set(m, "data.0.user.email", strings.ToUpper(SHA256Hex("x"))) }, code: 40002, msg: "data.0.user.email: Not a valid SHA-256", field: "data.0.user.email"},
		{name: "phone list with clear number", mutate: func(m map[string]any) { set(m, "data.0.user.phone", []any{SHA256Hex("1"), "+33612345678"}) }, code: 40002, msg: "data.0.user.phone.1: Not a valid SHA-256", field: "data.0.user.phone.1"},
		{name: "external_id md5", mutate: func(m map[string]any) { set(m, "data.0.user.external_id", "0cc175b9c0f1b6a831c399e269772661") }, code: 40002, msg: "data.0.user.external_id: Not a valid SHA-256", field: "data.0.user.external_id"},
		{name: "external_id object", mutate: func(m map[string]any) { set(m, "data.0.user.external_id", map[string]any{}) }, code: 40002, msg: "data.0.user.external_id: Not a valid string or list", field: "data.0.user.external_id"},
		{name: "ip not an address", mutate: func(m map[string]any) { set(m, "data.0.user.ip", "localhost") }, code: 40002, msg: "data.0.user.ip: Not a valid IP address.", field: "data.0.user.ip"},
		{name: "user_agent a number", mutate: func(m map[string]any) { set(m, "data.0.user.user_agent", 5) }, code: 40002, msg: "data.0.user.user_agent: Not a valid string.", field: "data.0.user.user_agent"},
		{name: "user not an object", mutate: func(m map[string]any) { set(m, "data.0.user", "x") }, code: 40002, msg: "data.0.user: Invalid input type.", field: "data.0.user"},
		{name: "content_id a number", mutate: func(m map[string]any) { set(m, "data.0.properties.contents.0.content_id", 1077218) }, code: 40002, msg: "data.0.properties.contents.0.content_id: Not a valid string", field: "data.0.properties.contents.0.content_id"},
		{name: "content item content_type", mutate: func(m map[string]any) { set(m, "data.0.properties.contents.0.content_type", "socks") }, code: 40002, msg: "data.0.properties.contents.0.content_type: Must be one of: product, product_group.", field: "data.0.properties.contents.0.content_type"},
		{name: "quantity fraction", mutate: func(m map[string]any) { set(m, "data.0.properties.contents.0.quantity", 1.5) }, code: 40002, msg: "data.0.properties.contents.0.quantity: Not a valid integer.", field: "data.0.properties.contents.0.quantity"},
		{name: "price a string", mutate: func(m map[string]any) { set(m, "data.0.properties.contents.0.price", "9.50") }, code: 40002, msg: "data.0.properties.contents.0.price: Not a valid number.", field: "data.0.properties.contents.0.price"},
		{name: "contents not a list", mutate: func(m map[string]any) { set(m, "data.0.properties.contents", "sku-1") }, code: 40002, msg: "data.0.properties.contents: Not a valid list.", field: "data.0.properties.contents"},
		{name: "content_type other", mutate: func(m map[string]any) { set(m, "data.0.properties.content_type", "service") }, code: 40002, msg: "data.0.properties.content_type: Must be one of", field: "data.0.properties.content_type"},
		{name: "currency not ISO 4217", mutate: func(m map[string]any) { set(m, "data.0.properties.currency", "EURO") }, code: 40002, msg: "data.0.properties.currency: Not a valid ISO 4217", field: "data.0.properties.currency"},
		{name: "currency unknown code", mutate: func(m map[string]any) { set(m, "data.0.properties.currency", "XYZ") }, code: 40002, msg: "data.0.properties.currency: Not a valid ISO 4217", field: "data.0.properties.currency"},
		{name: "value a string", mutate: func(m map[string]any) { set(m, "data.0.properties.value", "19.00") }, code: 40002, msg: "data.0.properties.value: Not a valid number.", field: "data.0.properties.value"},
		{name: "page url a number", mutate: func(m map[string]any) { set(m, "data.0.page.url", 1) }, code: 40002, msg: "data.0.page.url: Not a valid string.", field: "data.0.page.url"},
		{name: "limited_data_use a string", mutate: func(m map[string]any) { set(m, "data.0.limited_data_use", "true") }, code: 40002, msg: "data.0.limited_data_use: Not a valid boolean.", field: "data.0.limited_data_use"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newTT(t)
			var body any = tc.raw
			if tc.raw == "" {
				m := ttBody("a", "b")
				if tc.mutate != nil {
					tc.mutate(m)
				}
				body = m
			}
			hdr := map[string]string{"Access-Token": ttToken}
			switch tc.token {
			case "-":
				delete(hdr, "Access-Token")
			case "":
			default:
				hdr["Access-Token"] = tc.token
			}
			status, _, b := post(t, f.Client(), f.EndpointURL(), hdr, body)
			var r ttResp
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("answer %q: %v", b, err)
			}
			// TikTok answers business errors with HTTP 200 and a non-zero code.
			if status != http.StatusOK || r.Code != tc.code || !strings.HasPrefix(r.Message, tc.msg) || r.RequestID == "" {
				t.Fatalf("answer = %d %+v, want 200 code %d message %q…", status, r, tc.code, tc.msg)
			}
			ae := lastAPIError(t, f.Log())
			if ae.Field != tc.field || ae.Code != tc.code {
				t.Errorf("APIError field %q code %d, want %q %d", ae.Field, ae.Code, tc.field, tc.code)
			}
			if strings.HasPrefix(tc.field, "data.") && ae.Index < 0 {
				t.Errorf("APIError index %d for field %s", ae.Index, tc.field)
			}
			if len(f.EventIDs()) != 0 || f.Accepted() != 0 || f.Rejected() != 1 || f.Events() != 0 {
				t.Errorf("a rejected request recorded events: ids %v accepted %d rejected %d", f.EventIDs(), f.Accepted(), f.Rejected())
			}
		})
	}
}

func TestTikTokBatchOf1000(t *testing.T) {
	f := newTT(t)
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("e%04d", i)
	}
	if status, r := ttPost(t, f, ttBody(ids...)); status != 200 || r.Code != 0 {
		t.Fatalf("1000 events: %d %+v", status, r)
	}
	if len(f.EventIDs()) != 1000 {
		t.Errorf("%d ids recorded", len(f.EventIDs()))
	}
}

func TestTikTokClockAndLimits(t *testing.T) {
	f := newTT(t)
	body := ttBody("old")
	set(body, "data.0.event_time", testNow.Add(-6*24*time.Hour).Unix())
	if _, r := ttPost(t, f, body); r.Code != 0 {
		t.Fatalf("6 days old: %+v", r)
	}
	f.SetNow(func() time.Time { return testNow.Add(2 * 24 * time.Hour) })
	if _, r := ttPost(t, f, body); r.Code != 40002 || !strings.HasPrefix(r.Message, "data.0.event_time:") {
		t.Fatalf("8 days old after moving the clock: %+v", r)
	}

	g := newTT(t, WithMaxEventAge(time.Hour), WithMaxFutureSkew(time.Second))
	set(body, "data.0.event_time", testNow.Add(-2*time.Hour).Unix())
	if _, r := ttPost(t, g, body); r.Code != 40002 {
		t.Errorf("2 h old with WithMaxEventAge(1h): %+v", r)
	}
	set(body, "data.0.event_time", testNow.Add(10*time.Second).Unix())
	if _, r := ttPost(t, g, body); r.Code != 40002 {
		t.Errorf("10 s ahead with WithMaxFutureSkew(1s): %+v", r)
	}
}

func TestTikTokPathAndMethod(t *testing.T) {
	f := newTT(t)
	status, _, _ := post(t, f.Client(), f.URL()+"/open_api/v1.3/pixel/track/", map[string]string{"Access-Token": ttToken}, ttBody("a"))
	if status != http.StatusNotFound {
		t.Errorf("unknown path: %d", status)
	}
	resp, err := f.Client().Get(f.EndpointURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if f.Accepted() != 0 || f.Requests() != 2 {
		t.Errorf("accepted %d requests %d", f.Accepted(), f.Requests())
	}
}

func gzipped(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTikTokGzip(t *testing.T) {
	hdr := map[string]string{"Access-Token": ttToken, "Content-Encoding": "gzip"}

	f := newTT(t) // gzip is not documented: refused by default
	_, _, b := post(t, f.Client(), f.EndpointURL(), hdr, gzipped(t, ttBody("z")))
	var r ttResp
	if err := json.Unmarshal(b, &r); err != nil || r.Code != 40002 || !strings.Contains(r.Message, "gzip") {
		t.Errorf("gzip without WithGzip: %s (%v)", b, err)
	}

	g := newTT(t, WithGzip())
	_, _, b = post(t, g.Client(), g.EndpointURL(), hdr, gzipped(t, ttBody("z")))
	if err := json.Unmarshal(b, &r); err != nil || r.Code != 0 {
		t.Fatalf("gzip with WithGzip: %s (%v)", b, err)
	}
	if g.EventIDs()["z"] != 1 || !strings.Contains(string(g.Log()[0].Body), `"event_id":"z"`) {
		t.Errorf("gzip body not decoded: ids %v", g.EventIDs())
	}
	_, _, b = post(t, g.Client(), g.EndpointURL(), hdr, []byte("not gzip"))
	if err := json.Unmarshal(b, &r); err != nil || r.Code != 40002 {
		t.Errorf("broken gzip: %s", b)
	}
}
