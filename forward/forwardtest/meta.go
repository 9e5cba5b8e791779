package forwardtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sources for the Meta rules below:
//
//	[m-using] https://developers.facebook.com/documentation/ads-commerce/conversions-api/using-the-api
//	  "make a POST request to this API's /events edge from this path:
//	  https://graph.facebook.com/{API_VERSION}/{PIXEL_ID}/events?access_token={TOKEN}";
//	  "You can send up to 1,000 events in data"; "For offline and physical
//	  store events with physical_store as action_source, you should upload
//	  transactions within 62 days of the conversion."
//	[m-server] https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event
//	  event_name "Required"; event_time "Required. A Unix timestamp in
//	  seconds … can be up to 7 days before you send an event … If any
//	  event_time in data is greater than 7 days in the past, we return an
//	  error for the entire request and process no events"; user_data
//	  "Required"; event_source_url "The URL must begin with http:// or
//	  https:// … required for website events"; action_source required.
//	[m-params] https://developers.facebook.com/docs/marketing-api/conversions-api/parameters
//	  "Website events … require the client_user_agent, action_source, and
//	  event_source_url parameters, while non-web events require only
//	  action_source"; em, ph, fn, ln, ge, db, ct, st, zp, country "Hashing
//	  required"; external_id "Hashing recommended"; client_ip_address,
//	  client_user_agent, fbc, fbp "Do not hash".
//	[m-errors] https://developers.facebook.com/docs/graph-api/guides/error-handling
//	  {"error":{"message","type":"OAuthException","code":190,"error_subcode",
//	  "error_user_title","error_user_msg","fbtrace_id"}}; code 2 "Temporary
//	  issue due to downtime", code 4 "API Too Many Calls", code 190 "Access
//	  token has expired".
//	[m-support] https://developers.facebook.com/documentation/ads-commerce/conversions-api/support
//	  "If the event payload is valid, a 2xx HTTP response code is returned.
//	  If invalid, a 4xx HTTP response code is returned".
//	[m-sdk] facebook/facebook-python-business-sdk, facebook_business/adobjects/serverside/:
//	  action_source.py (email, website, app, phone_call, chat,
//	  physical_store, system_generated, other), event_request.py (params
//	  "data" — each event json.dumps'ed — and "test_event_code"),
//	  event_response.py (events_received, messages, fbtrace_id), content.py
//	  (contents[]: id, quantity, item_price, …), normalize.py (currency:
//	  "ISO 3-letter ISO 4217 … Eg: usd").
//	[m-bizmsg] business_messaging as an action_source: "The Conversions API
//	  now supports web, app, offline, and business messaging events"
//	  [m-params]; the value itself from client enums (e.g. whop_sdk
//	  CreateEventsRequestActionSource: … BUSINESS_MESSAGING = "business_messaging").
//	[m-hash] facebook/facebook-java-business-sdk issue #421, Meta's answer:
//	  {"error":{"message":"Invalid parameter","type":"OAuthException","code":100,
//	  "error_subcode":2804016,"is_transient":false,"error_user_title":"User
//	  Parameter Not Hashed","error_user_msg":"The ct parameter isn’t hashed.
//	  Hash all user parameters as SHA256, except for client user agent,
//	  click ID, and browser ID. …","fbtrace_id":"…"}}
//	[m-old] rudderlabs/rudder-transformer test/integrations/destinations/facebook_pixel/network.ts,
//	  Meta's answer with HTTP 400: {"error":{"message":"Invalid parameter",
//	  "type":"OAuthException","code":100,"error_subcode":2804003,
//	  "is_transient":false,"error_user_title":"Event Timestamp Too Old",
//	  "error_user_msg":"The timestamp for this event is too far in the past.
//	  Events need to be sent from your server within 7 days of when they
//	  occurred. Enter a timestamp that has occurred within the last 7
//	  days.","fbtrace_id":…}}; and HTTP 400 {"error":{"message":"Unsupported
//	  post request. Object with ID '…' does not exist, cannot be loaded due
//	  to missing permissions, or does not support this operation. Please
//	  read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
//	  "type":"GraphMethodException","code":100,"error_subcode":33,…}}.
//	[m-future] rudderlabs/rudder-transformer src/v0/destinations/facebook_pixel/docs/businesslogic.md
//	  "Events must be sent within 7 days of their occurrence or up to 1
//	  minute in the future" (a client's rule; Meta's page does not state
//	  the future bound and the answer Meta gives is not confirmed).
//	[m-token] HTTP 400 {"error":{"message":"An access token is required to
//	  request this resource.","type":"OAuthException","code":104,…}} and
//	  {"error":{"message":"Invalid OAuth access token - Cannot parse access
//	  token","type":"OAuthException","code":190,…}} (facebook/facebook-ios-sdk
//	  issue #2576; facebook4j: "statusCode=400, errorType='OAuthException',
//	  … errorCode=190").
//	[m-data] "(#100) The parameter data is required", Meta's answer to a
//	  request without data, as reported by a user of the API.
//	[m-match] {"error":{"message":"Invalid parameter","type":"OAuthException",
//	  "code":100,"error_subcode":2804050,"is_transient":false,
//	  "error_user_title":"…","error_user_msg":"This event has insufficient
//	  customer information.",…}} (Setono/meta-conversions-api tests).

