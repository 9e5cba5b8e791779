package forwardtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// Sources for the TikTok rules below (TikTok's own portal pages,
// https://business-api.tiktok.com/portal/docs?id=1771100865818625 "Events
// API 2.0", are not in the public material searched; every rule is taken
// from the copies and client code named here):
//
//	[tt-sample] TikTok's Events API 2.0 sample request, reproduced verbatim
//	  with its field comments at https://cozyclimb.store: "curl --request
//	  POST 'https://business-api.tiktok.com/open_api/v1.3/event/track/'
//	  --header 'Access-Token: ACCESS_TOKEN'", body {"event_source":"web",
//	  "event_source_id":…, "data":[{"event","event_id","event_time" ("number
//	  … Use unix timestamp. Example: 1697783008"), "user":{ttclid,
//	  external_id/phone/email ("It must be hashed with SHA-256 on the client
//	  side"), ttp, ip ("Non-hashed public IP address"), user_agent
//	  ("Non-hashed user agent")}, "page":{"url"}, "properties":{"contents":
//	  [{content_id ("string"), content_type ("Either product or
//	  product_group"), content_name}], "value" ("number"), "currency"
//	  ("The 4217 currency code. Example: USD")}}]}.
//	[tt-tealium] https://docs.tealium.com/server-side-connectors/tiktok-events-connector/
//	  "API Version: v1.3 (Events 2.0) … https://business-api.tiktok.com/open_api/v1.3/event/track/
//	  … Use the Track endpoint to report App, Web, Offline, or CRM events."
//	[tt-rudder] rudderlabs/rudder-transformer, src/v0/destinations/tiktok_ads/transformV2.js
//	  (event_source, event_source_id, data[], event_time "Unix timestamp
//	  (seconds), required", test_event_code, batches of maxBatchSizeV2 =
//	  1000 events) and test/integrations/destinations/tiktok_ads/network.ts,
//	  TikTok's recorded answers: HTTP 200 {"code":0,"message":"OK"};
//	  HTTP 200 {"code":40002,"message":"Batch.0.properties.contents.0.content_id:
//	  Not a valid string"}; HTTP 200 {"code":40001,"message":"No permission
//	  to operate pixel code: BU35TSQHT2A1QT375OMG. You must be an admin or
//	  operator of this advertiser account."}; HTTP 200 {"code":40100,
//	  "message":"Too many requests. Please retry in some time."}.
//	[tt-segment] segmentio/action-destinations, tiktok-conversions (TikTok's
//	  own Segment destination): user.email/phone/external_id sent as lists
//	  of hashes, content_type choices "product" | "product_group",
//	  limited_data_use boolean, event_source "web" | "crm".
//	[tt-40105] {"code": 40105, "message": "Access token is incorrect or has
//	  been revoked."} with HTTP 200, recorded in airbyte's
//	  source-tiktok-marketing tests; Sleekflow's TikTok error table
//	  https://help.sleekflow.io/en_US/tiktok-business-messaging/troubleshooting-your-tiktok-business-messaging-channels
//	  "40001 You don't have permission … 40002 There's a problem with the
//	  parameters in your request … 40100 You've hit the rate limit … 40105
//	  The access token is missing or incorrect".
//	[tt-40104] {"message": "access token is null, you should set it in
//	  http header with key Access-Token", "code": 40104, "request_id": …},
//	  recorded from ByteDance's Ocean Engine open_api, the platform TikTok's
//	  Business API shares its envelope with (indirect: not confirmed for
//	  TikTok itself).
//	[tt-envelope] {"code":…,"message":…,"request_id":"2026061015295501023125104093255","data":{}}
//	  (success and error envelope, recorded in public client fixtures).

// TikTokPath is the Events API 2.0 endpoint path [tt-sample] [tt-tealium].
const TikTokPath = "/open_api/v1.3/event/track/"

