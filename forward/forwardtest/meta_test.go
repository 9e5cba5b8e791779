package forwardtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	metaToken   = "EAAB-meta-token"
	metaPixel   = "1234567891234567"
	metaVersion = "v25.0"
)

type graphResp struct {
	EventsReceived int      `json:"events_received"`
	Messages       []string `json:"messages"`
	FBTraceID      string   `json:"fbtrace_id"`
	Error          *struct {
		Message     string `json:"message"`
		Type        string `json:"type"`
		Code        int    `json:"code"`
		Subcode     int    `json:"error_subcode"`
		IsTransient *bool  `json:"is_transient"`
		UserTitle   string `json:"error_user_title"`
		UserMsg     string `json:"error_user_msg"`
		FBTraceID   string `json:"fbtrace_id"`
	} `json:"error"`
}

func newMeta(t *testing.T, opts ...Option) *Meta {
	f := NewMeta(t, metaToken, metaPixel, metaVersion, opts...)
	f.SetNow(fixedClock)
	return f
}

func metaEvent(id string) map[string]any {
	return map[string]any{
		"event_name":       "Purchase",
		"event_time":       testNow.Add(-time.Hour).Unix(),
		"event_id":         id,
		"action_source":    "website",
		"event_source_url": "https://shop.example/thanks",
		"user_data": map[string]any{
			"em":                []any{SHA256Hex("buyer@example.com")},
			"ph":                SHA256Hex("33612345678"),
			"external_id":       "crm-42", // hashing only recommended
			"client_ip_address": "2001:db8::7",
			"client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
			"fbc":               "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890",
			"fbp":               "fb.1.1558571054389.1098115397",
		},
		"custom_data": map[string]any{
			"value":       19.5,
			"currency":    "eur",
			"contents":    []any{map[string]any{"id": "sku-1", "quantity": 2, "item_price": 9.75}},
			"content_ids": []any{"sku-1"},
		},
	}
}

func metaBody(ids ...string) map[string]any {
	data := make([]any, len(ids))
	for i, id := range ids {
		data[i] = metaEvent(id)
	}
	return map[string]any{"data": data, "test_event_code": "TEST12345"}
}

func (f *Meta) withToken() string {
	return f.EndpointURL() + "?access_token=" + url.QueryEscape(metaToken)
}

func metaPost(t *testing.T, f *Meta, u string, hdr map[string]string, body any) (int, graphResp) {
	t.Helper()
	status, _, b := post(t, f.Client(), u, hdr, body)
	var r graphResp
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("answer %q is not Graph JSON: %v", b, err)
	}
	return status, r
}

func TestMetaAcceptsValidRequest(t *testing.T) {
	f := newMeta(t)
	status, r := metaPost(t, f, f.withToken(), nil, metaBody("ord-1", "ord-2"))
	if status != http.StatusOK || r.Error != nil || r.EventsReceived != 2 || r.Messages == nil || len(r.Messages) != 0 || r.FBTraceID == "" {
		t.Fatalf("answer = %d %+v, want 200 {events_received 2, messages [], fbtrace_id}", status, r)
	}
	if got := f.EventIDs(); len(got) != 2 || got["ord-1"] != 1 || got["ord-2"] != 1 {
		t.Errorf("EventIDs = %v", got)
	}
	if f.Accepted() != 1 || f.Rejected() != 0 || f.Events() != 2 {
		t.Errorf("accepted %d rejected %d events %d", f.Accepted(), f.Rejected(), f.Events())
	}
}

