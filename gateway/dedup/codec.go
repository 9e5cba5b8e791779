package dedup

import (
	"encoding/binary"

	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/wire"
)

// The stored form of a dedup record. There is one per event accepted with
// an event_id, kept for the whole window (48 h): in a bench run they were
// the largest part of what Badger holds and compacts (89 of 119 bytes per
// key were the record as JSON). This form takes 28 bytes with a profile
// id such as "a:<32 hex>" (wire.AppendHex keeps its hex as bytes).
//
//	0x01                       format (records stored as JSON start with '{')
//	uvarint flags              bit 0: source server (else browser), bit 1: device
//	varint at (unix ms)
//	uvarint kinds              the AliasSet
//	hex profile
//
// A record whose source is neither browser nor server is stored as JSON
// (what decodeRecord reads either way).
const recordFormat = 0x01

const (
	flagServer = 1 << iota
	flagDevice
)

// encodeRecord appends r's stored form to dst.
func encodeRecord(dst []byte, r *record) []byte {
	var flags byte
	switch r.Source {
	case event.SourceServer:
		flags |= flagServer
	case event.SourceBrowser:
	default:
		b, _ := json.Marshal(r) // cannot fail for this type
		return append(dst, b...)
	}
	if r.Device {
		flags |= flagDevice
	}
	dst = binary.AppendUvarint(append(dst, recordFormat), uint64(flags))
	dst = binary.AppendVarint(dst, r.At)
	dst = binary.AppendUvarint(dst, uint64(r.Kinds))
	return wire.AppendHex(dst, r.Profile)
}

// decodeRecord reads a stored record, binary or JSON. The error says what
// is wrong.
func decodeRecord(b []byte, r *record) error {
	*r = record{}
	d, err := wire.Open(b, recordFormat, "dedup record", r)
	if d == nil {
		return err // an error, or a record stored as JSON, now read
	}
	flags := d.Uvarint("flags")
	if d.Err == nil && flags&^(flagServer|flagDevice) != 0 {
		d.Fail("flags", "unknown (bits beyond 0 and 1)")
	}
	r.Source = event.SourceBrowser
	if flags&flagServer != 0 {
		r.Source = event.SourceServer
	}
	r.Device = flags&flagDevice != 0
	r.At = d.Varint("at")
	kinds := d.Uvarint("kinds")
	if d.Err == nil && kinds > 0xffff {
		d.Fail("kinds", "out of range")
	}
	r.Kinds = event.AliasSet(kinds)
	r.Profile = d.Hex("profile")
	return d.Done("profile")
}
