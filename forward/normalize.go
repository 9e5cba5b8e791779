package forward

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/gateway/event"
)

// Normalisation profiles: each destination hashes personal data only after
// normalising it its own way, and a hash made one way never matches a hash
// made another way. A profile names one such way, versioned, so the gateway
// can compute every profile's hash on arrival, while the raw value is still
// in memory (it is never stored), and the forwarder can pick the one its
// destination needs. Test vectors: testdata/normalize_vectors.json.
//
// Which envelope field each profile currently matches (the envelope's
// hashes come from gateway/event: email trimmed and lower-cased; phone as
// E.164 digits without "+"; external id trimmed, case kept):
//
//	profile                    email              phone                      external id
//	tiktok-events/v2           User.EmailSHA256   none (needs the "+")       User.ExternalIDSHA256
//	tiktok-customer-file/2025  none ("+tag" cut)  User.PhoneSHA256           not a customer-file ID
//	meta-capi/v1               User.EmailSHA256   User.PhoneSHA256           User.ExternalIDSHA256
//
// So TikTok's Events API phone hash and the customer file's email hash can
// only come from the gateway computing them on arrival (see Hashed).

// The profile names.
const (
	ProfileTikTokEvents       = "tiktok-events/v2"
	ProfileTikTokCustomerFile = "tiktok-customer-file/2025"
	ProfileMetaCAPI           = "meta-capi/v1"
)

// Errors the profiles return besides gateway/event's ErrEmail, ErrPhone and
// ErrExternalID. Like those, their messages never repeat the value.
var (
	// ErrHashed means the value arrived already hashed: it cannot be
	// normalised again, so only the profile it was made with can use it.
	ErrHashed = errors.New("forward: value is already a SHA-256 hash and cannot be renormalised")
	// ErrUnsupported means the profile has no such identifier.
	ErrUnsupported = errors.New("forward: identifier not used by this profile")
)

// NormProfile is a named, versioned way of normalising identifiers before
// they are hashed. Each function returns the normalised plain value (hash
// it with Hash) or an error; none of them ever returns "" with a nil error.
type NormProfile struct {
	Name       string
	Email      func(raw string) (string, error)
	Phone      func(raw string) (string, error)
	ExternalID func(raw string) (string, error)
}

var profiles = []NormProfile{
	{
		// TikTok Events API 2.0, user.email / user.phone / user.external_id,
		// each SHA-256 hex. Phone: "Normalize the phone number to E.164
		// format (for example, '+12133734253'). Country code must be included
		// and prefixed with the '+' sign, without any parentheses or leading
		// '0's." (quoted from the Events API 2.0 Web page by Cloudflare's
		// TikTok managed component, github.com/managed-components/tiktok;
		// Segment's TikTok Conversions destination, built with TikTok, hashes
		// "+"+digits too). Email: trimmed and lower-cased, as TikTok's own
		// server-side GTM template does (hash(email, lowerCase=true)); it
		// hashes external_id without lower-casing (hash(id, false)).
		// https://business-api.tiktok.com/portal/docs?id=1771100865818625
		// https://github.com/tiktok/gtm-template-eapi/blob/main/template.js
		Name:       ProfileTikTokEvents,
		Email:      normEmail,
		Phone:      phoneE164Plus,
		ExternalID: normExternalID,
	},
	{
		// TikTok customer-file audiences (Email / Email_SHA256, Phone /
		// Phone_SHA256), August 2025: phone "Remove symbols, including '+'
		// sign … Remove leading zeros … Add country code if missing" ((657)
		// 777-0000 → "16577770000"); email "Lowercase only … Remove '+' and
		// any characters following the '+' symbol until '@'". (The older
		// revision also removed every '.' before the '@', and wanted the
		// phone with "+"; the August 2025 list drops both.) A customer file
		// takes no external id.
		// https://ads.tiktok.com/help/article/list-of-supported-ids-and-formats-for-a-customer-file
		Name:       ProfileTikTokCustomerFile,
		Email:      emailWithoutTag,
		Phone:      event.NormalizePhone,
		ExternalID: unsupported,
	},
	{
		// Meta Conversions API customer information parameters: em "Trim
		// any leading and trailing whitespace … Convert all characters to
		// lowercase"; ph digits only, country code included, no leading
		// zeros or "+" (Meta's Python Business SDK strips "+" and "00" the
		// same way); external_id "hashing is recommended" and must be "the
		// same format" as on other channels, so it is trimmed and its case
		// kept (the SDK does not normalise it at all).
		// https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters
		// https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/external-id
		// https://github.com/facebook/facebook-python-business-sdk/blob/main/facebook_business/adobjects/serverside/normalize.py
		Name:       ProfileMetaCAPI,
		Email:      normEmail,
		Phone:      event.NormalizePhone,
		ExternalID: normExternalID,
	},
}

