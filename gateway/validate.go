package gateway

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/gateway/event"
)

// StandardEvents are the event names every destination understands (TikTok's
// standard events). Other names must match ^[A-Za-z][A-Za-z0-9_]{0,63}$.
var StandardEvents = []string{
	"PageView", "ViewContent", "AddToCart", "InitiateCheckout", "AddPaymentInfo",
	"CompletePayment", "PlaceAnOrder", "Lead", "CompleteRegistration", "Subscribe",
	"Search", "AddToWishlist", "ClickButton", "Contact", "Download", "SubmitForm",
}

var standardEvents = func() map[string]bool {
	m := make(map[string]bool, len(StandardEvents))
	for _, n := range StandardEvents {
		m[n] = true
	}
	return m
}()

// validEventName reports whether name is standard or a valid custom name.
func validEventName(name string) bool {
	if standardEvents[name] {
		return true
	}
	if len(name) == 0 || len(name) > 64 || !isLetter(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isLetter(c) && !('0' <= c && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// printable reports whether s is 1..max printable ASCII characters.
func printable(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// charset reports whether every byte of s is a letter, digit or one of extra.
func charset(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isLetter(c) || '0' <= c && c <= '9' {
			continue
		}
		if bytes.IndexByte([]byte(extra), c) < 0 {
			return false
		}
	}
	return true
}

// reqInfo is what the request itself says about every event in it.
type reqInfo struct {
	source     event.Source
	sourceName string
	site       string
	now        time.Time
	// Browser requests: identity from the request, not the body.
	anonID    string
	ip        string // already truncated
	userAgent string
	gpcHeader bool
	// Batch-level defaults.
	user    *userIn
	consent *consentIn
	// geo is where trusted headers say the user is (browser requests).
	geo consent.Geo
}

// limits used by validation, copied from Config.Limits.
type eventLimits struct {
	maxAge, maxFuture time.Duration
}

// issues collects a batch's refusals and warnings.
type issues struct {
	errors   []fieldError
	warnings []fieldError
}

func (is *issues) fail(i int, field, msg string, r reason) {
	idx := i
	is.errors = append(is.errors, fieldError{Index: &idx, Field: eventField(i, field), Message: msg, reason: r})
}

func (is *issues) warn(i int, field, msg string) {
	idx := i
	is.warnings = append(is.warnings, fieldError{Index: &idx, Field: eventField(i, field), Message: msg})
}

// buildEnvelope validates event i and fills env. It returns false (after
// recording why) when the event is refused. Identifiers that cannot be used
// (a malformed phone, say) are dropped with a warning; the event is kept.
func buildEnvelope(ev *eventIn, ri *reqInfo, lim eventLimits, i int, is *issues, env *event.Envelope) bool {
	fail := func(field, msg string) bool { is.fail(i, field, msg, reasonInvalidField); return false }

	if ev.Event == "" {
		return fail("event", "required")
	}
	if !validEventName(ev.Event) {
		return fail("event", "must be a standard event name or match ^[A-Za-z][A-Za-z0-9_]{0,63}$")
	}
	*env = event.Envelope{
		ID:         event.NewID(ri.now),
		Site:       ri.site,
		Source:     ri.source,
		SourceName: ri.sourceName,
		Event:      ev.Event,
		ReceivedAt: ri.now.UnixMilli(),
	}

	// event_time: unix seconds, or milliseconds when it is too large to be
	// seconds (1e11 s is the year 5138). Absent means now.
	if ev.EventTime == nil {
		env.EventTime = env.ReceivedAt
	} else {
		v := *ev.EventTime
		if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			return fail("event_time", "must be a positive unix time in seconds or milliseconds")
		}
		ms := int64(v * 1000)
		if v >= 1e11 {
			ms = int64(v)
		}
		if v >= 1e14 {
			return fail("event_time", "must be unix seconds or milliseconds (this looks like microseconds or later)")
		}
		if ri.now.UnixMilli()-ms > lim.maxAge.Milliseconds() {
			return fail("event_time", "is more than "+fmtDur(lim.maxAge)+" in the past")
		}
		if ms-ri.now.UnixMilli() > lim.maxFuture.Milliseconds() {
			return fail("event_time", "is more than "+fmtDur(lim.maxFuture)+" in the future")
		}
		env.EventTime = ms
	}

	switch {
	case ev.EventID == nil:
		// A browser event gets an id so its server copy can be matched later
		// (the tag normally sends one). A server event without one cannot be
		// deduplicated; it is accepted and counted.
		env.EventID, env.EventIDAssigned = env.ID, true
	case !printable(*ev.EventID, 128):
		return fail("event_id", "must be 1 to 128 printable ASCII characters")
	default:
		env.EventID = *ev.EventID
	}

	if !validateProperties(ev.Properties, i, is, env) {
		return false
	}

	if p := ev.Page; p != nil {
		if p.URL != "" && !validURL(p.URL) {
			return fail("page.url", "must be an absolute http(s) URL of at most 4096 characters")
		}
		if p.Referrer != "" && !validURL(p.Referrer) {
			return fail("page.referrer", "must be an absolute http(s) URL of at most 4096 characters")
		}
		if len(p.Title) > 512 {
			return fail("page.title", "must be at most 512 bytes")
		}
		env.Page = event.Page{URL: p.URL, Referrer: p.Referrer, Title: p.Title}
	}

	// Consent signals: shape only here; the consent engine decodes them.
	c := consentIn{}
	if ev.Consent != nil {
		c = *ev.Consent
	}
	c.merge(ri.consent)
	if f, m := checkConsent(&c); f != "" {
		return fail("consent."+f, m)
	}
	sig := &env.Consent.Signals
	if c.TCF != nil {
		sig.TCF = *c.TCF
	}
	if c.GPP != nil {
		sig.GPP, sig.GPPSID = *c.GPP, c.GPPSID
	}
	if c.USP != nil {
		sig.USP = *c.USP
	}
	sig.GPC = ri.gpcHeader || (c.GPC != nil && *c.GPC)
	sig.Categories = c.Categories

	identify(ev.User, ri, i, is, &env.User)
	env.Profile = event.ProfileID(&env.User)
	return true
}

func fmtDur(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// validURL accepts absolute http(s) URLs with a host, of at most 4096
// bytes, without spaces or control characters. (A hand check: url.Parse was
// 6% of the bytes allocated per event in BenchmarkParseValidate.)
func validURL(s string) bool {
	if len(s) > 4096 {
		return false
	}
	var rest string
	switch {
	case len(s) > 8 && strings.EqualFold(s[:8], "https://"):
		rest = s[8:]
	case len(s) > 7 && strings.EqualFold(s[:7], "http://"):
		rest = s[7:]
	default:
		return false
	}
	host := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host = rest[:i]
	}
	if host == "" || host[0] == ':' || host[0] == '@' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// validateProperties checks the known property keys and keeps the object,
// compacted, for the envelope.
func validateProperties(raw json.RawMessage, i int, is *issues, env *event.Envelope) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return true
	}
	fail := func(field, msg string) bool { is.fail(i, field, msg, reasonInvalidField); return false }
	if raw[0] != '{' {
		return fail("properties", "must be an object")
	}
	var p propsIn
	if err := json.Unmarshal(raw, &p); err != nil {
		f, m, _ := decodeError(err, "properties")
		return fail(f, m)
	}
	if p.Email != nil || p.Phone != nil {
		f := "properties.email"
		if p.Email == nil {
			f = "properties.phone"
		}
		return fail(f, "personal data belongs in user, where it is hashed on arrival")
	}
	if p.Value != nil {
		if v := *p.Value; math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fail("properties.value", "must be a finite number ≥ 0")
		}
		if p.Currency == nil {
			return fail("properties.currency", "required when value is set (ISO 4217 code such as USD)")
		}
	}
	if p.Currency != nil && !isCurrency(*p.Currency) {
		return fail("properties.currency", "must be three uppercase letters (ISO 4217, e.g. USD)")
	}
	for _, s := range []struct {
		name string
		v    *string
		max  int
	}{{"content_type", p.ContentType, 64}, {"content_id", p.ContentID, 256}, {"query", p.Query, 512}, {"description", p.Description, 1024}, {"order_id", p.OrderID, 128}} {
		if s.v != nil && len(*s.v) > s.max {
			return fail("properties."+s.name, "must be at most "+strconv.Itoa(s.max)+" bytes")
		}
	}
	if p.Percent != nil && (*p.Percent < 0 || *p.Percent > 100) {
		return fail("properties.percent", "must be between 0 and 100")
	}
	if p.Seconds != nil && (*p.Seconds < 0 || *p.Seconds > 86400) {
		return fail("properties.seconds", "must be between 0 and 86400")
	}
	if len(p.Contents) > 100 {
		return fail("properties.contents", "must have at most 100 items")
	}
	for j, c := range p.Contents {
		f := "properties.contents[" + strconv.Itoa(j) + "]."
		switch {
		case c.ContentID != nil && (len(*c.ContentID) == 0 || len(*c.ContentID) > 256):
			return fail(f+"content_id", "must be 1 to 256 bytes")
		case c.Quantity != nil && (*c.Quantity < 0 || *c.Quantity > 1e9):
			return fail(f+"quantity", "must be an integer between 0 and 1000000000")
		case c.Price != nil && (math.IsNaN(*c.Price) || math.IsInf(*c.Price, 0) || *c.Price < 0):
			return fail(f+"price", "must be a finite number ≥ 0")
		}
		for _, s := range []struct {
			name string
			v    *string
		}{{"content_type", c.ContentType}, {"content_name", c.ContentName}, {"content_category", c.ContentCategory}, {"brand", c.Brand}} {
			if s.v != nil && len(*s.v) > 256 {
				return fail(f+s.name, "must be at most 256 bytes")
			}
		}
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return fail("properties", "is not valid JSON")
	}
	env.Properties = buf.Bytes()
	return true
}

