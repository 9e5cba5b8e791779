package audit

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// The stored form of a record. A record's hash is over its JSON (hashOf),
// and exports are JSON; what Badger holds is this compact binary form,
// which decodes to exactly the record that was hashed. Hex fields (id,
// profile_ref, prev, hash) are kept as their bytes, and there are no field
// names: a consent record of the load test takes 398 bytes instead of 601
// (it writes one per new profile, and the audit log was the largest part of
// what Badger writes and compacts).
//
//	0x01                       format (JSON records, from before, start with '{')
//	uvarint seq, varint at
//	str kind, hex id, str site, hex profile_ref, str jurisdiction, str source
//	bytes data
//	hex prev, hex hash
//
// str and bytes are a uvarint length and the bytes; hex is a tag byte (0: a
// str follows; 1: lowercase hex of even length, as a uvarint byte count and
// the bytes).
const formatBinary = 0x01

// encodeRecord appends r's stored form (without Profile) to dst.
func encodeRecord(dst []byte, r *Record) []byte {
	dst = append(dst, formatBinary)
	dst = binary.AppendUvarint(dst, r.Seq)
	dst = binary.AppendVarint(dst, r.At)
	dst = appendStr(dst, r.Kind)
	dst = appendHex(dst, r.ID)
	dst = appendStr(dst, r.Site)
	dst = appendHex(dst, r.ProfileRef)
	dst = appendStr(dst, r.Jurisdiction)
	dst = appendStr(dst, r.Source)
	dst = appendStr(dst, string(r.Data))
	dst = appendHex(dst, r.Prev)
	return appendHex(dst, r.Hash)
}

// decodeRecord reads a stored record: the binary form, or JSON as records
// were stored before it. The error says what is wrong.
func decodeRecord(b []byte, r *Record) error {
	*r = Record{}
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, r); err != nil {
			return fmt.Errorf("record is not valid JSON: %w", err)
		}
		return nil
	}
	if len(b) == 0 || b[0] != formatBinary {
		return errors.New("record has an unknown format")
	}
	d := decoder{b: b[1:]}
	r.Seq = d.uvarint("seq")
	r.At = d.varint("at")
	r.Kind = d.str("kind")
	r.ID = d.hex("id")
	r.Site = d.str("site")
	r.ProfileRef = d.hex("profile_ref")
	r.Jurisdiction = d.str("jurisdiction")
	r.Source = d.str("source")
	if data := d.bytes("data"); len(data) > 0 {
		r.Data = json.RawMessage(slices.Clone(data)) // b is Badger's, valid only in its callback
	}
	r.Prev = d.hex("prev")
	r.Hash = d.hex("hash")
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("record has %d bytes after its hash", len(d.b))
	}
	return d.err
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendHex(dst []byte, s string) []byte {
	if len(s) == 0 || len(s)%2 != 0 || !isLowerHex(s) {
		return appendStr(append(dst, 0), s)
	}
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, uint64(len(s)/2))
	dst, _ = hex.AppendDecode(dst, []byte(s)) // checked: lowercase hex of even length
	return dst
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// decoder reads fields in order; the first error stops it and names the
// field.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(field, what string) {
	if d.err == nil {
		d.err = fmt.Errorf("record's %s is %s", field, what)
	}
	d.b = nil
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(field, "truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(field, "truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(field, "truncated")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(field string) string { return string(d.bytes(field)) }

func (d *decoder) hex(field string) string {
	if d.err != nil {
		return ""
	}
	if len(d.b) == 0 {
		d.fail(field, "truncated")
		return ""
	}
	tag := d.b[0]
	d.b = d.b[1:]
	switch tag {
	case 0:
		return d.str(field)
	case 1:
		v := d.bytes(field)
		if d.err == nil && len(v) == 0 {
			d.fail(field, "empty hex") // encodeRecord writes "" as a str
		}
		return hex.EncodeToString(v)
	}
	d.fail(field, fmt.Sprintf("of unknown kind %d", tag))
	return ""
}