// Profile returns the profile called name.
func Profile(name string) (NormProfile, bool) {
	for _, p := range profiles {
		if p.Name == name {
			return p, true
		}
	}
	return NormProfile{}, false
}

// Profiles returns every profile, sorted by name: the set the gateway
// hashes each raw identifier with on arrival.
func Profiles() []NormProfile {
	out := slices.Clone(profiles)
	slices.SortFunc(out, func(a, b NormProfile) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// EventProfile returns the profile whose hashes the destination kind's
// event payload carries (TikTokEvent, MetaEvent); false for a webhook,
// which receives the envelope's own hashes.
func EventProfile(kind Kind) (NormProfile, bool) {
	switch kind {
	case KindTikTok:
		return Profile(ProfileTikTokEvents)
	case KindMeta:
		return Profile(ProfileMetaCAPI)
	}
	return NormProfile{}, false
}

// Hash returns the SHA-256 of a normalised value as lowercase hex.
func Hash(normalized string) string {
	sum := sha256.Sum256([]byte(normalized))
	return hex.EncodeToString(sum[:])
}

// normEmail trims and lower-cases an email and checks its shape the way
// event.HashEmail does, so the two agree on what an email is.
func normEmail(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if event.IsSHA256Hex(s) {
		return "", ErrHashed
	}
	s = strings.ToLower(s)
	at := strings.LastIndexByte(s, '@')
	if at < 1 || at == len(s)-1 || len(s) > 254 || strings.ContainsAny(s, " \t\r\n") {
		return "", event.ErrEmail
	}
	return s, nil
}

// emailWithoutTag is normEmail with a "+tag" cut from the local part
// ("jane+news@x.com" → "jane@x.com").
func emailWithoutTag(raw string) (string, error) {
	s, err := normEmail(raw)
	if err != nil {
		return "", err
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at:]
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	if local == "" {
		return "", event.ErrEmail
	}
	return local + domain, nil
}

// phoneE164Plus is event.NormalizePhone with the "+" E.164 writes.
func phoneE164Plus(raw string) (string, error) {
	if event.IsSHA256Hex(strings.TrimSpace(raw)) {
		return "", ErrHashed
	}
	d, err := event.NormalizePhone(raw)
	if err != nil {
		return "", err
	}
	return "+" + d, nil
}

func normExternalID(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if event.IsSHA256Hex(s) {
		return "", ErrHashed
	}
	if s == "" || len(s) > 256 {
		return "", event.ErrExternalID
	}
	return s, nil
}

func unsupported(string) (string, error) { return "", ErrUnsupported }

// Hashed carries a person's identifier hashes in one destination's own
// normalisation (the profile EventProfile names), SHA-256 lowercase hex,
// for TikTokEvent and MetaEvent. An empty field falls back to the
// envelope's hash where the envelope's normalisation is the destination's
// (see the table above): for TikTok that is Email and ExternalID but not
// Phone, whose envelope hash lacks the "+" TikTok hashes; for Meta all
// three. So Hashed{} is right for Meta today, and TikTok needs Phone from
// the gateway's tiktok-events/v2 hash to match phones.
type Hashed struct {
	Email      string
	Phone      string
	ExternalID string
}

// Errors of the payload builders (TikTokEvent, MetaEvent).
var (
	// ErrInvalid means no payload could be built: the envelope is nil or
	// has no event name or time. Nothing is returned with it.
	ErrInvalid = errors.New("forward: cannot build payload")
	// ErrDropped means the payload was built but some fields were left out
	// because their values were unusable. The payload returned with it is
	// complete and valid: send it, and count the drop. errors.As gives the
	// *DroppedError naming the fields.
	ErrDropped = errors.New("forward: fields dropped")
)

// FieldError names a field left out of a payload, by its path in the
// envelope ("properties.contents[1].price"), and why. It never carries the
// value.
type FieldError struct {
	Field  string
	Reason string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// DroppedError lists the fields a payload builder left out. It matches
// ErrDropped with errors.Is.
type DroppedError struct {
	Fields []FieldError
}

func (e *DroppedError) Error() string {
	var b strings.Builder
	b.WriteString("forward: dropped ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Is reports whether target is ErrDropped.
func (e *DroppedError) Is(target error) bool { return target == ErrDropped }

// drops collects FieldErrors; its err is nil when nothing was dropped.
type drops []FieldError

func (d *drops) add(field, reason string) { *d = append(*d, FieldError{field, reason}) }

func (d drops) err() error {
	if len(d) == 0 {
		return nil
	}
	return &DroppedError{Fields: d}
}

// hashOrFallback returns the destination hash for one identifier: v when
// set (dropped unless it is 64 hex digits), else fallback.
func hashOrFallback(v, fallback, field string, d *drops) string {
	if v == "" {
		return fallback
	}
	if !event.IsSHA256Hex(v) {
		d.add(field, "must be a SHA-256 hash (64 hex digits)")
		return ""
	}
	return strings.ToLower(v)
}

// eventSeconds is the event time in unix seconds: EventTime, or ReceivedAt
// when the sender's time is missing (both are milliseconds).
func eventSeconds(env *event.Envelope) (int64, bool) {
	ms := env.EventTime
	if ms <= 0 {
		ms = env.ReceivedAt
	}
	if ms <= 0 {
		return 0, false
	}
	return ms / 1000, true
}

// props is what the payload builders understand of an envelope's
// properties, TikTok-style as senders give them, each value checked. A
// value of the wrong type or out of range is dropped (and reported), never
// passed on: TikTok fails a whole batch for one bad event.
type props struct {
	Contents     []content
	ContentType  string
	ContentIDs   []string
	Currency     string
	Value        *float64
	OrderID      string
	Query        string
	Description  string
	actionSource json.RawMessage // Meta only, checked by MetaEvent
}

type content struct {
	Index                           int // in the sender's contents, for error paths
	ID, Type, Name, Category, Brand string
	Quantity                        *int64
	Price                           *float64
}

// propsIn is the decoding shape: every known key as raw JSON, checked one
// by one so a bad value costs only itself.
type propsIn struct {
	Contents     json.RawMessage `json:"contents"`
	ContentType  json.RawMessage `json:"content_type"`
	ContentID    json.RawMessage `json:"content_id"`
	ContentIDs   json.RawMessage `json:"content_ids"`
	Currency     json.RawMessage `json:"currency"`
	Value        json.RawMessage `json:"value"`
	OrderID      json.RawMessage `json:"order_id"`
	Query        json.RawMessage `json:"query"`
	SearchString json.RawMessage `json:"search_string"`
	Description  json.RawMessage `json:"description"`
	ActionSource json.RawMessage `json:"action_source"`
}

type contentIn struct {
	ContentID       json.RawMessage `json:"content_id"`
	ID              json.RawMessage `json:"id"`
	ContentType     json.RawMessage `json:"content_type"`
	ContentName     json.RawMessage `json:"content_name"`
	ContentCategory json.RawMessage `json:"content_category"`
	Brand           json.RawMessage `json:"brand"`
	Quantity        json.RawMessage `json:"quantity"`
	Price           json.RawMessage `json:"price"`
}

// maxContents bounds the contents kept (the gateway accepts 100).
const maxContents = 100

// parseProps decodes raw (an envelope's Properties) into props, recording
// every value it leaves out in d. Unknown keys are ignored.
func parseProps(raw []byte, d *drops) props {
	var p props
	raw = trimJSON(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return p
	}
	var in propsIn
	if raw[0] != '{' || json.Unmarshal(raw, &in) != nil {
		d.add("properties", "must be a JSON object")
		return p
	}
	const pre = "properties."
	if !isNull(in.Contents) {
		p.Contents = parseContents(in.Contents, d)
	}
	p.ContentType = enumField(in.ContentType, pre+"content_type", d, "product", "product_group")
	if id := idField(in.ContentID, pre+"content_id", d); id != "" && isNull(in.Contents) {
		// A single product, the TikTok 1.0 way: one content.
		p.Contents = []content{{ID: id}}
	}
	p.ContentIDs = idList(in.ContentIDs, pre+"content_ids", d)
	if c := strField(in.Currency, pre+"currency", d); c != "" {
		if u := strings.ToUpper(c); isCurrency(u) {
			p.Currency = u
		} else {
			d.add(pre+"currency", "must be an ISO 4217 code such as USD")
		}
	}
	p.Value = numField(in.Value, pre+"value", d)
	p.OrderID = idField(in.OrderID, pre+"order_id", d)
	p.Query = strField(in.Query, pre+"query", d)
	if s := strField(in.SearchString, pre+"search_string", d); p.Query == "" {
		p.Query = s
	}
	p.Description = strField(in.Description, pre+"description", d)
	p.actionSource = in.ActionSource
	return p
}

func parseContents(raw json.RawMessage, d *drops) []content {
	const f = "properties.contents"
	var items []json.RawMessage
	if trimJSON(raw)[0] != '[' || json.Unmarshal(raw, &items) != nil {
		d.add(f, "must be an array of objects")
		return nil
	}
	if len(items) > maxContents {
		d.add(f, "more than "+strconv.Itoa(maxContents)+" items; the rest were dropped")
		items = items[:maxContents]
	}
	out := make([]content, 0, len(items))
	for i, it := range items {
		fi := f + "[" + strconv.Itoa(i) + "]"
		var in contentIn
		if t := trimJSON(it); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &in) != nil {
			d.add(fi, "must be an object")
			continue
		}
		c := content{
			ID:       idField(in.ContentID, fi+".content_id", d),
			Type:     enumField(in.ContentType, fi+".content_type", d, "product", "product_group"),
			Name:     strField(in.ContentName, fi+".content_name", d),
			Category: strField(in.ContentCategory, fi+".content_category", d),
			Brand:    strField(in.Brand, fi+".brand", d),
			Quantity: intField(in.Quantity, fi+".quantity", d),
			Price:    numField(in.Price, fi+".price", d),
		}
		if c.ID == "" {
			c.ID = idField(in.ID, fi+".id", d)
		}
		if c == (content{}) {
			continue // nothing usable left (its fields were reported)
		}
		c.Index = i
		out = append(out, c)
	}
	return out
}

func trimJSON(b []byte) []byte { return bytes.TrimSpace(b) }

// isNull reports whether raw is absent, blank or the JSON null.
func isNull(raw json.RawMessage) bool {
	t := trimJSON(raw)
	return len(t) == 0 || string(t) == "null"
}

// strField decodes a JSON string; null or absent is "".
func strField(raw json.RawMessage, field string, d *drops) string {
	if isNull(raw) {
		return ""
	}
	var s string
	if t := trimJSON(raw); t[0] != '"' || json.Unmarshal(t, &s) != nil {
		d.add(field, "must be a string")
		return ""
	}
	return s
}

// idField decodes an identifier: a string, or a number kept as written.
func idField(raw json.RawMessage, field string, d *drops) string {
	if isNull(raw) {
		return ""
	}
	t := trimJSON(raw)
	if t[0] == '"' {
		return strField(t, field, d)
	}
	if isNumberLiteral(t) {
		return string(t)
	}
	d.add(field, "must be a string or a number")
	return ""
}

func idList(raw json.RawMessage, field string, d *drops) []string {
	if isNull(raw) {
		return nil
	}
	var items []json.RawMessage
	if trimJSON(raw)[0] != '[' || json.Unmarshal(raw, &items) != nil {
		d.add(field, "must be an array of strings")
		return nil
	}
	var out []string
	for i, it := range items {
		if id := idField(it, field+"["+strconv.Itoa(i)+"]", d); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// enumField is strField restricted to the allowed values.
func enumField(raw json.RawMessage, field string, d *drops, allowed ...string) string {
	s := strField(raw, field, d)
	if s == "" || slices.Contains(allowed, s) {
		return s
	}
	d.add(field, "must be one of "+strings.Join(allowed, ", "))
	return ""
}

// numField decodes a finite number ≥ 0.
func numField(raw json.RawMessage, field string, d *drops) *float64 {
	if isNull(raw) {
		return nil
	}
	t := trimJSON(raw)
	var v float64
	if !isNumberLiteral(t) || json.Unmarshal(t, &v) != nil || math.IsInf(v, 0) || math.IsNaN(v) || v < 0 {
		d.add(field, "must be a finite number ≥ 0")
		return nil
	}
	return &v
}

// intField decodes a whole number between 0 and 1e9 (2.0 counts as 2).
func intField(raw json.RawMessage, field string, d *drops) *int64 {
	if isNull(raw) {
		return nil
	}
	v := numField(raw, field, &drops{})
	if v == nil || *v != math.Trunc(*v) || *v > 1e9 {
		d.add(field, "must be a whole number between 0 and 1000000000")
		return nil
	}
	n := int64(*v)
	return &n
}

// isNumberLiteral reports whether b is a JSON number (RFC 8259 grammar).
func isNumberLiteral(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i == len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	return i == len(b)
}

func isCurrency(s string) bool {
	return len(s) == 3 && 'A' <= s[0] && s[0] <= 'Z' && 'A' <= s[1] && s[1] <= 'Z' && 'A' <= s[2] && s[2] <= 'Z'
}
