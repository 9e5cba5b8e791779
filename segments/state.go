package segments

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/tagway/tagway/gateway/wire"
)

// entry is one second of a stream: how many matching events happened in
// that second and the sum of the stream's field over them.
type entry struct {
	sec   uint32 // unix seconds
	count uint32
	sum   float64
}

// maxEntries bounds one stream's entries in a profile. A profile with more
// active seconds than this in the window has its oldest seconds merged
// pairwise, which can delay an exit by at most the merged span (documented
// in the README: only for profiles with hundreds of active seconds).
const maxEntries = 512

// state is everything segments keep about one profile. Its binary encoding
// (encode/decode) is what Badger stores under "gs"+site+0+profile.
type state struct {
	site, id string
	skey     string // key(), once made (not stored)
	// seq is the last TW_EVENTS stream sequence applied, so a redelivered
	// event is never counted twice.
	seq uint64
	// firstSeen orders merges: the older profile absorbs the newer one.
	firstSeen           int64 // unix ms
	email, phone, extID string
	// aliases is every alias (kind letter + value) indexed to this profile,
	// at most maxAliases: what a merge repoints and an erasure deletes.
	aliases []string
	country string
	// merged is set on a profile merged into another (the one named); it is
	// kept only until its outbox is published.
	merged string
	// uses is the consent uses allowed at usesAt (ms); usesKnown is false
	// until an event or a consent change said anything.
	uses   []string
	usesAt int64
	// streams: per stream id, entries oldest first.
	streams map[uint32][]entry
	// members is the segments the profile is in as published (adds acked);
	// held the segments it matches but is held out of (control group).
	members, held []string
	// due is the next time (unix ms) membership can change by time alone;
	// 0 for never. It is mirrored in the expiry index.
	due int64
	// pending (not stored) holds deltas decided but not yet acknowledged
	// by JetStream; a state is stored only once they are.
	pending []Delta
	// trans counts each segment's membership changes published: odd means
	// in. With firstSeen it makes delta ids deterministic, so a delta
	// recomputed after a crash has the id of the one already published.
	trans map[string]uint32
	// metrics: the last metric value per top_percent segment, as counted in
	// the percentile histograms.
	metrics map[string]float64
}

func secOf(ms int64) uint32 { return uint32(ms / 1000) }

// until is when an entry leaves a window of w: events of second s count
// while now < (s+1)s + w.
func (x entry) until(w time.Duration) int64 { return (int64(x.sec)+1)*1000 + w.Milliseconds() }

// add records one event at ms with value v for stream id.
func (s *state) add(id uint32, ms int64, v float64) {
	if s.streams == nil {
		s.streams = map[uint32][]entry{}
	}
	m := secOf(ms)
	es := s.streams[id]
	i := sort.Search(len(es), func(i int) bool { return es[i].sec >= m })
	if i < len(es) && es[i].sec == m {
		es[i].count++
		es[i].sum += v
	} else {
		es = slices.Insert(es, i, entry{sec: m, count: 1, sum: v})
	}
	for len(es) > maxEntries { // merge the two oldest into the newer one
		es[1].count += es[0].count
		es[1].sum += es[0].sum
		es = es[1:]
	}
	s.streams[id] = es
}

// trim drops entries that no rule can see any more.
func (s *state) trim(p *Program, now time.Time) {
	for id, es := range s.streams {
		st := p.streams[id]
		if st == nil { // no rule reads this stream any more
			delete(s.streams, id)
			continue
		}
		i := 0
		for i < len(es) && es[i].until(st.window) <= now.UnixMilli() {
			i++
		}
		if i == len(es) {
			delete(s.streams, id)
		} else if i > 0 {
			s.streams[id] = slices.Clone(es[i:])
		}
	}
}

// allows reports whether consent use u is allowed for the profile.
func (s *state) allows(u string) bool { return slices.Contains(s.uses, u) }

// empty reports whether there is nothing worth storing.
func (s *state) empty() bool {
	return len(s.streams) == 0 && len(s.members) == 0 && len(s.held) == 0 && len(s.pending) == 0 && len(s.trans) == 0 &&
		s.email == "" && s.phone == "" && s.extID == "" && len(s.aliases) == 0
}

// ---- encoding ----------------------------------------------------------------

