// Package wire is the small binary encoding Tagway's stored records use
// (the audit log's records, consent state): uvarint-prefixed strings, hex
// strings kept as their bytes, and a decoder whose errors name the field.
// Each record type writes its fields in a fixed order after a format byte
// of its own; the decoder never panics on bad input.
package wire

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// AppendStr appends s as a uvarint length and its bytes.
func AppendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// AppendHex appends s, which is usually lowercase hex or a profile id
// (one kind byte, ':' and lowercase hex, such as "a:<32 hex>"): a tag
// byte, then (1) its bytes with their count, (2) the kind byte and the
// hex's bytes with their count, or (0) s as AppendStr. Dec.Hex gives back
// exactly s either way. A profile id takes 19 bytes instead of 36.
func AppendHex(dst []byte, s string) []byte {
	switch {
	case isHex(s):
		dst = append(dst, 1)
	case len(s) > 2 && s[1] == ':' && isHex(s[2:]):
		dst = append(dst, 2, s[0])
		s = s[2:]
	default:
		return AppendStr(append(dst, 0), s)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s)/2))
	dst, _ = hex.AppendDecode(dst, []byte(s)) // checked: lowercase hex of even length
	return dst
}

// isHex reports whether s is lowercase hex of even, non-zero length.
func isHex(s string) bool { return len(s) > 0 && len(s)%2 == 0 && isLowerHex(s) }

// AppendBool appends b as one byte.
func AppendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Dec reads fields in order. The first error stops it: later reads return
// zero values, and Err says "<What>'s <field> is …".
type Dec struct {
	B    []byte
	What string // what is decoded, for errors: "record", "consent state"
	Err  error
}

// Fail records an error about field (the first one wins).
func (d *Dec) Fail(field, what string) {
	if d.Err == nil {
		d.Err = fmt.Errorf("%s's %s is %s", d.What, field, what)
	}
	d.B = nil
}

// Done returns the first error, or one for bytes left over after the last
// field.
func (d *Dec) Done(last string) error {
	if d.Err == nil && len(d.B) > 0 {
		d.Err = fmt.Errorf("%s has %d bytes after its %s", d.What, len(d.B), last)
	}
	return d.Err
}

// Open starts reading a stored value whose binary form begins with the
// byte format. A value stored as JSON by an earlier version (it begins with
// '{') is unmarshalled into legacy instead, and Open returns a nil Dec with
// the outcome. what names the value in errors ("record").
func Open(b []byte, format byte, what string, legacy any) (*Dec, error) {
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, legacy); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", what, err)
		}
		return nil, nil
	}
	if len(b) == 0 || b[0] != format {
		return nil, errors.New(what + " has an unknown format")
	}
	return &Dec{B: b[1:], What: what}, nil
}

// Uvarint reads an unsigned varint.
func (d *Dec) Uvarint(field string) uint64 { return readVarint(d, field, binary.Uvarint) }

// Varint reads a signed varint.
func (d *Dec) Varint(field string) int64 { return readVarint(d, field, binary.Varint) }

func readVarint[T uint64 | int64](d *Dec, field string, read func([]byte) (T, int)) T {
	if d.Err != nil {
		return 0
	}
	v, n := read(d.B)
	if n <= 0 {
		d.Fail(field, "truncated")
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Count reads a uvarint count of items that take at least one byte each,
// refusing one larger than what is left (no allocation from a bad count).
func (d *Dec) Count(field string) int {
	n := d.Uvarint(field)
	if n > uint64(len(d.B)) {
		d.Fail(field, "truncated")
		return 0
	}
	return int(n)
}

// Bytes reads AppendStr's bytes. The slice aliases the input: copy it if the
// input is not yours to keep (a Badger value).
func (d *Dec) Bytes(field string) []byte {
	n := d.Count(field)
	if d.Err != nil {
		return nil
	}
	v := d.B[:n:n]
	d.B = d.B[n:]
	return v
}

// Str reads AppendStr's string (a copy).
func (d *Dec) Str(field string) string { return string(d.Bytes(field)) }

// Bool reads AppendBool's byte.
func (d *Dec) Bool(field string) bool {
	if d.Err != nil {
		return false
	}
	if len(d.B) == 0 || d.B[0] > 1 {
		d.Fail(field, "not a bool")
		return false
	}
	v := d.B[0] == 1
	d.B = d.B[1:]
	return v
}

// Hex reads AppendHex's string.
func (d *Dec) Hex(field string) string {
	if d.Err != nil {
		return ""
	}
	if len(d.B) == 0 {
		d.Fail(field, "truncated")
		return ""
	}
	tag := d.B[0]
	d.B = d.B[1:]
	switch tag {
	case 0:
		return d.Str(field)
	case 1, 2:
		var kind byte
		if tag == 2 {
			if len(d.B) == 0 {
				d.Fail(field, "truncated")
				return ""
			}
			kind, d.B = d.B[0], d.B[1:]
		}
		v := d.Bytes(field)
		if d.Err == nil && len(v) == 0 {
			d.Fail(field, "empty hex") // AppendHex writes "" as a string
		}
		if d.Err != nil {
			return ""
		}
		if tag == 2 {
			b := make([]byte, 0, 2+2*len(v))
			return string(hex.AppendEncode(append(b, kind, ':'), v))
		}
		return hex.EncodeToString(v)
	}
	d.Fail(field, fmt.Sprintf("of unknown kind %d", tag))
	return ""
}