// Graph API error codes the Meta fake answers with.
const (
	MetaInvalidParam  = 100     // [m-old] [m-hash]
	MetaTokenMissing  = 104     // [m-token]
	MetaTokenInvalid  = 190     // [m-token] [m-errors]
	MetaTooManyCalls  = 4       // [m-errors]
	MetaServiceError  = 2       // [m-errors]
	MetaUnknownPath   = 2500    // "Unknown path components"; not confirmed
	MetaSubNoObject   = 33      // [m-old]
	MetaSubTooOld     = 2804003 // [m-old]
	MetaSubNotHashed  = 2804016 // [m-hash]
	MetaSubNoCustomer = 2804050 // [m-match]
)

// metaMaxBatch is the most events one request may carry [m-using].
const metaMaxBatch = 1000

// metaActionSources are the documented action_source values [m-sdk] [m-bizmsg].
var metaActionSources = []string{"email", "website", "app", "phone_call", "chat", "physical_store", "system_generated", "business_messaging", "other"}

// metaHashed are the user_data keys whose values must be SHA-256 hashes
// [m-params]. external_id is only "Hashing recommended" and is not checked.
var metaHashed = []string{"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country"}

// Meta is a running fake of the Meta Conversions API.
type Meta struct {
	*core
	m *metaAPI
}

// NewMeta starts a fake Meta Conversions API for one pixel (dataset) id
// and Graph API version ("v25.0"), accepting accessToken. It stops when
// the test ends.
func NewMeta(t testing.TB, accessToken, pixelID, apiVersion string, opts ...Option) *Meta {
	t.Helper()
	a := &metaAPI{token: accessToken, pixel: pixelID, version: apiVersion}
	return &Meta{core: newCore(t, a, opts), m: a}
}

// EndpointURL is the full URL events are posted to (without access_token).
func (f *Meta) EndpointURL() string {
	return f.URL() + "/" + f.m.version + "/" + f.m.pixel + "/events"
}

type metaAPI struct {
	token, pixel, version string
}

// graphError is the Graph API error object [m-errors].
type graphError struct {
	Message     string `json:"message"`
	Type        string `json:"type"`
	Code        int    `json:"code"`
	Subcode     int    `json:"error_subcode,omitempty"`
	IsTransient *bool  `json:"is_transient,omitempty"`
	UserTitle   string `json:"error_user_title,omitempty"`
	UserMsg     string `json:"error_user_msg,omitempty"`
	FBTraceID   string `json:"fbtrace_id"`
}

func graphBody(g graphError) []byte {
	g.FBTraceID = newTraceID()
	b, _ := json.Marshal(struct {
		Error graphError `json:"error"`
	}{g})
	return b
}

func boolp(b bool) *bool { return &b }