// TikTok business codes the fake answers with (HTTP 200, "code" field).
const (
	TikTokOK            = 0     // [tt-rudder] {"code":0,"message":"OK"}
	TikTokNoPermission  = 40001 // [tt-rudder] wrong pixel code
	TikTokInvalidParam  = 40002 // [tt-rudder] field errors, "<path>: <message>"
	TikTokRateLimited   = 40100 // [tt-rudder] too many requests
	TikTokTokenMissing  = 40104 // [tt-40104], not confirmed for TikTok
	TikTokTokenInvalid  = 40105 // [tt-40105]
	TikTokInternalError = 50000 // not confirmed: used only for chaos and RejectNext 5xx
)

// tiktokMaxBatch is the most events one request may carry [tt-rudder]
// (maxBatchSizeV2 = 1000; TikTok's own page not confirmed).
const tiktokMaxBatch = 1000

// TikTok is a running fake of the TikTok Events API 2.0.
type TikTok struct {
	*core
	tt *tiktokAPI
}

// NewTikTok starts a fake TikTok Events API 2.0 that accepts accessToken in
// the Access-Token header and pixelCode as event_source_id. It stops when
// the test ends.
func NewTikTok(t testing.TB, accessToken, pixelCode string, opts ...Option) *TikTok {
	t.Helper()
	a := &tiktokAPI{token: accessToken, pixel: pixelCode}
	return &TikTok{core: newCore(t, a, opts), tt: a}
}

// EndpointURL is the full URL events are posted to.
func (f *TikTok) EndpointURL() string { return f.URL() + TikTokPath }

type tiktokAPI struct {
	token, pixel string
}

// tiktokAnswer builds TikTok's envelope [tt-envelope]; errors are answered
// with HTTP 200 like everything else [tt-rudder] [tt-40105].
func tiktokAnswer(code int, msg string, now time.Time) []byte {
	b, _ := json.Marshal(struct {
		Code      int            `json:"code"`
		Message   string         `json:"message"`
		RequestID string         `json:"request_id"`
		Data      map[string]any `json:"data"`
	}{code, msg, newRequestID(now), map[string]any{}})
	return b
}

func (a *tiktokAPI) errorBody(status int) ([]byte, int) {
	code, msg := TikTokInvalidParam, "Invalid parameters."
	switch {
	case status == http.StatusTooManyRequests:
		code, msg = TikTokRateLimited, "Too many requests. Please retry in some time." // [tt-rudder]
	case status >= 500:
		code, msg = TikTokInternalError, "Internal service error. Please retry later." // not confirmed
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		code, msg = TikTokTokenInvalid, "Access token is incorrect or has been revoked." // [tt-40105]
	}
	return tiktokAnswer(code, msg, time.Now()), code
}

// ttErr is a 40002 error naming a field the way TikTok does:
// "<dotted path with indexes>: <message>" [tt-rudder].
func ttErr(field string, index int, msg string) *APIError {
	return &APIError{API: "tiktok", Status: http.StatusOK, Code: TikTokInvalidParam, Message: field + ": " + msg, Field: field, Index: index}
}

func (a *tiktokAPI) reject(e *APIError, now time.Time, events int, ids []string) answer {
	return answer{status: e.Status, body: tiktokAnswer(e.Code, e.Message, now), err: e, events: events, eventIDs: ids}
}

