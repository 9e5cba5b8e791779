package event

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"time"
)

// Errors returned by the normalisers. Messages are safe to show to the sender:
// they never repeat the value.
var (
	ErrEmail      = errors.New("not an email address")
	ErrPhone      = errors.New("not a phone number (expected E.164: 7 to 15 digits with country code)")
	ErrExternalID = errors.New("external id must be 1 to 256 characters")
)

// IsSHA256Hex reports whether s is 64 hex digits, which Tagway takes as a
// value the sender already hashed.
func IsSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// HashEmail normalises an email (trim, lowercase) and returns its SHA-256 in
// lowercase hex. A 64-hex value is taken as already hashed and lowercased.
func HashEmail(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if IsSHA256Hex(s) {
		return strings.ToLower(s), nil
	}
	s = strings.ToLower(s)
	at := strings.LastIndexByte(s, '@')
	if at < 1 || at == len(s)-1 || len(s) > 254 || strings.ContainsAny(s, " \t\r\n") {
		return "", ErrEmail
	}
	return sha256Hex(s), nil
}

// NormalizePhone returns the E.164 digits of a phone number, without the
// leading "+": separators (space, dot, dash, parentheses) are dropped and an
// international "00" prefix is removed. It cannot add a missing country code.
func NormalizePhone(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	var b [32]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			if n == len(b) {
				return "", ErrPhone
			}
			b[n] = c
			n++
		case c == '+' && n == 0 && i == 0:
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", ErrPhone
		}
	}
	d := string(b[:n])
	if s != "" && s[0] != '+' && strings.HasPrefix(d, "00") {
		d = d[2:]
	}
	if len(d) < 7 || len(d) > 15 || d[0] == '0' {
		return "", ErrPhone
	}
	return d, nil
}

// HashPhone normalises a phone (NormalizePhone) and returns its SHA-256 hex.
// A 64-hex value is taken as already hashed.
func HashPhone(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if IsSHA256Hex(s) {
		return strings.ToLower(s), nil
	}
	d, err := NormalizePhone(s)
	if err != nil {
		return "", err
	}
	return sha256Hex(d), nil
}

// HashPhoneE164 is HashPhone for destinations that hash the E.164 form
// with its "+" (TikTok's Events API: forward's tiktok-events/v2 profile). A
// 64-hex value is taken as already hashed and returned as it is: the sender
// chose the normalisation.
func HashPhoneE164(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if IsSHA256Hex(s) {
		return strings.ToLower(s), nil
	}
	d, err := NormalizePhone(s)
	if err != nil {
		return "", err
	}
	return sha256Hex("+" + d), nil
}

// HashExternalID trims an external id and returns its SHA-256 hex. Case is
// kept: external ids are the advertiser's own and may be case-sensitive.
func HashExternalID(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if IsSHA256Hex(s) {
		return strings.ToLower(s), nil
	}
	if s == "" || len(s) > 256 {
		return "", ErrExternalID
	}
	return sha256Hex(s), nil
}

// TruncateIP anonymises an address: IPv4 keeps its /24, IPv6 its /48. It
// returns "" for anything that is not an IP address.
func TruncateIP(raw string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(raw))
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.Addr().String()
}

// NewID returns a 128-bit id as 32 lowercase hex characters: 48 bits of unix
// milliseconds followed by 80 random bits, so ids sort by creation time.
func NewID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never returns an error (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// NewAnonID returns a random 128-bit cookie id as 32 lowercase hex characters.
func NewAnonID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// IsAnonID reports whether s has the shape NewAnonID produces.
func IsAnonID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