func (a *metaAPI) errorBody(status int) ([]byte, int) {
	g := graphError{Message: "Invalid parameter", Type: "OAuthException", Code: MetaInvalidParam, IsTransient: boolp(false)}
	switch {
	case status == http.StatusTooManyRequests:
		g = graphError{Message: "(#4) Application request limit reached", Type: "OAuthException", Code: MetaTooManyCalls, IsTransient: boolp(true)}
	case status >= 500:
		g = graphError{Message: "An unexpected error has occurred. Please retry your request later.", Type: "OAuthException", Code: MetaServiceError, IsTransient: boolp(true)}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		g = graphError{Message: "Invalid OAuth access token - Cannot parse access token", Type: "OAuthException", Code: MetaTokenInvalid}
	}
	return graphBody(g), g.Code
}

// metaErr is a Graph API error answered with status and recorded as an
// APIError.
type metaErr struct {
	g      graphError
	status int
	field  string
	index  int
}

func (m metaErr) apiError() *APIError {
	msg := m.g.UserMsg
	if msg == "" {
		msg = m.g.Message
	}
	return &APIError{API: "meta", Status: m.status, Code: m.g.Code, Subcode: m.g.Subcode, Type: m.g.Type, Title: m.g.UserTitle, Message: msg, Field: m.field, Index: m.index}
}

// paramErr is the usual code 100 "Invalid parameter" error [m-old]
// [m-hash]; subcode 0 means none (for the rules whose subcode is not
// confirmed), and the user message names the field and its data[] index.
func paramErr(field string, index, subcode int, title, userMsg string) metaErr {
	return metaErr{g: graphError{Message: "Invalid parameter", Type: "OAuthException", Code: MetaInvalidParam, Subcode: subcode,
		IsTransient: boolp(false), UserTitle: title, UserMsg: userMsg}, status: http.StatusBadRequest, field: field, index: index}
}

func (a *metaAPI) reject(me metaErr, events int, ids []string) answer {
	return answer{status: me.status, body: graphBody(me.g), err: me.apiError(), events: events, eventIDs: ids}
}

