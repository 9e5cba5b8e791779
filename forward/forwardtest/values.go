package forwardtest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// SHA256Hex returns the lowercase hex SHA-256 of s, the form both APIs
// expect hashed identifiers in. A helper for building test requests.
func SHA256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// decodeJSON decodes one JSON value, keeping numbers as json.Number so
// integers and fractions stay distinguishable. Trailing data is an error.
func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// asInt returns v as an integer if it is a JSON number with an integral
// value (1700000000 or 1.7e9, not 1.5 and not "1700000000").
func asInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
		return 0, false
	}
	return int64(f), true
}

// asNumber returns v as a float if it is a JSON number.
func asNumber(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// isSHA256Hex reports whether s is a lowercase hex SHA-256 (64 characters,
// 0-9a-f), the only form either fake takes for a hashed identifier. Meta's
// own SDK treats exactly ^[a-f0-9]{64}$ as "already hashed"
// (facebook/facebook-python-business-sdk,
// facebook_business/adobjects/serverside/normalize.py, sha256_pattern).
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isIP(s string) bool { return net.ParseIP(s) != nil }

// idString returns an event_id for the log: strings as they are, other
// JSON values in their JSON form, "" when absent.
func idString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// looksLikeMillis reports whether a unix timestamp is far too large to be
// seconds: 1e11 seconds is the year 5138, 1e11 milliseconds is 1973.
func looksLikeMillis(ts int64) bool { return ts >= 1e11 }

// timeWindow checks ts (unix seconds) against [now-maxAge, now+maxFuture];
// it returns "old", "future" or "".
func timeWindow(ts int64, now time.Time, maxAge, maxFuture time.Duration) string {
	t := time.Unix(ts, 0)
	switch {
	case looksLikeMillis(ts) || t.After(now.Add(maxFuture)):
		return "future"
	case t.Before(now.Add(-maxAge)):
		return "old"
	}
	return ""
}

// newTraceID returns an id shaped like a Graph API fbtrace_id
// ("A6UyEgg_HdoiRX9duxcBOjb": 23 characters of [A-Za-z0-9_-]).
func newTraceID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	var b [23]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// newRequestID returns an id shaped like a TikTok request_id
// ("2026061015295501023125104093255": a yyyyMMddHHmmss UTC time followed
// by digits).
func newRequestID(now time.Time) string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	var sb strings.Builder
	sb.WriteString(now.UTC().Format("20060102150405"))
	for _, x := range b {
		sb.WriteString(strconv.Itoa(int(x) % 100 / 10))
		sb.WriteString(strconv.Itoa(int(x) % 10))
	}
	return sb.String()[:31]
}

// validCurrency reports whether s is an active ISO 4217 alphabetic code.
// TikTok documents "currency: The 4217 currency code. Example: USD" (its
// Events API 2.0 sample request) and Meta "a valid ISO 4217 three-digit
// currency code"; Meta's own SDK lowercases it before sending
// (normalize.py: "Please follow ISO 3-letter ISO 4217 standard …
// Eg: usd"), so case is not significant.
func validCurrency(s string) bool {
	_, ok := iso4217[strings.ToUpper(s)]
	return len(s) == 3 && ok
}

// iso4217 is the list of active ISO 4217 alphabetic codes (list one of the
// standard, https://www.iso.org/iso-4217-currency-codes.html), including
// funds and precious-metal codes.
var iso4217 = func() map[string]struct{} {
	const codes = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD " +
		"CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP " +
		"GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR " +
		"LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP " +
		"PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP " +
		"TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD " +
		"XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL"
	m := map[string]struct{}{}
	for _, c := range strings.Fields(codes) {
		m[c] = struct{}{}
	}
	return m
}()
