package gateway

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func newGzipWriter(w io.Writer) *gzip.Writer { return gzip.NewWriter(w) }

const goodEvent = `{"event":"Lead","event_id":"good-1","event_time":1763800000}`

// TestEventValidation posts, for every rule, a batch of one good event and one
// event that breaks the rule: the bad one is refused with exactly the field
// named, the good one is accepted and stored.
func TestEventValidation(t *testing.T) {
	tg := startGateway(t, nil)
	big := strings.Repeat("x", 33<<10)
	cases := []struct {
		name, ev, field, msg string
	}{
		{"not an object", `"PageView"`, "data[1]", "must be an object"},
		{"event missing", `{"event_id":"x"}`, "data[1].event", "required"},
		{"event wrong type", `{"event":7}`, "data[1].event", "must be a string"},
		{"event bad name", `{"event":"Add To Cart"}`, "data[1].event", "standard event name"},
		{"event name too long", `{"event":"A` + strings.Repeat("b", 64) + `"}`, "data[1].event", "standard event name"},
		{"event name starts with digit", `{"event":"1Click"}`, "data[1].event", "standard event name"},
		{"event_time string", `{"event":"Lead","event_time":"1763800000"}`, "data[1].event_time", "must be a number"},
		{"event_time zero", `{"event":"Lead","event_time":0}`, "data[1].event_time", "positive unix time"},
		{"event_time 8 days old", `{"event":"Lead","event_time":1763108800}`, "data[1].event_time", "more than 7d in the past"},
		{"event_time 11 min ahead", `{"event":"Lead","event_time":1763800660}`, "data[1].event_time", "more than 10m0s in the future"},
		{"event_time ms too old", `{"event":"Lead","event_time":1763108800000}`, "data[1].event_time", "in the past"},
		{"event_time microseconds", `{"event":"Lead","event_time":1763800000000000}`, "data[1].event_time", "microseconds"},
		{"event_id empty", `{"event":"Lead","event_id":""}`, "data[1].event_id", "1 to 128 printable"},
		{"event_id too long", `{"event":"Lead","event_id":"` + strings.Repeat("a", 129) + `"}`, "data[1].event_id", "1 to 128 printable"},
		{"event_id control char", `{"event":"Lead","event_id":"a\nb"}`, "data[1].event_id", "1 to 128 printable"},
		{"event_id number", `{"event":"Lead","event_id":1001}`, "data[1].event_id", "must be a string"},
		{"properties not object", `{"event":"Lead","properties":[1]}`, "data[1].properties", "must be an object"},
		{"value string", `{"event":"Lead","properties":{"value":"9.5","currency":"USD"}}`, "data[1].properties.value", "must be a number"},
		{"value negative", `{"event":"Lead","properties":{"value":-1,"currency":"USD"}}`, "data[1].properties.value", "finite number ≥ 0"},
		{"value overflow", `{"event":"Lead","properties":{"value":1e999,"currency":"USD"}}`, "data[1].properties.value", ""},
		{"value without currency", `{"event":"Lead","properties":{"value":5}}`, "data[1].properties.currency", "required when value is set"},
		{"currency lowercase", `{"event":"Lead","properties":{"value":5,"currency":"usd"}}`, "data[1].properties.currency", "three uppercase letters"},
		{"currency long", `{"event":"Lead","properties":{"currency":"USDT"}}`, "data[1].properties.currency", "three uppercase letters"},
		{"contents not array", `{"event":"Lead","properties":{"contents":{"content_id":"a"}}}`, "data[1].properties.contents", "must be an array"},
		{"contents quantity type", `{"event":"Lead","properties":{"contents":[{"content_id":"a"},{"quantity":"2"}]}}`, "data[1].properties.contents[1].quantity", "must be an integer"},
		{"contents quantity fraction", `{"event":"Lead","properties":{"contents":[{"quantity":1.5}]}}`, "data[1].properties.contents[0].quantity", "must be an integer"},
		{"contents quantity negative", `{"event":"Lead","properties":{"contents":[{"quantity":-1}]}}`, "data[1].properties.contents[0].quantity", "between 0 and"},
		{"contents price negative", `{"event":"Lead","properties":{"contents":[{"price":-0.5}]}}`, "data[1].properties.contents[0].price", "finite number ≥ 0"},
		{"contents content_id empty", `{"event":"Lead","properties":{"contents":[{"content_id":""}]}}`, "data[1].properties.contents[0].content_id", "1 to 256 bytes"},
		{"contents content_id number", `{"event":"Lead","properties":{"contents":[{"content_id":12}]}}`, "data[1].properties.contents[0].content_id", "must be a string"},
		{"raw email in properties", `{"event":"Lead","properties":{"email":"a@b.c"}}`, "data[1].properties.email", "personal data belongs in user"},
		{"percent out of range", `{"event":"VideoProgress","properties":{"percent":101}}`, "data[1].properties.percent", "between 0 and 100"},
		{"page.url relative", `{"event":"Lead","page":{"url":"/checkout"}}`, "data[1].page.url", "absolute http(s) URL"},
		{"page.url javascript", `{"event":"Lead","page":{"url":"javascript:alert(1)"}}`, "data[1].page.url", "absolute http(s) URL"},
		{"page.referrer bad", `{"event":"Lead","page":{"referrer":"ftp://x"}}`, "data[1].page.referrer", "absolute http(s) URL"},
		{"page wrong type", `{"event":"Lead","page":"https://x"}`, "data[1].page", "must be an object"},
		{"user wrong type", `{"event":"Lead","user":["a"]}`, "data[1].user", "must be an object"},
		{"user.email number", `{"event":"Lead","user":{"email":5}}`, "data[1].user.email", "must be a string"},
		{"consent.usp bad", `{"event":"Lead","consent":{"usp":"1YYYY"}}`, "data[1].consent.usp", "US Privacy string"},
		{"consent.usp version", `{"event":"Lead","consent":{"usp":"2YNN"}}`, "data[1].consent.usp", "US Privacy string"},
		{"consent.tcf charset", `{"event":"Lead","consent":{"tcf":"CP<script>"}}`, "data[1].consent.tcf", "TCF string"},
		{"consent.gpp charset", `{"event":"Lead","consent":{"gpp":"DBA CA"}}`, "data[1].consent.gpp", "GPP string"},
		{"consent.gpp_sid range", `{"event":"Lead","consent":{"gpp":"DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA","gpp_sid":[2,0]}}`, "data[1].consent.gpp_sid[1]", "between 1 and 255"},
		{"consent.gpp_sid without gpp", `{"event":"Lead","consent":{"gpp_sid":[7]}}`, "data[1].consent.gpp_sid", "needs gpp"},
		{"consent.gpc string", `{"event":"Lead","consent":{"gpc":"yes"}}`, "data[1].consent.gpc", "true or false"},
		{"consent.categories bad name", `{"event":"Lead","consent":{"categories":{"ad s":true}}}`, "data[1].consent.categories", "names must be"},
		{"event too large", `{"event":"Lead","properties":{"note":"` + big + `"}}`, "data[1]", "larger than 32768 bytes"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			good := strings.Replace(goodEvent, "good-1", fmt.Sprintf("good-%d", i), 1)
			resp, a := tg.postServer(t, `{"site":"shop","data":[`+good+`,`+tc.ev+`]}`)
			if resp.StatusCode != 200 || a.Accepted != 1 {
				t.Fatalf("status %d accepted %d: the good event must be accepted; errors %+v", resp.StatusCode, a.Accepted, a.Errors)
			}
			if len(a.Errors) != 1 {
				t.Fatalf("errors = %+v, want exactly one", a.Errors)
			}
			e := a.Errors[0]
			if e.Field != tc.field || e.Index == nil || *e.Index != 1 {
				t.Errorf("field = %q index %v, want %q index 1 (message %q)", e.Field, e.Index, tc.field, e.Message)
			}
			if !strings.Contains(e.Message, tc.msg) {
				t.Errorf("message = %q, want it to contain %q", e.Message, tc.msg)
			}
		})
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != len(cases) {
		t.Fatalf("stream holds %d events, want %d (one good event per case, no bad one)", len(envs), len(cases))
	}
	for _, e := range envs {
		if e.Event != "Lead" || !strings.HasPrefix(e.EventID, "good-") {
			t.Errorf("unexpected stored event %s %s", e.Event, e.EventID)
		}
	}
	if got := tg.counter(t, "tagway_events_total", map[string]string{"source": "server", "disposition": "invalid"}); got != float64(len(cases)) {
		t.Errorf("invalid events counted %v, want %d", got, len(cases))
	}
}