func (a *metaAPI) serve(r *http.Request, body []byte, bodyErr error, e env) answer {
	params, perr := metaParams(r, body, bodyErr)

	// Authentication first: Graph checks the token before the object
	// [m-token]. The token may be in the query string [m-using], a form or
	// JSON body field (how the SDKs send it [m-sdk]), or an Authorization
	// header (Bearer/OAuth; not confirmed from the material searched).
	tok := r.URL.Query().Get("access_token")
	if tok == "" {
		tok, _ = params["access_token"].(string)
	}
	if tok == "" {
		h := r.Header.Get("Authorization")
		for _, scheme := range []string{"Bearer ", "OAuth "} {
			if len(h) > len(scheme) && strings.EqualFold(h[:len(scheme)], scheme) {
				tok = strings.TrimSpace(h[len(scheme):])
			}
		}
	}
	switch {
	case tok == "":
		return a.reject(metaErr{g: graphError{Message: "An access token is required to request this resource.", Type: "OAuthException", Code: MetaTokenMissing},
			status: http.StatusBadRequest, index: -1}, 0, nil)
	case tok != a.token:
		return a.reject(metaErr{g: graphError{Message: "Invalid OAuth access token - Cannot parse access token", Type: "OAuthException", Code: MetaTokenInvalid},
			status: http.StatusBadRequest, index: -1}, 0, nil)
	}

	// The edge: /{version}/{pixel}/events [m-using].
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != a.version || parts[2] != "events" {
		// Code 2500 "Unknown path components" is Graph's usual answer; not
		// confirmed from the material searched.
		return a.reject(metaErr{g: graphError{Message: "Unknown path components: " + r.URL.Path, Type: "OAuthException", Code: MetaUnknownPath},
			status: http.StatusBadRequest, index: -1}, 0, nil)
	}
	if parts[1] != a.pixel {
		return a.reject(metaErr{g: graphError{Message: "Unsupported post request. Object with ID '" + parts[1] + "' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
			Type: "GraphMethodException", Code: MetaInvalidParam, Subcode: MetaSubNoObject}, status: http.StatusBadRequest, index: -1}, 0, nil) // [m-old]
	}
	if r.Method != http.MethodPost {
		return a.reject(metaErr{g: graphError{Message: "Unsupported " + strings.ToLower(r.Method) + " request.", Type: "GraphMethodException", Code: MetaInvalidParam},
			status: http.StatusBadRequest, index: -1}, 0, nil) // not confirmed
	}
	if perr != "" {
		return a.reject(paramErr("", -1, 0, "Invalid Request Body", perr), 0, nil) // not confirmed
	}

	// data: required [m-data], a list of at most 1,000 events [m-using];
	// in a form body it is a JSON string, and each event may itself be a
	// JSON string (the Python SDK json.dumps each one [m-sdk]).
	raw, present := params["data"]
	if !present || raw == nil || raw == "" {
		return a.reject(metaErr{g: graphError{Message: "(#100) The parameter data is required", Type: "OAuthException", Code: MetaInvalidParam},
			status: http.StatusBadRequest, field: "data", index: -1}, 0, nil)
	}
	if s, ok := raw.(string); ok {
		v, err := decodeJSON([]byte(s))
		if err != nil {
			return a.reject(paramErr("data", -1, 0, "Invalid Parameter", "data must be a JSON array of events: "+err.Error()), 0, nil)
		}
		raw = v
	}
	list, ok := raw.([]any)
	if !ok {
		return a.reject(paramErr("data", -1, 0, "Invalid Parameter", "data must be an array of events."), 0, nil)
	}
	events := make([]map[string]any, len(list))
	ids := make([]string, len(list))
	for i, el := range list {
		if s, ok := el.(string); ok {
			if v, err := decodeJSON([]byte(s)); err == nil {
				el = v
			}
		}
		if m, ok := el.(map[string]any); ok {
			events[i], ids[i] = m, idString(m["event_id"])
		}
	}
	if len(list) == 0 {
		return a.reject(paramErr("data", -1, 0, "Invalid Parameter", "data must contain at least one event."), 0, ids) // not confirmed
	}
	if len(list) > metaMaxBatch {
		return a.reject(paramErr("data", -1, 0, "Too Many Events", fmt.Sprintf("You can send up to %d events in data; this request has %d.", metaMaxBatch, len(list))), len(list), ids) // limit [m-using], wording not confirmed
	}
	if v, ok := params["test_event_code"]; ok && v != nil && !isString(v) {
		return a.reject(paramErr("test_event_code", -1, 0, "Invalid Parameter", "test_event_code must be a string."), len(list), ids)
	}

	maxAge, maxFuture := 7*24*time.Hour, time.Minute // [m-server] [m-future]
	if e.cfg.maxAge > 0 {
		maxAge = e.cfg.maxAge
	}
	if e.cfg.maxFuture > 0 {
		maxFuture = e.cfg.maxFuture
	}
	// One bad event fails the entire request [m-server].
	for i, ev := range events {
		if ev == nil {
			return a.reject(paramErr(fmt.Sprintf("data[%d]", i), i, 0, "Invalid Parameter", fmt.Sprintf("data[%d] must be an event object.", i)), len(list), ids)
		}
		if me := validateMetaEvent(i, ev, e.now, maxAge, maxFuture); me != nil {
			return a.reject(*me, len(list), ids)
		}
	}
	if e.reject != nil {
		for i, id := range ids {
			if e.reject(id) {
				me := paramErr(fmt.Sprintf("data[%d].event_id", i), i, 0, "Rejected", fmt.Sprintf("data[%d].event_id %q rejected by forwardtest.RejectEvents.", i, id))
				return answer{status: me.status, body: graphBody(me.g), err: fmt.Errorf("%w: %w", ErrForced, me.apiError()), events: len(list), eventIDs: ids}
			}
		}
	}
	ok200, _ := json.Marshal(struct {
		EventsReceived int      `json:"events_received"`
		Messages       []string `json:"messages"`
		FBTraceID      string   `json:"fbtrace_id"`
	}{len(list), []string{}, newTraceID()}) // [m-sdk] event_response.py
	return answer{status: http.StatusOK, body: ok200, events: len(list), eventIDs: ids}
}