func (a *tiktokAPI) serve(r *http.Request, body []byte, bodyErr error, e env) answer {
	if r.URL.Path != TikTokPath {
		// Unknown paths are not modelled on a recorded TikTok answer.
		return answer{status: http.StatusNotFound, body: []byte("404 page not found\n"), header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			err: &APIError{API: "tiktok", Status: http.StatusNotFound, Message: "unknown path " + r.URL.Path, Index: -1}}
	}
	if r.Method != http.MethodPost {
		return answer{status: http.StatusMethodNotAllowed, header: http.Header{"Allow": {http.MethodPost}},
			err: &APIError{API: "tiktok", Status: http.StatusMethodNotAllowed, Message: "method " + r.Method + " not allowed", Index: -1}}
	}

	// Authentication: the Access-Token header [tt-sample].
	switch tok := r.Header.Get("Access-Token"); {
	case tok == "":
		return a.reject(&APIError{API: "tiktok", Status: http.StatusOK, Code: TikTokTokenMissing,
			Message: "access token is null, you should set it in http header with key Access-Token", Index: -1}, e.now, 0, nil) // [tt-40104]
	case tok != a.token:
		return a.reject(&APIError{API: "tiktok", Status: http.StatusOK, Code: TikTokTokenInvalid,
			Message: "Access token is incorrect or has been revoked.", Index: -1}, e.now, 0, nil) // [tt-40105]
	}

	if bodyErr != nil {
		return a.reject(&APIError{API: "tiktok", Status: http.StatusOK, Code: TikTokInvalidParam,
			Message: "Invalid request body: " + bodyErr.Error(), Index: -1}, e.now, 0, nil) // message not confirmed
	}
	v, err := decodeJSON(body)
	if err != nil {
		return a.reject(&APIError{API: "tiktok", Status: http.StatusOK, Code: TikTokInvalidParam,
			Message: "Invalid JSON: " + err.Error(), Index: -1}, e.now, 0, nil) // message not confirmed
	}
	root, ok := v.(map[string]any)
	if !ok {
		return a.reject(&APIError{API: "tiktok", Status: http.StatusOK, Code: TikTokInvalidParam,
			Message: "Invalid input type: the request body must be a JSON object.", Index: -1}, e.now, 0, nil)
	}

	data, _ := root["data"].([]any)
	ids := make([]string, len(data))
	for i, ev := range data {
		if m, ok := ev.(map[string]any); ok {
			ids[i] = idString(m["event_id"])
		}
	}
	if verr := a.validate(root, e); verr != nil {
		return a.reject(verr, e.now, len(data), ids)
	}
	if e.reject != nil {
		for i, id := range ids {
			if e.reject(id) {
				f := "data." + strconv.Itoa(i) + ".event_id"
				verr := ttErr(f, i, "Rejected by forwardtest.RejectEvents.")
				return answer{status: verr.Status, body: tiktokAnswer(verr.Code, verr.Message, e.now),
					err: fmt.Errorf("%w: %w", ErrForced, verr), events: len(data), eventIDs: ids}
			}
		}
	}
	return answer{status: http.StatusOK, body: tiktokAnswer(TikTokOK, "OK", e.now), events: len(data), eventIDs: ids}
}

// validate checks the request body; the first problem found is returned.
// Messages follow the recorded "<path>: Not a valid string" style
// [tt-rudder]; the wording of the other messages is not confirmed.
func (a *tiktokAPI) validate(root map[string]any, e env) *APIError {
	// event_source: web | app | offline | crm [tt-tealium] [tt-segment].
	switch src, present := root["event_source"]; {
	case !present || src == nil:
		return ttErr("event_source", -1, "Missing data for required field.")
	case !isOneOf(src, "web", "app", "offline", "crm"):
		return ttErr("event_source", -1, "Must be one of: web, app, offline, crm.")
	}
	// event_source_id: the pixel code (for web) [tt-sample]; another id
	// is a permission error [tt-rudder].
	switch id, present := root["event_source_id"]; {
	case !present || id == nil:
		return ttErr("event_source_id", -1, "Missing data for required field.")
	case !isString(id):
		return ttErr("event_source_id", -1, "Not a valid string.")
	case id.(string) != a.pixel:
		return &APIError{API: "tiktok", Status: http.StatusOK, Code: TikTokNoPermission, Field: "event_source_id", Index: -1,
			Message: "No permission to operate pixel code: " + id.(string) + ". You must be an admin or operator of this advertiser account."}
	}
	if v, ok := root["test_event_code"]; ok && v != nil && !isString(v) {
		return ttErr("test_event_code", -1, "Not a valid string.")
	}
	if v, ok := root["partner_name"]; ok && v != nil && !isString(v) {
		return ttErr("partner_name", -1, "Not a valid string.")
	}
	// data: a list of 1 to 1000 events [tt-sample] [tt-rudder].
	raw, present := root["data"]
	if !present || raw == nil {
		return ttErr("data", -1, "Missing data for required field.")
	}
	data, ok := raw.([]any)
	if !ok {
		return ttErr("data", -1, "Not a valid list.")
	}
	if len(data) < 1 || len(data) > tiktokMaxBatch {
		return ttErr("data", -1, fmt.Sprintf("Length must be between 1 and %d.", tiktokMaxBatch))
	}
	maxAge, maxFuture := 7*24*time.Hour, 5*time.Minute // not confirmed for TikTok
	if e.cfg.maxAge > 0 {
		maxAge = e.cfg.maxAge
	}
	if e.cfg.maxFuture > 0 {
		maxFuture = e.cfg.maxFuture
	}
	for i, raw := range data {
		if err := a.validateEvent(i, raw, e.now, maxAge, maxFuture); err != nil {
			return err
		}
	}
	return nil
}