// TestAcceptedForms checks values at the edges of the rules are accepted and
// normalised as documented.
func TestAcceptedForms(t *testing.T) {
	tg := startGateway(t, nil)
	body := `{"site":"shop","data":[
		{"event":"MyCustom_Event1","event_id":"c1","event_time":1763800000},
		{"event":"PageView","event_id":"c2","event_time":1763800000123},
		{"event":"Lead","event_id":"c3","event_time":1763195200},
		{"event":"Lead","event_id":"c4","event_time":1763800599},
		{"event":"Lead","event_id":"c5"},
		{"event":"CompletePayment","event_id":"c6","properties":{"value":0,"currency":"EUR","contents":[{"content_id":"sku","quantity":0,"price":0}],"custom":{"nested":[1,2]}}}
	]}`
	resp, a := tg.postServer(t, body)
	if resp.StatusCode != 200 || a.Accepted != 6 || len(a.Errors) != 0 {
		t.Fatalf("status %d answer %+v", resp.StatusCode, a)
	}
	envs, _ := tg.envelopes(t)
	byID := map[string]int{}
	for i, e := range envs {
		byID[e.EventID] = i
	}
	if got := envs[byID["c1"]].EventTime; got != 1763800000000 {
		t.Errorf("seconds not converted to ms: %d", got)
	}
	if got := envs[byID["c2"]].EventTime; got != 1763800000123 {
		t.Errorf("milliseconds not recognised: %d", got)
	}
	if got := envs[byID["c5"]].EventTime; got != testNow.UnixMilli() {
		t.Errorf("missing event_time should be the receive time: %d", got)
	}
	if p := string(envs[byID["c6"]].Properties); !strings.Contains(p, `"custom":{"nested":[1,2]}`) {
		t.Errorf("custom properties not passed through: %s", p)
	}
}