func TestMetaTokenPlacesAndBodyForms(t *testing.T) {
	f := newMeta(t)
	// JSON body field.
	b := metaBody("json-body")
	b["access_token"] = metaToken
	if status, r := metaPost(t, f, f.EndpointURL(), nil, b); status != 200 {
		t.Errorf("token in JSON body: %d %+v", status, r.Error)
	}
	// Authorization header.
	if status, r := metaPost(t, f, f.EndpointURL(), map[string]string{"Authorization": "Bearer " + metaToken}, metaBody("bearer")); status != 200 {
		t.Errorf("Bearer token: %d %+v", status, r.Error)
	}

	// Form body the way the Python SDK sends it: data is a JSON list whose
	// events are themselves JSON strings.
	e1, _ := json.Marshal(metaEvent("form-1"))
	e2, _ := json.Marshal(metaEvent("form-2"))
	data, _ := json.Marshal([]string{string(e1), string(e2)})
	form := url.Values{"data": {string(data)}, "access_token": {metaToken}, "test_event_code": {"TEST1"}}
	status, _, raw := post(t, f.Client(), f.EndpointURL(), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, form.Encode())
	var r graphResp
	if err := json.Unmarshal(raw, &r); err != nil || status != 200 || r.EventsReceived != 2 {
		t.Errorf("form body: %d %s", status, raw)
	}

	// Multipart, as curl -F in Meta's example.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	plain, _ := json.Marshal([]any{metaEvent("multi-1")})
	_ = mw.WriteField("data", string(plain))
	_ = mw.Close()
	status, _, raw = post(t, f.Client(), f.withToken(), map[string]string{"Content-Type": mw.FormDataContentType()}, buf.Bytes())
	if status != 200 {
		t.Errorf("multipart body: %d %s", status, raw)
	}

	want := map[string]int{"json-body": 1, "bearer": 1, "form-1": 1, "form-2": 1, "multi-1": 1}
	got := f.EventIDs()
	for id, n := range want {
		if got[id] != n {
			t.Errorf("EventIDs = %v, want %v", got, want)
			break
		}
	}
}

func TestMetaAcceptsDocumentedVariants(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(m map[string]any)
	}{
		{"non-web event needs no url or user agent", func(m map[string]any) {
			set(m, "data.0.action_source", "system_generated")
			del(m, "data.0.event_source_url")
			del(m, "data.0.user_data.client_user_agent")
		}},
		{"physical_store 30 days old", func(m map[string]any) {
			set(m, "data.0.action_source", "physical_store")
			set(m, "data.0.event_time", testNow.Add(-30*24*time.Hour).Unix())
		}},
		{"business_messaging", func(m map[string]any) { set(m, "data.0.action_source", "business_messaging") }},
		{"unhashed external_id list", func(m map[string]any) { set(m, "data.0.user_data.external_id", []any{"a", "b"}) }},
		{"uppercase currency", func(m map[string]any) { set(m, "data.0.custom_data.currency", "USD") }},
		{"30 s ahead", func(m map[string]any) { set(m, "data.0.event_time", testNow.Add(30*time.Second).Unix()) }},
		{"non-purchase without custom_data", func(m map[string]any) {
			set(m, "data.0.event_name", "Lead")
			del(m, "data.0.custom_data")
		}},
		{"only fbp", func(m map[string]any) {
			set(m, "data.0.action_source", "app")
			del(m, "data.0.event_source_url")
			set(m, "data.0.user_data", map[string]any{"fbp": "fb.1.1558571054389.1098115397"})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newMeta(t)
			m := metaBody("x")
			tc.mutate(m)
			if status, r := metaPost(t, f, f.withToken(), nil, m); status != 200 || r.EventsReceived != 1 {
				t.Fatalf("answer %d %+v", status, r.Error)
			}
		})
	}
}

