package audit

import (
	"encoding/binary"
	"encoding/json"
	"slices"

	"github.com/tagway/tagway/gateway/wire"
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
// str, bytes and hex are package wire's.
const formatBinary = 0x01

// encodeRecord appends r's stored form (without Profile) to dst.
func encodeRecord(dst []byte, r *Record) []byte {
	dst = append(dst, formatBinary)
	dst = binary.AppendUvarint(dst, r.Seq)
	dst = binary.AppendVarint(dst, r.At)
	dst = wire.AppendStr(dst, r.Kind)
	dst = wire.AppendHex(dst, r.ID)
	dst = wire.AppendStr(dst, r.Site)
	dst = wire.AppendHex(dst, r.ProfileRef)
	dst = wire.AppendStr(dst, r.Jurisdiction)
	dst = wire.AppendStr(dst, r.Source)
	dst = wire.AppendStr(dst, string(r.Data))
	dst = wire.AppendHex(dst, r.Prev)
	return wire.AppendHex(dst, r.Hash)
}

// decodeRecord reads a stored record: the binary form, or JSON as records
// were stored before it. The error says what is wrong.
func decodeRecord(b []byte, r *Record) error {
	*r = Record{}
	d, err := wire.Open(b, formatBinary, "record", r)
	if d == nil {
		return err // an error, or a value stored as JSON, now read
	}
	r.Seq = d.Uvarint("seq")
	r.At = d.Varint("at")
	r.Kind = d.Str("kind")
	r.ID = d.Hex("id")
	r.Site = d.Str("site")
	r.ProfileRef = d.Hex("profile_ref")
	r.Jurisdiction = d.Str("jurisdiction")
	r.Source = d.Str("source")
	if data := d.Bytes("data"); len(data) > 0 {
		r.Data = json.RawMessage(slices.Clone(data)) // b is Badger's, valid only in its callback
	}
	r.Prev = d.Hex("prev")
	r.Hash = d.Hex("hash")
	return d.Done("hash")
}
