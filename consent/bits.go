package consent

import "fmt"

// bitReader reads big-endian bit fields from a base64url segment. IAB
// strings pad to whole 6-bit characters, not bytes, so the segment is decoded
// here character by character (encoding/base64 refuses a final group of one
// character and drops the tail bits of others). Every read checks the
// length: a truncated string is an error naming the field and bit offset,
// never a zero value presented as data.
type bitReader struct {
	b        []byte // one 6-bit value per character
	pos      int    // in bits
	err      error
	expanded int // vendor ids expanded from ranges so far (bounded)
}

func newBitReader(b []byte) *bitReader { return &bitReader{b: b} }

// decodeSegment turns a base64url segment (trailing '=' allowed) into its
// 6-bit values.
func decodeSegment(s string) ([]byte, error) {
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	if s == "" {
		return nil, fmt.Errorf("empty segment")
	}
	out := make([]byte, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			out[i] = c - 'A'
		case c >= 'a' && c <= 'z':
			out[i] = c - 'a' + 26
		case c >= '0' && c <= '9':
			out[i] = c - '0' + 52
		case c == '-':
			out[i] = 62
		case c == '_':
			out[i] = 63
		default:
			return nil, fmt.Errorf("character %q at offset %d is not base64url", c, i)
		}
	}
	return out, nil
}

func (r *bitReader) bitsLeft() int { return len(r.b)*6 - r.pos }

// uint reads n ≤ 64 bits as an unsigned integer.
func (r *bitReader) uint(field string, n int) uint64 {
	if r.err != nil {
		return 0
	}
	if n > r.bitsLeft() {
		r.err = fmt.Errorf("%s: string ends at bit %d, %d bits needed at bit %d", field, len(r.b)*6, n, r.pos)
		return 0
	}
	var v uint64
	for i := 0; i < n; i++ {
		idx, bit := (r.pos+i)/6, 5-(r.pos+i)%6
		v = v<<1 | uint64(r.b[idx]>>bit&1)
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