func TestMetaRejects(t *testing.T) {
	many := func(n int) func(m map[string]any) {
		return func(m map[string]any) {
			data := make([]any, n)
			for i := range data {
				data[i] = metaEvent(fmt.Sprintf("e%d", i))
			}
			m["data"] = data
		}
	}
	cases := []struct {
		name    string
		url     func(f *Meta) string // default f.withToken()
		raw     string
		mutate  func(m map[string]any)
		status  int
		code    int
		subcode int
		typ     string // default OAuthException
		msg     string // prefix of error.error_user_msg, or error.message when there is none
		field   string
	}{
		{name: "no token", url: func(f *Meta) string { return f.EndpointURL() }, status: 400, code: 104, msg: "An access token is required to request this resource."},
		{name: "wrong token", url: func(f *Meta) string { return f.EndpointURL() + "?access_token=bad" }, status: 400, code: 190, msg: "Invalid OAuth access token - Cannot parse access token"},
		{name: "other pixel", url: func(f *Meta) string { return f.URL() + "/" + metaVersion + "/999/events?access_token=" + metaToken }, status: 400, code: 100, subcode: 33, typ: "GraphMethodException", msg: "Unsupported post request. Object with ID '999' does not exist"},
		{name: "other version", url: func(f *Meta) string { return f.URL() + "/v1.0/" + metaPixel + "/events?access_token=" + metaToken }, status: 400, code: 2500, msg: "Unknown path components"},
		{name: "not JSON", raw: `{"data":`, status: 400, code: 100, msg: "The request body is not valid JSON"},
		{name: "data missing", mutate: func(m map[string]any) { delete(m, "data") }, status: 400, code: 100, msg: "(#100) The parameter data is required", field: "data"},
		{name: "data not a list", mutate: func(m map[string]any) { m["data"] = map[string]any{} }, status: 400, code: 100, msg: "data must be an array", field: "data"},
		{name: "data empty", mutate: func(m map[string]any) { m["data"] = []any{} }, status: 400, code: 100, msg: "data must contain at least one event", field: "data"},
		{name: "1001 events", mutate: many(1001), status: 400, code: 100, msg: "You can send up to 1000 events in data", field: "data"},
		{name: "event not an object", mutate: func(m map[string]any) { set(m, "data.1", 5) }, status: 400, code: 100, msg: "data[1] must be an event object.", field: "data[1]"},
		{name: "event_name missing", mutate: func(m map[string]any) { del(m, "data.1.event_name") }, status: 400, code: 100, msg: "data[1].event_name is required", field: "data[1].event_name"},
		{name: "event_time missing", mutate: func(m map[string]any) { del(m, "data.0.event_time") }, status: 400, code: 100, msg: "data[0].event_time is required.", field: "data[0].event_time"},
		{name: "event_time a string", mutate: func(m map[string]any) { set(m, "data.0.event_time", "1773144000") }, status: 400, code: 100, msg: "data[0].event_time must be an integer", field: "data[0].event_time"},
		{name: "event_time 8 days old", mutate: func(m map[string]any) { set(m, "data.0.event_time", testNow.Add(-8*24*time.Hour).Unix()) }, status: 400, code: 100, subcode: 2804003, msg: "The timestamp for this event is too far in the past.", field: "data[0].event_time"},
		{name: "physical_store 63 days old", mutate: func(m map[string]any) {
			set(m, "data.0.action_source", "physical_store")
			set(m, "data.0.event_time", testNow.Add(-63*24*time.Hour).Unix())
		}, status: 400, code: 100, subcode: 2804003, msg: "The timestamp for this event is too far in the past.", field: "data[0].event_time"},
		{name: "event_time 2 minutes ahead", mutate: func(m map[string]any) { set(m, "data.0.event_time", testNow.Add(2*time.Minute).Unix()) }, status: 400, code: 100, msg: "data[0].event_time is too far in the future", field: "data[0].event_time"},
		{name: "event_time milliseconds", mutate: func(m map[string]any) { set(m, "data.0.event_time", testNow.UnixMilli()) }, status: 400, code: 100, msg: "data[0].event_time is too far in the future", field: "data[0].event_time"},
		{name: "action_source missing", mutate: func(m map[string]any) { del(m, "data.0.action_source") }, status: 400, code: 100, msg: "data[0].action_source is required.", field: "data[0].action_source"},
		{name: "action_source unknown", mutate: func(m map[string]any) { set(m, "data.0.action_source", "web") }, status: 400, code: 100, msg: "data[0].action_source must be one of email, website, app,", field: "data[0].action_source"},
		{name: "website without event_source_url", mutate: func(m map[string]any) { del(m, "data.0.event_source_url") }, status: 400, code: 100, msg: "data[0].event_source_url is required for website events.", field: "data[0].event_source_url"},
		{name: "event_source_url without scheme", mutate: func(m map[string]any) { set(m, "data.0.event_source_url", "shop.example/thanks") }, status: 400, code: 100, msg: "data[0].event_source_url must begin with http:// or https://.", field: "data[0].event_source_url"},
		{name: "event_id a number", mutate: func(m map[string]any) { set(m, "data.0.event_id", 7) }, status: 400, code: 100, msg: "data[0].event_id must be a string.", field: "data[0].event_id"},
		{name: "user_data missing", mutate: func(m map[string]any) { del(m, "data.0.user_data") }, status: 400, code: 100, msg: "data[0].user_data is required", field: "data[0].user_data"},
		{name: "website without client_user_agent", mutate: func(m map[string]any) { del(m, "data.0.user_data.client_user_agent") }, status: 400, code: 100, msg: "data[0].user_data.client_user_agent is required for website events.", field: "data[0].user_data.client_user_agent"},
		{name: "em in clear", mutate: func(m map[string]any) { set(m, "data.0.user_data.em", "buyer@example.com") }, status: 400, code: 100, subcode: 2804016, msg: "The em parameter isn’t hashed.", field: "data[0].user_data.em"},
		{name: "ph list with clear number", mutate: func(m map[string]any) { set(m, "data.0.user_data.ph", []any{SHA256Hex("1"), "33612345678"}) }, status: 400, code: 100, subcode: 2804016, msg: "The ph parameter isn’t hashed.", field: "data[0].user_data.ph"},
		{name: "ct in clear", mutate: func(m map[string]any) { set(m, "data.0.user_data.ct", "paris") }, status: 400, code: 100, subcode: 2804016, msg: "The ct parameter isn’t hashed.", field: "data[0].user_data.ct"},
		{name: "em uppercase hex", mutate: func(m map[string]any) { set(m, "data.0.user_data.em", strings.ToUpper(SHA256Hex("x"))) }, status: 400, code: 100, subcode: 2804016, msg: "The em parameter isn’t hashed.", field: "data[0].user_data.em"},
		{name: "client_ip_address invalid", mutate: func(m map[string]any) { set(m, "data.0.user_data.client_ip_address", "999.1.1.1") }, status: 400, code: 100, msg: "data[0].user_data.client_ip_address must be an IPv4 or IPv6 address.", field: "data[0].user_data.client_ip_address"},
		{name: "no customer information", mutate: func(m map[string]any) {
			set(m, "data.0.action_source", "app")
			del(m, "data.0.event_source_url")
			set(m, "data.0.user_data", map[string]any{"client_ip_address": "203.0.113.7"})
		}, status: 400, code: 100, subcode: 2804050, msg: "This event has insufficient customer information.", field: "data[0].user_data"},
		{name: "value a string", mutate: func(m map[string]any) { set(m, "data.0.custom_data.value", "19.5") }, status: 400, code: 100, msg: "data[0].custom_data.value must be a number.", field: "data[0].custom_data.value"},
		{name: "currency not ISO 4217", mutate: func(m map[string]any) { set(m, "data.0.custom_data.currency", "euro") }, status: 400, code: 100, msg: "data[0].custom_data.currency must be a valid ISO 4217", field: "data[0].custom_data.currency"},
		{name: "purchase without currency", mutate: func(m map[string]any) { del(m, "data.0.custom_data.currency") }, status: 400, code: 100, msg: "data[0].custom_data.currency is required for Purchase events.", field: "data[0].custom_data.currency"},
		{name: "contents item without id", mutate: func(m map[string]any) { del(m, "data.0.custom_data.contents.0.id") }, status: 400, code: 100, msg: "data[0].custom_data.contents[0].id is required", field: "data[0].custom_data.contents[0].id"},
		{name: "contents quantity fraction", mutate: func(m map[string]any) { set(m, "data.0.custom_data.contents.0.quantity", 1.5) }, status: 400, code: 100, msg: "data[0].custom_data.contents[0].quantity must be an integer.", field: "data[0].custom_data.contents[0].quantity"},
		{name: "contents item_price a string", mutate: func(m map[string]any) { set(m, "data.0.custom_data.contents.0.item_price", "9.75") }, status: 400, code: 100, msg: "data[0].custom_data.contents[0].item_price must be a number.", field: "data[0].custom_data.contents[0].item_price"},
		{name: "test_event_code a number", mutate: func(m map[string]any) { m["test_event_code"] = 5 }, status: 400, code: 100, msg: "test_event_code must be a string.", field: "test_event_code"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newMeta(t)
			u := f.withToken()
			if tc.url != nil {
				u = tc.url(f)
			}
			var body any = tc.raw
			if tc.raw == "" {
				m := metaBody("a", "b")
				if tc.mutate != nil {
					tc.mutate(m)
				}
				body = m
			}
			status, r := metaPost(t, f, u, nil, body)
			typ := tc.typ
			if typ == "" {
				typ = "OAuthException"
			}
			if status != tc.status || r.Error == nil {
				t.Fatalf("answer = %d %+v, want %d with an error object", status, r, tc.status)
			}
			e := r.Error
			msg := e.UserMsg
			if msg == "" {
				msg = e.Message
			}
			if e.Code != tc.code || e.Subcode != tc.subcode || e.Type != typ || e.FBTraceID == "" || !strings.HasPrefix(msg, tc.msg) {
				t.Fatalf("error = %+v, want code %d subcode %d type %s message %q…", *e, tc.code, tc.subcode, typ, tc.msg)
			}
			if e.Code == 100 && e.Subcode != 33 && e.Message != "Invalid parameter" && !strings.HasPrefix(e.Message, "(#100)") {
				t.Errorf("error.message %q", e.Message)
			}
			ae := lastAPIError(t, f.Log())
			if ae.Field != tc.field || ae.Status != tc.status || ae.Subcode != tc.subcode {
				t.Errorf("APIError %+v, want field %q", *ae, tc.field)
			}
			if len(f.EventIDs()) != 0 || f.Accepted() != 0 || f.Rejected() != 1 {
				t.Errorf("a rejected request recorded events: %v", f.EventIDs())
			}
		})
	}
}