// metaParams returns the request's parameters: a JSON object body, or form
// fields (urlencoded or multipart, as curl -F in [m-using]), merged with
// the query string. The string is a problem with the body, "" if none.
func metaParams(r *http.Request, body []byte, bodyErr error) (map[string]any, string) {
	params := map[string]any{}
	for k, vs := range r.URL.Query() {
		if len(vs) > 0 {
			params[k] = vs[0]
		}
	}
	if bodyErr != nil {
		return params, "The request body could not be read: " + bodyErr.Error()
	}
	ct, mp, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return params, ""
	case ct == "application/json" || ct == "" && trimmed[0] == '{':
		v, err := decodeJSON(trimmed)
		if err != nil {
			return params, "The request body is not valid JSON: " + err.Error()
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return params, "The request body must be a JSON object."
		}
		for k, v := range obj {
			params[k] = v
		}
	case ct == "multipart/form-data":
		mr := multipart.NewReader(bytes.NewReader(body), mp["boundary"])
		form, err := mr.ReadForm(maxBody)
		if err != nil {
			return params, "The multipart body could not be read: " + err.Error()
		}
		defer func() { _ = form.RemoveAll() }()
		for k, vs := range form.Value {
			if len(vs) > 0 {
				params[k] = vs[0]
			}
		}
	default: // application/x-www-form-urlencoded and anything else
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return params, "The form body could not be parsed: " + err.Error()
		}
		for k, vs := range vals {
			if len(vs) > 0 {
				params[k] = vs[0]
			}
		}
	}
	return params, ""
}

// validateMetaEvent checks one event; nil when it is valid.
func validateMetaEvent(i int, ev map[string]any, now time.Time, maxAge, maxFuture time.Duration) *metaErr {
	p := fmt.Sprintf("data[%d]", i)
	fail := func(field, title, msg string) *metaErr {
		me := paramErr(p+"."+field, i, 0, title, msg)
		return &me
	}
	// event_name: required [m-server].
	if name, ok := ev["event_name"].(string); !ok || name == "" {
		return fail("event_name", "Missing Parameter", p+".event_name is required and must be a non-empty string.")
	}
	// action_source: required, one of the documented values [m-server] [m-sdk].
	as, present := ev["action_source"]
	if !present || as == nil {
		return fail("action_source", "Missing Parameter", p+".action_source is required.")
	}
	if !isOneOf(as, metaActionSources...) {
		return fail("action_source", "Invalid Parameter", fmt.Sprintf("%s.action_source must be one of %s.", p, strings.Join(metaActionSources, ", ")))
	}
	source := as.(string)
	// event_time: required unix seconds, at most 7 days old (62 for
	// physical_store) [m-server] [m-using], at most a minute ahead [m-future].
	v, present := ev["event_time"]
	if !present || v == nil {
		return fail("event_time", "Missing Parameter", p+".event_time is required.")
	}
	ts, ok := asInt(v)
	if !ok {
		return fail("event_time", "Invalid Parameter", p+".event_time must be an integer Unix timestamp in seconds.")
	}
	age := maxAge
	if source == "physical_store" && age < 62*24*time.Hour {
		age = 62 * 24 * time.Hour
	}
	switch timeWindow(ts, now, age, maxFuture) {
	case "old":
		me := paramErr(p+".event_time", i, MetaSubTooOld, "Event Timestamp Too Old",
			"The timestamp for this event is too far in the past. Events need to be sent from your server within 7 days of when they occurred. Enter a timestamp that has occurred within the last 7 days.") // [m-old]
		return &me
	case "future":
		msg := p + ".event_time is too far in the future: events can be sent up to one minute before they occur."
		if looksLikeMillis(ts) {
			msg += " " + strconv.FormatInt(ts, 10) + " looks like milliseconds; send seconds."
		}
		return fail("event_time", "Event Timestamp In The Future", msg) // bound [m-future]; answer not confirmed
	}
	// event_source_url: required for website, http(s) [m-server] [m-params].
	if u, present := ev["event_source_url"]; present && u != nil {
		s, ok := u.(string)
		if !ok || !(strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")) {
			return fail("event_source_url", "Invalid Parameter", p+".event_source_url must begin with http:// or https://.")
		}
	} else if source == "website" {
		return fail("event_source_url", "Missing Parameter", p+".event_source_url is required for website events.")
	}
	if v, ok := ev["event_id"]; ok && v != nil && !isString(v) {
		return fail("event_id", "Invalid Parameter", p+".event_id must be a string.")
	}
	if v, ok := ev["opt_out"]; ok && v != nil {
		if _, isBool := v.(bool); !isBool {
			return fail("opt_out", "Invalid Parameter", p+".opt_out must be a boolean.")
		}
	}
	// user_data: required [m-server].
	ud, ok := ev["user_data"].(map[string]any)
	if !ok {
		return fail("user_data", "Missing Parameter", p+".user_data is required and must be an object.")
	}
	if me := validateMetaUser(p+".user_data", i, ud, source); me != nil {
		return me
	}
	if cd, present := ev["custom_data"]; present && cd != nil {
		m, ok := cd.(map[string]any)
		if !ok {
			return fail("custom_data", "Invalid Parameter", p+".custom_data must be an object.")
		}
		name, _ := ev["event_name"].(string)
		if me := validateMetaCustom(p+".custom_data", i, m, name); me != nil {
			return me
		}
	} else if name, _ := ev["event_name"].(string); name == "Purchase" {
		return fail("custom_data", "Missing Parameter", p+".custom_data with value and currency is required for Purchase events.") // not confirmed
	}
	return nil
}