// stateVersion is the format byte encode writes. Version 1 (read, no
// longer written) stored the hashed identifiers as hex text and every alias
// in full; version 2 stores 64-character hex identifiers as their 32 bytes
// (wire.AppendHex) and an alias that repeats one of them, or the profile's
// own id, as a one-byte reference: a server profile's state with a hashed
// email and external id is ~150 bytes instead of ~370 (measured in the
// bench's Badger: 93 k states were 30 % of the bytes).
const (
	stateVersion   = 2
	stateVersionV1 = 1
)

// Version 2's alias tags. An alias is its kind letter and its value.
const (
	aliasTagLit   = 0 // the alias as a string
	aliasTagOwn   = 1 // aliasProfile + the profile's own id
	aliasTagKind  = 2 // kind + value, the value as wire.AppendHex (anon ids, merged identifiers)
	aliasTagEmail = 3 // aliasEmail + email
	aliasTagPhone = 4 // aliasPhone + phone
	aliasTagExtID = 5 // aliasExtID + extID
	aliasTagAnon  = 6 // aliasAnon + the id after its "a:" (a browser profile's own anon id)
)

var errCorrupt = errors.New("segments: corrupt profile state")

type enc struct{ b []byte }

func (e *enc) u(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) f(v float64)  { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v)) }
func (e *enc) s(v string)   { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) hex(v string) { e.b = wire.AppendHex(e.b, v) }
func (e *enc) ss(v []string) {
	e.u(uint64(len(v)))
	for _, x := range v {
		e.s(x)
	}
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) u() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = errCorrupt, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}
func (d *dec) i() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = errCorrupt, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}
func (d *dec) f() float64 {
	if len(d.b) < 8 {
		d.err, d.b = errCorrupt, nil
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}
func (d *dec) s() string {
	n := d.u()
	if n > uint64(len(d.b)) {
		d.err, d.b = errCorrupt, nil
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}
func (d *dec) hex() string {
	if d.err != nil {
		return ""
	}
	w := wire.Dec{B: d.b, What: "profile state"}
	v := w.Hex("identifier")
	if w.Err != nil {
		d.err, d.b = errCorrupt, nil
		return ""
	}
	d.b = w.B
	return v
}

func (d *dec) ss() []string {
	n := d.u()
	if n > uint64(len(d.b)) {
		d.err, d.b = errCorrupt, nil
		return nil
	}
	var out []string
	for j := uint64(0); j < n && d.err == nil; j++ {
		out = append(out, d.s())
	}
	return out
}

// encode appends the state's binary form to b. Entries are delta-encoded
// seconds and varint counts; sums are stored only for streams that sum.
func (s *state) encode(b []byte, p *Program) []byte {
	e := enc{b: append(b, stateVersion)}
	e.u(s.seq)
	e.i(s.firstSeen)
	e.hex(s.email)
	e.hex(s.phone)
	e.hex(s.extID)
	e.u(uint64(len(s.aliases)))
	for _, a := range s.aliases {
		s.encodeAlias(&e, a)
	}
	e.s(s.country)
	e.s(s.merged)
	e.ss(s.uses)
	e.i(s.usesAt)
	ids := make([]uint32, 0, len(s.streams))
	for id := range s.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	e.u(uint64(len(ids)))
	for _, id := range ids {
		es := s.streams[id]
		sums := false
		if st := p.streams[id]; st == nil || st.sumOf != "" {
			sums = true
		}
		flag := uint64(0)
		if sums {
			flag = 1
		}
		e.u(uint64(id))
		e.u(flag)
		e.u(uint64(len(es)))
		prev := uint32(0)
		for _, x := range es {
			e.u(uint64(x.sec - prev))
			prev = x.sec
			e.u(uint64(x.count))
			if sums {
				e.f(x.sum)
			}
		}
	}
	e.ss(s.members)
	e.ss(s.held)
	e.i(s.due)
	names := make([]string, 0, max(len(s.trans), len(s.metrics)))
	for n := range s.trans {
		names = append(names, n)
	}
	slices.Sort(names)
	e.u(uint64(len(names)))
	for _, n := range names {
		e.s(n)
		e.u(uint64(s.trans[n]))
	}
	e.u(uint64(len(s.metrics)))
	names = names[:0]
	for n := range s.metrics {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		e.s(n)
		e.f(s.metrics[n])
	}
	return e.b
}

// encodeAlias writes alias a (kind letter + value) as a version 2 tag: a
// reference to the identifier or id it repeats, else its value as hex
// bytes when it is hex, else the string.
func (s *state) encodeAlias(e *enc, a string) {
	switch {
	case a == "":
		e.b = append(e.b, aliasTagLit)
		e.s(a)
	case a[0] == aliasProfile[0] && a[1:] == s.id:
		e.b = append(e.b, aliasTagOwn)
	case a[0] == aliasEmail[0] && a[1:] == s.email:
		e.b = append(e.b, aliasTagEmail)
	case a[0] == aliasPhone[0] && a[1:] == s.phone:
		e.b = append(e.b, aliasTagPhone)
	case a[0] == aliasExtID[0] && a[1:] == s.extID:
		e.b = append(e.b, aliasTagExtID)
	case a[0] == aliasAnon[0] && a[1:] == ownAnon(s.id) && a[1:] != "":
		e.b = append(e.b, aliasTagAnon)
	default:
		e.b = append(e.b, aliasTagKind, a[0])
		e.hex(a[1:])
	}
}

// ownAnon is the anon id a browser profile's id is made of ("a:" + it), or "".
func ownAnon(id string) string {
	if len(id) > 2 && id[:2] == "a:" {
		return id[2:]
	}
	return ""
}

// decodeAlias reads what encodeAlias wrote; the identifiers and the id it
// may refer to are already set.
func (s *state) decodeAlias(d *dec) string {
	if d.err != nil {
		return ""
	}
	if len(d.b) == 0 {
		d.err, d.b = errCorrupt, nil
		return ""
	}
	tag := d.b[0]
	d.b = d.b[1:]
	switch tag {
	case aliasTagLit:
		return d.s()
	case aliasTagOwn:
		return aliasProfile + s.id
	case aliasTagEmail:
		return aliasEmail + s.email
	case aliasTagPhone:
		return aliasPhone + s.phone
	case aliasTagExtID:
		return aliasExtID + s.extID
	case aliasTagAnon:
		if v := ownAnon(s.id); v != "" {
			return aliasAnon + v
		}
	case aliasTagKind:
		if len(d.b) > 0 {
			k := d.b[0]
			d.b = d.b[1:]
			return string([]byte{k}) + d.hex() // the byte, not the rune k
		}
	}
	d.err, d.b = errCorrupt, nil
	return ""
}

func decodeState(site, id string, b []byte) (*state, error) {
	if len(b) == 0 || b[0] != stateVersion && b[0] != stateVersionV1 {
		return nil, errCorrupt
	}
	d := dec{b: b[1:]}
	s := &state{site: site, id: id}
	s.seq = d.u()
	s.firstSeen = d.i()
	if b[0] == stateVersionV1 {
		s.email, s.phone, s.extID = d.s(), d.s(), d.s()
		s.aliases = d.ss()
	} else {
		s.email, s.phone, s.extID = d.hex(), d.hex(), d.hex()
		n := d.u()
		if n > uint64(len(d.b)) {
			return nil, errCorrupt
		}
		if n > 0 {
			s.aliases = make([]string, 0, n)
		}
		for j := uint64(0); j < n && d.err == nil; j++ {
			s.aliases = append(s.aliases, s.decodeAlias(&d))
		}
	}
	s.country = d.s()
	s.merged = d.s()
	s.uses = d.ss()
	s.usesAt = d.i()
	n := d.u()
	if n > uint64(len(d.b)) {
		return nil, errCorrupt
	}
	if n > 0 {
		s.streams = make(map[uint32][]entry, n)
	}
	for j := uint64(0); j < n && d.err == nil; j++ {
		id := uint32(d.u())
		sums := d.u() == 1
		m := d.u()
		if m > uint64(len(d.b)) {
			return nil, errCorrupt
		}
		es := make([]entry, 0, m)
		prev := uint32(0)
		for k := uint64(0); k < m && d.err == nil; k++ {
			prev += uint32(d.u())
			x := entry{sec: prev, count: uint32(d.u())}
			if sums {
				x.sum = d.f()
			}
			es = append(es, x)
		}
		s.streams[id] = es
	}
	s.members = d.ss()
	s.held = d.ss()
	s.due = d.i()
	n = d.u()
	if n > uint64(len(d.b)) {
		return nil, errCorrupt
	}
	for j := uint64(0); j < n && d.err == nil; j++ {
		if s.trans == nil {
			s.trans = make(map[string]uint32, n)
		}
		k := d.s()
		s.trans[k] = uint32(d.u())
	}
	n = d.u()
	if n > uint64(len(d.b)) {
		return nil, errCorrupt
	}
	for j := uint64(0); j < n && d.err == nil; j++ {
		if s.metrics == nil {
			s.metrics = map[string]float64{}
		}
		k := d.s()
		s.metrics[k] = d.f()
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}