func (a *tiktokAPI) validateEvent(i int, raw any, now time.Time, maxAge, maxFuture time.Duration) *APIError {
	p := "data." + strconv.Itoa(i)
	ev, ok := raw.(map[string]any)
	if !ok {
		return ttErr(p, i, "Invalid input type.")
	}
	// event: required, a string [tt-sample].
	switch v, present := ev["event"]; {
	case !present || v == nil:
		return ttErr(p+".event", i, "Missing data for required field.")
	case !isString(v):
		return ttErr(p+".event", i, "Not a valid string.")
	case v.(string) == "":
		return ttErr(p+".event", i, "Field may not be empty.")
	}
	// event_time: required, unix seconds [tt-sample] [tt-rudder]. The
	// accepted window is not confirmed for TikTok: 7 days back and 5
	// minutes ahead by default (WithMaxEventAge, WithMaxFutureSkew).
	v, present := ev["event_time"]
	if !present || v == nil {
		return ttErr(p+".event_time", i, "Missing data for required field.")
	}
	ts, ok := asInt(v)
	if !ok {
		return ttErr(p+".event_time", i, "Not a valid integer.")
	}
	switch timeWindow(ts, now, maxAge, maxFuture) {
	case "future":
		msg := "event_time must be a Unix timestamp in seconds, not in the future."
		if looksLikeMillis(ts) {
			msg = "event_time must be a Unix timestamp in seconds; " + strconv.FormatInt(ts, 10) + " looks like milliseconds."
		}
		return ttErr(p+".event_time", i, msg)
	case "old":
		return ttErr(p+".event_time", i, fmt.Sprintf("event_time is more than %s in the past.", maxAge))
	}
	if v, ok := ev["event_id"]; ok && v != nil && !isString(v) {
		return ttErr(p+".event_id", i, "Not a valid string.")
	}
	if v, ok := ev["limited_data_use"]; ok && v != nil {
		if _, isBool := v.(bool); !isBool {
			return ttErr(p+".limited_data_use", i, "Not a valid boolean.") // [tt-segment]
		}
	}
	if err := ttObject(ev, p, i, "user", validateTTUser); err != nil {
		return err
	}
	if err := ttObject(ev, p, i, "properties", validateTTProperties); err != nil {
		return err
	}
	return ttObject(ev, p, i, "page", func(p string, i int, m map[string]any) *APIError {
		return ttStrings(m, p, i, "url", "referrer")
	})
}

// ttObject validates the optional object ev[key] with fn.
func ttObject(ev map[string]any, p string, i int, key string, fn func(string, int, map[string]any) *APIError) *APIError {
	v, ok := ev[key]
	if !ok || v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return ttErr(p+"."+key, i, "Invalid input type.")
	}
	return fn(p+"."+key, i, m)
}

