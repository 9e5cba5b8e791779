package consent

import (
	"encoding/base64"
	"fmt"
)

// bitReader reads big-endian bit fields from a decoded base64url segment.
// Every read checks the length: a truncated string is an error naming the
// field and the bit offset, never a zero value presented as data.
type bitReader struct {
	b        []byte
	pos      int // in bits
	err      error
	expanded int // vendor ids expanded from ranges so far (bounded)
}

func newBitReader(b []byte) *bitReader { return &bitReader{b: b} }

// decodeSegment base64url-decodes s (padding optional, as the specs allow).
func decodeSegment(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
			return nil, fmt.Errorf("character %q at offset %d is not base64url", c, i)
		}
	}
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		// RawURLEncoding refuses a final group of one character; with
		// trailing bits set it is still malformed.
		return nil, fmt.Errorf("not base64url: %v", err)
	}
	return b, nil
}

func (r *bitReader) bitsLeft() int { return len(r.b)*8 - r.pos }

// uint reads n ≤ 64 bits as an unsigned integer.
func (r *bitReader) uint(field string, n int) uint64 {
	if r.err != nil {
		return 0
	}
	if n > r.bitsLeft() {
		r.err = fmt.Errorf("%s: string ends at bit %d, %d bits needed at bit %d", field, len(r.b)*8, n, r.pos)
		return 0
	}
	var v uint64
	for i := 0; i < n; i++ {
		byteIdx, bit := (r.pos+i)/8, 7-(r.pos+i)%8
		v = v<<1 | uint64(r.b[byteIdx]>>bit&1)
	}
	r.pos += n
	return v
}

func (r *bitReader) int(field string, n int) int { return int(r.uint(field, n)) }

func (r *bitReader) bool(field string) bool { return r.uint(field, 1) == 1 }

// letters reads n 6-bit letters (A=0 … Z=25), as TCF languages and countries.
func (r *bitReader) letters(field string, n int) string {
	out := make([]byte, n)
	for i := range out {
		v := r.uint(field, 6)
		if r.err == nil && v > 25 {
			r.err = fmt.Errorf("%s: letter value %d at bit %d is not A-Z", field, v, r.pos-6)
		}
		out[i] = 'A' + byte(v)
	}
	return string(out)
}

// bitfield reads n bits and returns the 1-based ids of the set ones.
func (r *bitReader) bitfield(field string, n int) []int {
	ids := []int{}
	for i := 1; i <= n; i++ {
		if r.bool(field) {
			ids = append(ids, i)
		}
	}
	return ids
}

// fail records an error if none is recorded yet.
func (r *bitReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}