func validateMetaUser(p string, i int, ud map[string]any, source string) *metaErr {
	fail := func(field, title, msg string) *metaErr {
		me := paramErr(p+"."+field, i, 0, title, msg)
		return &me
	}
	// Hashed parameters: one lowercase SHA-256 or a list of them [m-params];
	// an unhashed one is 2804016 "User Parameter Not Hashed" [m-hash].
	for _, k := range metaHashed {
		v, present := ud[k]
		if !present || v == nil {
			continue
		}
		vals, ok := stringOrList(v)
		if !ok {
			return fail(k, "Invalid Parameter", p+"."+k+" must be a string or a list of strings.")
		}
		for _, s := range vals {
			if !isSHA256Hex(s) {
				me := paramErr(p+"."+k, i, MetaSubNotHashed, "User Parameter Not Hashed",
					"The "+k+" parameter isn’t hashed. Hash all user parameters as SHA256, except for client user agent, click ID, and browser ID. Any other user parameters that are not hashed are automatically rejected by Facebook.")
				return &me
			}
		}
	}
	// external_id: "Hashing recommended" [m-params] — any string or list.
	if v, present := ud["external_id"]; present && v != nil {
		if _, ok := stringOrList(v); !ok {
			return fail("external_id", "Invalid Parameter", p+".external_id must be a string or a list of strings.")
		}
	}
	for _, k := range []string{"client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id", "fb_login_id", "lead_id", "anon_id", "madid"} {
		if v, present := ud[k]; present && v != nil && !isString(v) {
			return fail(k, "Invalid Parameter", p+"."+k+" must be a string.")
		}
	}
	if ip, ok := ud["client_ip_address"].(string); ok && ip != "" && !isIP(ip) {
		return fail("client_ip_address", "Invalid Parameter", p+".client_ip_address must be an IPv4 or IPv6 address.")
	}
	// client_user_agent: required for website events [m-params].
	if ua, _ := ud["client_user_agent"].(string); ua == "" && source == "website" {
		return fail("client_user_agent", "Missing Parameter", p+".client_user_agent is required for website events.")
	}
	// Some customer information is needed to match the event [m-match];
	// the exact combinations Meta accepts are not confirmed, so any one
	// identifier (or IP address with user agent) is taken as enough.
	has := func(k string) bool {
		v, ok := ud[k]
		if !ok || v == nil {
			return false
		}
		vals, _ := stringOrList(v)
		for _, s := range vals {
			if s != "" {
				return true
			}
		}
		return false
	}
	enough := has("client_ip_address") && has("client_user_agent")
	for _, k := range append([]string{"external_id", "fbc", "fbp", "subscription_id", "fb_login_id", "lead_id", "anon_id", "madid"}, metaHashed...) {
		enough = enough || has(k)
	}
	if !enough {
		me := paramErr(p, i, MetaSubNoCustomer, "Customer information parameters", "This event has insufficient customer information.")
		return &me
	}
	return nil
}