func isCurrency(s string) bool {
	return len(s) == 3 && 'A' <= s[0] && s[0] <= 'Z' && 'A' <= s[1] && s[1] <= 'Z' && 'A' <= s[2] && s[2] <= 'Z'
}

// checkConsent checks the shape of each signal, returning the field and a
// message for the first bad one.
func checkConsent(c *consentIn) (string, string) {
	if c.TCF != nil && (len(*c.TCF) > 8192 || !charset(*c.TCF, "-_.")) {
		return "tcf", "must be a TCF string (base64url, at most 8192 characters)"
	}
	if c.GPP != nil && (len(*c.GPP) > 8192 || !charset(*c.GPP, "-_.~")) {
		return "gpp", "must be a GPP string (base64url sections separated by '~', at most 8192 characters)"
	}
	if len(c.GPPSID) > 64 {
		return "gpp_sid", "must list at most 64 section ids"
	}
	for k, id := range c.GPPSID {
		if id < 1 || id > 255 {
			return "gpp_sid[" + strconv.Itoa(k) + "]", "must be a GPP section id between 1 and 255"
		}
	}
	if c.GPPSID != nil && c.GPP == nil {
		return "gpp_sid", "needs gpp"
	}
	if c.USP != nil {
		u := *c.USP
		if len(u) != 4 || u[0] != '1' || !uspChar(u[1]) || !uspChar(u[2]) || !uspChar(u[3]) {
			return "usp", "must be a US Privacy string such as 1YNN (version 1, then Y, N or - three times)"
		}
	}
	if len(c.Categories) > 32 {
		return "categories", "must have at most 32 categories"
	}
	for k := range c.Categories {
		if len(k) == 0 || len(k) > 32 || !isLetter(k[0]) || !charset(k, "_") {
			return "categories", "names must be 1 to 32 letters, digits or '_', starting with a letter"
		}
	}
	return "", ""
}

