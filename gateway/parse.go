package gateway

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"
)

// Wire formats of POST /e and POST /v1/events. Both are
// {"site","user","consent","data":[event…]}; a browser batch usually sets
// user and consent once at batch level, a server batch per event. An event's
// own user or consent fields override the batch's, field by field.

type batchIn struct {
	Site    string            `json:"site"`
	User    *userIn           `json:"user"`
	Consent *consentIn        `json:"consent"`
	Data    []json.RawMessage `json:"data"`
}

// Events are kept as json.RawMessage, which copies. A non-copying reference
// is NOT safe: goccy/go-json decodes from a pooled buffer that it releases
// when Unmarshal returns and that any later decode, in this request or
// another, may overwrite.

type eventIn struct {
	Event      string          `json:"event"`
	EventTime  *float64        `json:"event_time"`
	EventID    *string         `json:"event_id"`
	User       *userIn         `json:"user"`
	Properties json.RawMessage `json:"properties"`
	Page       *pageIn         `json:"page"`
	Consent    *consentIn      `json:"consent"`
}

type userIn struct {
	Email      string `json:"email"`
	Phone      string `json:"phone"`
	ExternalID string `json:"external_id"`
	AnonID     string `json:"anon_id"`
	IP         string `json:"ip"`
	UserAgent  string `json:"user_agent"`
	TTCLID     string `json:"ttclid"`
	TTP        string `json:"ttp"`
	FBC        string `json:"fbc"`
	FBP        string `json:"fbp"`
	GCLID      string `json:"gclid"`
	MSCLKID    string `json:"msclkid"`
}

// merge fills u's empty fields from def (the batch-level user).
func (u *userIn) merge(def *userIn) {
	if def == nil {
		return
	}
	for _, p := range [...]struct {
		dst *string
		src string
	}{
		{&u.Email, def.Email}, {&u.Phone, def.Phone}, {&u.ExternalID, def.ExternalID},
		{&u.AnonID, def.AnonID}, {&u.IP, def.IP}, {&u.UserAgent, def.UserAgent},
		{&u.TTCLID, def.TTCLID}, {&u.TTP, def.TTP}, {&u.FBC, def.FBC}, {&u.FBP, def.FBP},
		{&u.GCLID, def.GCLID}, {&u.MSCLKID, def.MSCLKID},
	} {
		if *p.dst == "" {
			*p.dst = p.src
		}
	}
}

type pageIn struct {
	URL      string `json:"url"`
	Referrer string `json:"referrer"`
	Title    string `json:"title"`
}

type consentIn struct {
	TCF        *string         `json:"tcf"`
	GPP        *string         `json:"gpp"`
	GPPSID     []int           `json:"gpp_sid"`
	USP        *string         `json:"usp"`
	GPC        *bool           `json:"gpc"`
	Categories map[string]bool `json:"categories"`
}

// merge fills c's unset signals from def.
func (c *consentIn) merge(def *consentIn) {
	if def == nil {
		return
	}
	if c.TCF == nil {
		c.TCF = def.TCF
	}
	if c.GPP == nil {
		c.GPP, c.GPPSID = def.GPP, def.GPPSID
	}
	if c.USP == nil {
		c.USP = def.USP
	}
	if c.GPC == nil {
		c.GPC = def.GPC
	}
	if c.Categories == nil {
		c.Categories = def.Categories
	}
}

// propsIn is what validation knows about "properties"; other keys are passed
// through as sent.
type propsIn struct {
	Currency    *string     `json:"currency"`
	Value       *float64    `json:"value"`
	Contents    []contentIn `json:"contents"`
	ContentType *string     `json:"content_type"`
	ContentID   *string     `json:"content_id"`
	Query       *string     `json:"query"`
	Description *string     `json:"description"`
	OrderID     *string     `json:"order_id"`
	Percent     *float64    `json:"percent"`
	Seconds     *float64    `json:"seconds"`
	// Personal data must travel in "user", where it is hashed.
	Email json.RawMessage `json:"email"`
	Phone json.RawMessage `json:"phone"`
}

type contentIn struct {
	ContentID       *string  `json:"content_id"`
	ContentType     *string  `json:"content_type"`
	ContentName     *string  `json:"content_name"`
	ContentCategory *string  `json:"content_category"`
	Brand           *string  `json:"brand"`
	Quantity        *int64   `json:"quantity"`
	Price           *float64 `json:"price"`
}

// decodeError turns a decoder error into the field it is about and a message
// safe to show (it never echoes the value). prefix is prepended to the field
// path; syntax errors report the byte offset.
func decodeError(err error, prefix string) (field, msg string, syntax bool) {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		f := fieldPath(te.Field)
		switch {
		case prefix == "":
		case f == "":
			f = prefix
		default:
			f = prefix + "." + f
		}
		return f, "must be " + typeName(te.Type), false
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return prefix, "is not valid JSON (at byte " + strconv.FormatInt(se.Offset, 10) + ")", true
	}
	return prefix, "is not valid JSON", true
}

// fieldPath turns the decoder's "contents.0.quantity" into
// "contents[0].quantity".
func fieldPath(f string) string {
	if f == "" || !strings.ContainsAny(f, "0123456789") {
		return f
	}
	parts := strings.Split(f, ".")
	var b strings.Builder
	for i, p := range parts {
		if _, err := strconv.Atoi(p); err == nil && i > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func typeName(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "an object" // json.RawMessage fields hold objects here
		}
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of another type"
}

// parseBatch decodes a batch body. A body that is not JSON, or whose batch
// fields have the wrong type, refuses the whole request; events are decoded
// one by one later, so one bad event cannot spoil the others.
func parseBatch(body []byte, b *batchIn) *requestError {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return reqErr(reasonInvalidJSON, "", "body is empty; expected a JSON object {\"site\":…,\"data\":[…]}")
	}
	if body[0] != '{' {
		return reqErr(reasonInvalidJSON, "", "body must be a JSON object {\"site\":…,\"data\":[…]}")
	}
	if err := json.Unmarshal(body, b); err != nil {
		field, msg, syntax := decodeError(err, "")
		if syntax {
			return reqErr(reasonInvalidJSON, "", "body "+msg)
		}
		return reqErr(reasonInvalidField, field, field+": "+msg)
	}
	return nil
}

// parseEvent decodes data[i]. It returns the field and message of the first
// problem, or "" and "" when the event decoded.
func parseEvent(raw []byte, ev *eventIn) (field, msg string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return "", "must be an object"
	}
	if err := json.Unmarshal(raw, ev); err != nil {
		f, m, _ := decodeError(err, "")
		return f, m
	}
	return "", ""
}
