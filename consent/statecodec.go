package consent

import (
	"encoding/binary"
	"maps"
	"slices"

	"github.com/tagway/tagway/gateway/wire"
)

// A profile's consent state is stored in a compact binary form (states
// stored as JSON by earlier versions, which start with '{', still read).
// Badger writes one per new profile that signals anything; as JSON it was
// the second largest part of what the load test writes (325 B a state).
// The audit id is kept as bytes, the denial reasons once each (the policy's
// uses are usually denied for the same reason):
//
//	0x01
//	str tcf, str gpp, count + uvarint gpp_sid…, str usp, bool gpc,
//	count + (str category, bool)… (sorted)
//	str country, str region
//	str jurisdiction, str regime, count + str allowed…,
//	count + (str use, uvarint reason)… (sorted; reason 0: a new reason, its
//	str follows; k: the k-th reason written before)
//	hex audit_id, varint at, bool unpublished, str source, bytes pending
const stateFormat = 0x01

// storedState is st's stored form, in a buffer sized for it.
func storedState(st *state) []byte {
	return encodeState(make([]byte, 0, 160+len(st.Signals.TCF)+len(st.Signals.GPP)+len(st.Pending)), st)
}

func encodeState(dst []byte, st *state) []byte {
	s := &st.Signals
	dst = append(dst, stateFormat)
	dst = wire.AppendStr(dst, s.TCF)
	dst = wire.AppendStr(dst, s.GPP)
	dst = binary.AppendUvarint(dst, uint64(len(s.GPPSID)))
	for _, id := range s.GPPSID {
		dst = binary.AppendUvarint(dst, uint64(id))
	}
	dst = wire.AppendStr(dst, s.USP)
	dst = wire.AppendBool(dst, s.GPC)
	cats := slices.Sorted(maps.Keys(s.Categories))
	dst = binary.AppendUvarint(dst, uint64(len(cats)))
	for _, c := range cats {
		dst = wire.AppendBool(wire.AppendStr(dst, c), s.Categories[c])
	}
	dst = wire.AppendStr(dst, st.Country)
	dst = wire.AppendStr(dst, st.Region)
	d := &st.Decision
	dst = wire.AppendStr(dst, d.Jurisdiction)
	dst = wire.AppendStr(dst, string(d.Regime))
	dst = binary.AppendUvarint(dst, uint64(len(d.Allowed)))
	for _, u := range d.Allowed {
		dst = wire.AppendStr(dst, u)
	}
	uses := slices.Sorted(maps.Keys(d.Denied))
	dst = binary.AppendUvarint(dst, uint64(len(uses)))
	var reasons []string
	for _, u := range uses {
		dst = wire.AppendStr(dst, u)
		r := d.Denied[u]
		if k := slices.Index(reasons, r); k >= 0 {
			dst = binary.AppendUvarint(dst, uint64(k+1))
			continue
		}
		reasons = append(reasons, r)
		dst = wire.AppendStr(binary.AppendUvarint(dst, 0), r)
	}
	dst = wire.AppendHex(dst, st.AuditID)
	dst = binary.AppendVarint(dst, st.At)
	dst = wire.AppendBool(dst, st.Unpublished)
	dst = wire.AppendStr(dst, st.Source)
	return wire.AppendStr(dst, string(st.Pending))
}

// decodeState reads a stored state (binary, or JSON from before). The
// error names the field.
func decodeState(b []byte, st *state) error {
	*st = state{}
	d, err := wire.Open(b, stateFormat, "consent state", st)
	if d == nil {
		return err // an error, or a value stored as JSON, now read
	}
	s := &st.Signals
	s.TCF = d.Str("tcf")
	s.GPP = d.Str("gpp")
	if n := d.Count("gpp_sid"); n > 0 {
		s.GPPSID = make([]int, n)
		for i := range s.GPPSID {
			s.GPPSID[i] = int(d.Uvarint("gpp_sid"))
		}
	}
	s.USP = d.Str("usp")
	s.GPC = d.Bool("gpc")
	if n := d.Count("categories"); n > 0 {
		s.Categories = make(map[string]bool, n)
		for range n {
			c := d.Str("categories")
			s.Categories[c] = d.Bool("categories")
		}
	}
	st.Country = d.Str("country")
	st.Region = d.Str("region")
	dc := &st.Decision
	dc.Jurisdiction = d.Str("jurisdiction")
	dc.Regime = Regime(d.Str("regime"))
	n := d.Count("allowed")
	dc.Allowed = make([]string, n) // [] not null, as Decide makes it
	for i := range dc.Allowed {
		dc.Allowed[i] = d.Str("allowed")
	}
	n = d.Count("denied")
	dc.Denied = make(map[string]string, n)
	var reasons []string
	for range n {
		u := d.Str("denied")
		switch k := d.Uvarint("denied"); {
		case k == 0:
			r := d.Str("denied")
			reasons = append(reasons, r)
			dc.Denied[u] = r
		case k <= uint64(len(reasons)):
			dc.Denied[u] = reasons[k-1]
		default:
			d.Fail("denied", "referring to a reason not written")
		}
	}
	st.AuditID = d.Hex("audit_id")
	st.At = d.Varint("at")
	st.Unpublished = d.Bool("unpublished")
	st.Source = d.Str("source")
	if p := d.Bytes("pending"); len(p) > 0 {
		st.Pending = slices.Clone(p) // b is Badger's
	}
	return d.Done("pending")
}