// TestRequestRefusals covers the refusals of a whole request.
func TestRequestRefusals(t *testing.T) {
	tg := startGateway(t, func(c *Config) { c.Limits.ServerEvents = 3 })
	many := strings.TrimSuffix(strings.Repeat(goodEvent+",", 4), ",")
	cases := []struct {
		name, auth, ctype, body string
		status                  int
		code, field             string
	}{
		{"no key", "", "application/json", `{"site":"shop","data":[` + goodEvent + `]}`, 401, "unauthorized", "Authorization"},
		{"wrong key", "Bearer nope", "application/json", `{"site":"shop","data":[` + goodEvent + `]}`, 401, "unauthorized", "Authorization"},
		{"basic auth", "Basic " + testKey, "application/json", `{"site":"shop","data":[` + goodEvent + `]}`, 401, "unauthorized", "Authorization"},
		{"form body", "Bearer " + testKey, "application/x-www-form-urlencoded", `site=shop`, 415, "unsupported_media_type", "Content-Type"},
		{"not json", "Bearer " + testKey, "application/json", `{"site":"shop","data":[`, 400, "invalid_json", ""},
		{"array body", "Bearer " + testKey, "application/json", `[` + goodEvent + `]`, 400, "invalid_json", ""},
		{"empty body", "Bearer " + testKey, "application/json", ``, 400, "invalid_json", ""},
		{"site missing", "Bearer " + testKey, "application/json", `{"data":[` + goodEvent + `]}`, 400, "invalid_field", "site"},
		{"site wrong type", "Bearer " + testKey, "application/json", `{"site":1,"data":[]}`, 400, "invalid_field", "site"},
		{"site not allowed", "Bearer " + testKey, "application/json", `{"site":"other","data":[` + goodEvent + `]}`, 403, "site_not_allowed", "site"},
		{"data not array", "Bearer " + testKey, "application/json", `{"site":"shop","data":{}}`, 400, "invalid_field", "data"},
		{"data empty", "Bearer " + testKey, "application/json", `{"site":"shop","data":[]}`, 400, "empty_batch", "data"},
		{"too many events", "Bearer " + testKey, "application/json", `{"site":"shop","data":[` + many + `]}`, 413, "batch_too_large", "data"},
		{"body too large", "Bearer " + testKey, "application/json", `{"site":"shop","data":[` + goodEvent + `],"pad":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "body_too_large", ""},
		{"batch consent bad", "Bearer " + testKey, "application/json", `{"site":"shop","consent":{"usp":"nope"},"data":[` + goodEvent + `]}`, 400, "invalid_field", "consent.usp"},
		{"batch user wrong type", "Bearer " + testKey, "application/json", `{"site":"shop","user":{"phone":5},"data":[` + goodEvent + `]}`, 400, "invalid_field", "user.phone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", tg.url+"/v1/events", strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			req.Header.Set("Content-Type", tc.ctype)
			resp, a := tg.do(t, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%+v)", resp.StatusCode, tc.status, a.Error)
			}
			if a.Error == nil || a.Error.Code != tc.code || a.Error.Field != tc.field {
				t.Fatalf("error = %+v, want code %q field %q", a.Error, tc.code, tc.field)
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	// Every event that was refused with its request was counted by reason.
	if got := tg.counter(t, "tagway_rejections_total", map[string]string{"route": "v1_events", "reason": "unauthorized"}); got != 3 {
		t.Errorf("unauthorized counted %v, want 3", got)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 0 {
		t.Fatalf("%d events stored from refused requests", len(envs))
	}
	// All events of a batch invalid: 400 with the per-event errors.
	resp, a := tg.postServer(t, `{"site":"shop","data":[{"event":"x y"},{"event":""}]}`)
	if resp.StatusCode != 400 || a.Accepted != 0 || len(a.Errors) != 2 {
		t.Fatalf("all-invalid batch: status %d %+v", resp.StatusCode, a)
	}
}

// TestGzipServerBody accepts a gzip-compressed batch and applies the size
// limit to the uncompressed body (no zip bombs).
func TestGzipServerBody(t *testing.T) {
	tg := startGateway(t, func(c *Config) { c.Limits.ServerBody, c.Limits.EventBytes = 4096, 4096 })
	send := func(body string) (*http.Response, answer) {
		req, _ := http.NewRequest("POST", tg.url+"/v1/events", gzipped(t, body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Content-Encoding", "gzip")
		return tg.do(t, req)
	}
	if resp, a := send(`{"site":"shop","data":[` + goodEvent + `]}`); resp.StatusCode != 200 || a.Accepted != 1 {
		t.Fatalf("gzip batch: %d %+v", resp.StatusCode, a)
	}
	bomb := `{"site":"shop","data":[` + goodEvent + `],"pad":"` + strings.Repeat("0", 1<<20) + `"}`
	if resp, a := send(bomb); resp.StatusCode != 413 || a.Error.Code != "body_too_large" {
		t.Fatalf("gzip bomb: %d %+v", resp.StatusCode, a.Error)
	}
}

func TestValidURL(t *testing.T) {
	for s, want := range map[string]bool{
		"https://shop.example/":                true,
		"http://shop.example":                  true,
		"HTTPS://Shop.Example/p?q=1#top":       true,
		"https://shop.example:8443/a/b":        true,
		"https://user@shop.example/":           true,
		"https://[2001:db8::1]/":               true,
		"https://":                             false,
		"http://":                              false,
		"https:///path":                        false,
		"https://:443/":                        false,
		"https://@x":                           false,
		"https://shop.example/a b":             false,
		"https://shop.example/\n":              false,
		"ftp://shop.example/":                  false,
		"//shop.example/":                      false,
		"shop.example":                         false,
		"javascript:alert(1)":                  false,
		"https://" + strings.Repeat("a", 4090): false,
	} {
		if got := validURL(s); got != want {
			t.Errorf("validURL(%q) = %v, want %v", s, got, want)
		}
	}
}