func validateMetaCustom(p string, i int, cd map[string]any, eventName string) *metaErr {
	fail := func(field, title, msg string) *metaErr {
		me := paramErr(p+"."+field, i, 0, title, msg)
		return &me
	}
	if v, present := cd["value"]; present && v != nil {
		if _, ok := asNumber(v); !ok {
			return fail("value", "Invalid Parameter", p+".value must be a number.")
		}
	}
	if v, present := cd["currency"]; present && v != nil {
		s, ok := v.(string)
		if !ok || !validCurrency(s) {
			return fail("currency", "Invalid Parameter", p+".currency must be a valid ISO 4217 three-letter currency code.")
		}
	}
	// Purchase needs value and currency (Meta's custom-data page; not
	// confirmed from the material searched).
	if eventName == "Purchase" {
		if _, ok := cd["value"]; !ok {
			return fail("value", "Missing Parameter", p+".value is required for Purchase events.")
		}
		if _, ok := cd["currency"]; !ok {
			return fail("currency", "Missing Parameter", p+".currency is required for Purchase events.")
		}
	}
	if v, present := cd["content_ids"]; present && v != nil {
		list, ok := v.([]any)
		if !ok {
			return fail("content_ids", "Invalid Parameter", p+".content_ids must be a list of strings.")
		}
		for j, el := range list {
			if !isString(el) {
				return fail(fmt.Sprintf("content_ids[%d]", j), "Invalid Parameter", fmt.Sprintf("%s.content_ids[%d] must be a string.", p, j))
			}
		}
	}
	// contents[]: id, quantity, item_price, … [m-sdk] content.py.
	v, present := cd["contents"]
	if !present || v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return fail("contents", "Invalid Parameter", p+".contents must be a list of objects.")
	}
	for j, el := range list {
		cp := fmt.Sprintf("contents[%d]", j)
		c, ok := el.(map[string]any)
		if !ok {
			return fail(cp, "Invalid Parameter", p+"."+cp+" must be an object.")
		}
		if id, ok := c["id"].(string); !ok || id == "" {
			return fail(cp+".id", "Invalid Parameter", p+"."+cp+".id is required and must be a string.")
		}
		if q, present := c["quantity"]; present && q != nil {
			if _, ok := asInt(q); !ok {
				return fail(cp+".quantity", "Invalid Parameter", p+"."+cp+".quantity must be an integer.")
			}
		}
		if pr, present := c["item_price"]; present && pr != nil {
			if _, ok := asNumber(pr); !ok {
				return fail(cp+".item_price", "Invalid Parameter", p+"."+cp+".item_price must be a number.")
			}
		}
		for _, k := range []string{"title", "description", "brand", "category", "delivery_category"} {
			if v, present := c[k]; present && v != nil && !isString(v) {
				return fail(cp+"."+k, "Invalid Parameter", p+"."+cp+"."+k+" must be a string.")
			}
		}
	}
	return nil
}

// stringOrList returns v as strings if it is a string or a list of strings.
func stringOrList(v any) ([]string, bool) {
	switch x := v.(type) {
	case string:
		return []string{x}, true
	case []any:
		out := make([]string, 0, len(x))
		for _, el := range x {
			s, ok := el.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}