func uspChar(c byte) bool { return c == 'Y' || c == 'N' || c == '-' || c == 'y' || c == 'n' }

// identify hashes personal data and fills the envelope's user. For browser
// requests the anonymous id, IP and user agent come from the request.
func identify(in *userIn, ri *reqInfo, i int, is *issues, out *event.User) {
	u := userIn{}
	if in != nil {
		u = *in
	}
	u.merge(ri.user)
	var err error
	if u.Email != "" {
		if out.EmailSHA256, err = event.HashEmail(u.Email); err != nil {
			is.warn(i, "user.email", "dropped: "+err.Error())
		}
	}
	if u.Phone != "" {
		if out.PhoneSHA256, err = event.HashPhone(u.Phone); err != nil {
			is.warn(i, "user.phone", "dropped: "+err.Error())
		} else {
			out.PhoneE164SHA256, _ = event.HashPhoneE164(u.Phone) // same input, same verdict
		}
	}
	if u.ExternalID != "" {
		if out.ExternalIDSHA256, err = event.HashExternalID(u.ExternalID); err != nil {
			is.warn(i, "user.external_id", "dropped: "+err.Error())
		}
	}
	if ri.source == event.SourceBrowser {
		out.AnonID, out.IP, out.UserAgent = ri.anonID, ri.ip, ri.userAgent
	} else {
		if u.AnonID != "" {
			if printable(u.AnonID, 128) {
				out.AnonID = u.AnonID
			} else {
				is.warn(i, "user.anon_id", "dropped: must be 1 to 128 printable ASCII characters")
			}
		}
		if u.IP != "" {
			if out.IP = event.TruncateIP(u.IP); out.IP == "" {
				is.warn(i, "user.ip", "dropped: not an IP address")
			}
		}
		out.UserAgent = clip(u.UserAgent, 512)
	}
	for _, c := range [...]struct {
		name string
		src  string
		dst  *string
	}{{"ttclid", u.TTCLID, &out.TTCLID}, {"ttp", u.TTP, &out.TTP}, {"fbc", u.FBC, &out.FBC}, {"fbp", u.FBP, &out.FBP}, {"gclid", u.GCLID, &out.GCLID}, {"msclkid", u.MSCLKID, &out.MSCLKID}} {
		if c.src == "" {
			continue
		}
		if printable(c.src, 512) {
			*c.dst = c.src
		} else {
			is.warn(i, "user."+c.name, "dropped: must be at most 512 printable ASCII characters")
		}
	}
}

// clip shortens s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