func TestMetaBatchOf1000(t *testing.T) {
	f := newMeta(t)
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("e%04d", i)
	}
	if status, r := metaPost(t, f, f.withToken(), nil, metaBody(ids...)); status != 200 || r.EventsReceived != 1000 {
		t.Fatalf("1000 events: %d %+v", status, r.Error)
	}
}

func TestMetaOneBadEventFailsTheRequest(t *testing.T) {
	f := newMeta(t)
	m := metaBody("good-1", "bad", "good-2")
	set(m, "data.1.event_time", testNow.Add(-30*24*time.Hour).Unix())
	if status, r := metaPost(t, f, f.withToken(), nil, m); status != 400 || r.Error == nil || r.Error.Subcode != 2804003 {
		t.Fatalf("answer %d %+v", status, r.Error)
	}
	if len(f.EventIDs()) != 0 {
		t.Errorf("events of a failed request were recorded: %v", f.EventIDs())
	}
	if log := f.Log(); len(log) != 1 || strings.Join(log[0].EventIDs, ",") != "good-1,bad,good-2" {
		t.Errorf("log event ids %v", log[0].EventIDs)
	}
}

func TestMetaGzip(t *testing.T) {
	hdr := map[string]string{"Content-Encoding": "gzip"}
	f := newMeta(t)
	if status, r := metaPost(t, f, f.withToken(), hdr, gzipped(t, metaBody("z"))); status != 400 || r.Error == nil || r.Error.Code != 100 {
		t.Errorf("gzip without WithGzip: %d %+v", status, r.Error)
	}
	g := newMeta(t, WithGzip())
	if status, r := metaPost(t, g, g.withToken(), hdr, gzipped(t, metaBody("z"))); status != 200 || r.EventsReceived != 1 {
		t.Errorf("gzip with WithGzip: %d %+v", status, r.Error)
	}
}