// validateTTUser: email, phone, external_id are SHA-256 hashes [tt-sample],
// one or a list [tt-segment]; ip and user_agent are not hashed [tt-sample].
func validateTTUser(p string, i int, u map[string]any) *APIError {
	for _, k := range []string{"email", "phone", "external_id"} {
		v, ok := u[k]
		if !ok || v == nil {
			continue
		}
		switch x := v.(type) {
		case string:
			if !isSHA256Hex(x) {
				return ttErr(p+"."+k, i, "Not a valid SHA-256 hash (64 lowercase hex characters).")
			}
		case []any:
			for j, el := range x {
				s, ok := el.(string)
				if !ok {
					return ttErr(p+"."+k+"."+strconv.Itoa(j), i, "Not a valid string.")
				}
				if !isSHA256Hex(s) {
					return ttErr(p+"."+k+"."+strconv.Itoa(j), i, "Not a valid SHA-256 hash (64 lowercase hex characters).")
				}
			}
		default:
			return ttErr(p+"."+k, i, "Not a valid string or list of strings.")
		}
	}
	if err := ttStrings(u, p, i, "ttclid", "ttp", "ip", "user_agent", "locale"); err != nil {
		return err
	}
	if ip, ok := u["ip"].(string); ok && ip != "" && !isIP(ip) {
		return ttErr(p+".ip", i, "Not a valid IP address.")
	}
	return nil
}

// validateTTProperties: contents[] items, content_type product |
// product_group, currency ISO 4217, value a number [tt-sample]
// [tt-segment]; content_id must be a string [tt-rudder].
func validateTTProperties(p string, i int, m map[string]any) *APIError {
	if err := ttStrings(m, p, i, "content_type", "currency", "description", "query", "order_id", "shop_id", "search_string"); err != nil {
		return err
	}
	if ct, ok := m["content_type"]; ok && ct != nil && !isOneOf(ct, "product", "product_group") {
		return ttErr(p+".content_type", i, "Must be one of: product, product_group.")
	}
	if c, ok := m["currency"].(string); ok && !validCurrency(c) {
		return ttErr(p+".currency", i, "Not a valid ISO 4217 currency code.")
	}
	if err := ttNumber(m, p, i, "value", false); err != nil {
		return err
	}
	if err := ttNumber(m, p, i, "num_items", true); err != nil {
		return err
	}
	if v, ok := m["content_ids"]; ok && v != nil {
		list, ok := v.([]any)
		if !ok {
			return ttErr(p+".content_ids", i, "Not a valid list.")
		}
		for j, el := range list {
			if !isString(el) {
				return ttErr(p+".content_ids."+strconv.Itoa(j), i, "Not a valid string.")
			}
		}
	}
	v, ok := m["contents"]
	if !ok || v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return ttErr(p+".contents", i, "Not a valid list.")
	}
	for j, el := range list {
		cp := p + ".contents." + strconv.Itoa(j)
		c, ok := el.(map[string]any)
		if !ok {
			return ttErr(cp, i, "Invalid input type.")
		}
		if err := ttStrings(c, cp, i, "content_id", "content_type", "content_name", "content_category", "brand"); err != nil {
			return err
		}
		if ct, ok := c["content_type"]; ok && ct != nil && !isOneOf(ct, "product", "product_group") {
			return ttErr(cp+".content_type", i, "Must be one of: product, product_group.")
		}
		if err := ttNumber(c, cp, i, "quantity", true); err != nil {
			return err
		}
		if err := ttNumber(c, cp, i, "price", false); err != nil {
			return err
		}
	}
	return nil
}

// ttStrings checks that each present key of m is a string.
func ttStrings(m map[string]any, p string, i int, keys ...string) *APIError {
	for _, k := range keys {
		if v, ok := m[k]; ok && v != nil && !isString(v) {
			return ttErr(p+"."+k, i, "Not a valid string.")
		}
	}
	return nil
}

// ttNumber checks that m[k], when present, is a number (an integer if
// integer is set).
func ttNumber(m map[string]any, p string, i int, k string, integer bool) *APIError {
	v, ok := m[k]
	if !ok || v == nil {
		return nil
	}
	if integer {
		if _, ok := asInt(v); !ok {
			return ttErr(p+"."+k, i, "Not a valid integer.")
		}
		return nil
	}
	if _, ok := asNumber(v); !ok {
		return ttErr(p+"."+k, i, "Not a valid number.")
	}
	return nil
}

func isString(v any) bool { _, ok := v.(string); return ok }

func isOneOf(v any, allowed ...string) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}
