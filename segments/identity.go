package segments

import (
	"slices"
	"strings"
	"time"

	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

func aliasesOf(env *event.Envelope) [][2]string {
	var out [][2]string
	if env.Profile != "" {
		out = append(out, [2]string{aliasProfile, env.Profile})
	}
	u := &env.User
	for _, a := range [][2]string{{aliasAnon, u.AnonID}, {aliasEmail, u.EmailSHA256}, {aliasPhone, u.PhoneSHA256}, {aliasExtID, u.ExternalIDSHA256}} {
		if a[1] != "" {
			out = append(out, a)
		}
	}
	return out
}

// hasAliases reports whether every identifier of the event is already
// indexed to s (the common case: no lookups, no merge possible).
func (s *state) hasAliases(env *event.Envelope) bool {
	u := &env.User
	for _, a := range [...][2]string{{aliasProfile, env.Profile}, {aliasAnon, u.AnonID}, {aliasEmail, u.EmailSHA256}, {aliasPhone, u.PhoneSHA256}, {aliasExtID, u.ExternalIDSHA256}} {
		if a[1] != "" && !slices.ContainsFunc(s.aliases, func(x string) bool { return len(x) == 1+len(a[1]) && x[0] == a[0][0] && x[1:] == a[1] }) {
			return false
		}
	}
	return true
}

func linkAliases(l *event.IdentityLink) [][2]string {
	out := [][2]string{{aliasProfile, l.Profile}}
	for _, k := range [][2]string{{event.AliasAnonID, aliasAnon}, {event.AliasEmail, aliasEmail}, {event.AliasPhone, aliasPhone}, {event.AliasExternalID, aliasExtID}} {
		if v := l.Aliases[k[0]]; v != "" {
			out = append(out, [2]string{k[1], v})
		}
	}
	return out
}

// applyEvent records an event on its profile (after resolving and merging
// aliases). It returns the profile and any profiles merged into it, or a nil
// profile when the event is not for segments.
func (e *Engine) applyEvent(env *event.Envelope, seq uint64, now time.Time) (*state, []*state, error) {
	e.attrsChanged = false
	if !env.Consent.Decided || env.Site == "" || env.Profile == "" {
		e.m.skipped.WithLabelValues("undecided").Inc()
		return nil, nil, nil
	}
	allowed := e.keepUses(env.Consent.Allowed)
	s, err := e.resolveOnly(env.Site, env.Profile)
	if err != nil {
		return nil, nil, err
	}
	if s != nil && seq <= s.seq {
		e.m.skipped.WithLabelValues("redelivered").Inc()
		return nil, nil, nil
	}
	if s == nil && len(allowed) == 0 {
		// No consent for any segment use and nothing known: keep nothing.
		e.m.skipped.WithLabelValues("not_consented").Inc()
		return nil, nil, nil
	}
	var merged []*state
	if s == nil || !s.hasAliases(env) { // a new alias may join two profiles
		s, merged, err = e.resolve(env.Site, env.Profile, aliasesOf(env), env.ReceivedAt)
		if err != nil {
			return nil, nil, err
		}
	}
	if seq <= s.seq {
		e.m.skipped.WithLabelValues("redelivered").Inc()
		return s, merged, nil
	}
	s.seq = seq
	if env.ReceivedAt >= s.usesAt {
		if !slices.Equal(s.uses, allowed) {
			e.attrsChanged = true
		}
		s.uses, s.usesAt = allowed, env.ReceivedAt
	}
	if len(allowed) > 0 { // identifiers and events are kept only with consent
		u := &env.User
		for _, f := range []struct {
			dst *string
			v   string
		}{{&s.email, u.EmailSHA256}, {&s.phone, u.PhoneSHA256}, {&s.extID, u.ExternalIDSHA256}} {
			if f.v != "" && *f.dst != f.v {
				*f.dst = f.v
				e.attrsChanged = true
			}
		}
		if c, _, _ := strings.Cut(env.Consent.Jurisdiction, "-"); c != "" && c != s.country {
			s.country = c
			e.attrsChanged = true
		}
		at := min(env.EventTime, env.ReceivedAt)
		if at <= 0 {
			at = env.ReceivedAt
		}
		var f *fields
		for _, st := range e.prog.byEvent[env.Event] {
			if !slices.ContainsFunc(st.uses, func(u string) bool { return slices.Contains(allowed, u) }) {
				continue
			}
			if at+st.window.Milliseconds() <= now.UnixMilli() {
				continue // already outside every window that reads it
			}
			if f == nil {
				f = &fields{env: env}
			}
			if ok, v := st.matches(f); ok {
				s.add(st.id, at, v)
				e.m.recorded.Inc()
			}
		}
	}
	e.dirty[s.key()] = s
	return s, merged, nil
}

func (e *Engine) applyLink(l *event.IdentityLink, now time.Time) (*state, []*state, error) {
	s, err := e.resolveOnly(l.Site, l.Profile)
	if err != nil || s == nil {
		return nil, nil, err // a profile segments never kept: nothing to stitch
	}
	s, merged, err := e.resolve(l.Site, l.Profile, linkAliases(l), l.At)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{{&s.email, l.Aliases[event.AliasEmail]}, {&s.phone, l.Aliases[event.AliasPhone]}, {&s.extID, l.Aliases[event.AliasExternalID]}} {
		if f.v != "" && *f.dst == "" {
			*f.dst = f.v
		}
	}
	e.dirty[s.key()] = s
	return s, merged, nil
}

// lookupAlias returns the canonical profile an alias points to, or "".
// A profile's own id has no alias key (setAlias writes none): when no key
// says where a profile id went, it names itself if a state is stored under
// it (ownProfile). Stores written before keep such keys; they still answer.
func (e *Engine) lookupAlias(site, kind, v string) (string, error) {
	k := aliasKey(site, kind, v)
	if p, ok := e.aliasMem[string(k)]; ok { // set or deleted since the last flush
		e.m.aliasCached.Inc()
		return p, nil
	}
	if b, ok := e.cache.HasGet(e.buf[:0], k); ok {
		e.buf = b
		e.m.aliasCached.Inc()
		return string(b), nil
	}
	if e.known.MayContain(k) {
		e.m.aliasStore.Inc()
		var b []byte
		_, err := kv.Get(e.db, k, func(v []byte) error {
			b = slices.Clone(v)
			return nil
		})
		if err != nil {
			return "", err
		}
		if len(b) > 0 {
			e.cache.Set(k, b)
			return string(b), nil
		}
	} else {
		e.m.aliasFiltered.Inc() // never written: a new identifier
	}
	if kind == aliasProfile {
		return e.ownProfile(site, v)
	}
	if p := impliedProfile(kind, v); p != "" {
		// No key: the identifier may name the profile it created (setAlias
		// writes no key for that), or where that profile was merged.
		return e.lookupAlias(site, aliasProfile, p)
	}
	return "", nil
}

// impliedProfile is the profile id an identifier gives a profile it
// creates on its own (event.ProfileID of a user with only that
// identifier): "a:<anon id>", "x:…", "e:…", "p:…".
func impliedProfile(kind, v string) string {
	var u event.User
	switch kind {
	case aliasAnon:
		u.AnonID = v
	case aliasExtID:
		u.ExternalIDSHA256 = v
	case aliasEmail:
		u.EmailSHA256 = v
	case aliasPhone:
		u.PhoneSHA256 = v
	default:
		return ""
	}
	return event.ProfileID(&u)
}

// ownProfile returns id when a state is stored, or being built, under it.
// The filter holds every state key (loaded at start, added on creation),
// so a new profile costs no Badger read.
func (e *Engine) ownProfile(site, id string) (string, error) {
	k := stateKey(site, id)
	if s := e.mem[string(k)]; s != nil || e.cache.Has(k) {
		return id, nil
	}
	if !e.known.MayContain(k) {
		return "", nil
	}
	found, err := kv.Get(e.db, k, func([]byte) error { return nil })
	if err != nil || !found {
		return "", err
	}
	return id, nil
}

// setAlias indexes alias kind+v to s. A profile's own id is only listed in
// s.aliases (hasAliases, erasure), with no key: one Badger entry less per
// new profile (a third of a server profile's alias entries), found by
// ownProfile instead. So is the identifier the profile's id was made from
// (the external id of "x:…"; lookupAlias finds it by impliedProfile): a
// server profile with an email and an external id wrote three keys, then
// two, now one.
func (e *Engine) setAlias(s *state, kind, v string) {
	a := kind + v
	if !slices.Contains(s.aliases, a) && len(s.aliases) < maxAliases {
		s.aliases = append(s.aliases, a)
	}
	if kind == aliasProfile && v == s.id || impliedProfile(kind, v) == s.id {
		return
	}
	k := aliasKey(s.site, kind, v)
	e.known.Add(k)
	e.aliasMem[string(k)] = s.id
	e.idx = append(e.idx, idxOp{key: k, val: []byte(s.id)})
}

// resolveOnly finds the state of a profile id (following merges) or nil.
func (e *Engine) resolveOnly(site, profile string) (*state, error) {
	id, err := e.lookupAlias(site, aliasProfile, profile)
	if err != nil || id == "" {
		return nil, err
	}
	return e.load(site, id)
}

// resolve finds or creates the profile for a set of aliases, merging the
// profiles they point to into the oldest.
func (e *Engine) resolve(site, profile string, aliases [][2]string, at int64) (*state, []*state, error) {
	var found []*state
	for _, a := range aliases {
		id, err := e.lookupAlias(site, a[0], a[1])
		if err != nil {
			return nil, nil, err
		}
		if id == "" || slices.ContainsFunc(found, func(s *state) bool { return s.id == id }) {
			continue
		}
		s, err := e.load(site, id)
		if err != nil {
			return nil, nil, err
		}
		if s != nil && !slices.Contains(found, s) {
			found = append(found, s)
		}
	}
	var dst *state
	if len(found) == 0 {
		dst = &state{site: site, id: profile, firstSeen: at}
		sk := stateKey(site, profile)
		e.known.Add(sk) // before it is stored: ownProfile must find it
		e.mem[string(sk)] = dst
		e.m.profiles.Inc()
	} else {
		slices.SortFunc(found, func(a, b *state) int {
			if a.firstSeen != b.firstSeen {
				return int(a.firstSeen - b.firstSeen)
			}
			return strings.Compare(a.id, b.id)
		})
		dst = found[0]
	}
	var merged []*state
	for _, src := range found[min(1, len(found)):] {
		e.merge(dst, src)
		merged = append(merged, src)
	}
	for _, a := range aliases {
		if !slices.Contains(dst.aliases, a[0]+a[1]) {
			e.setAlias(dst, a[0], a[1])
		}
	}
	return dst, merged, nil
}

// merge moves src into dst: its events, identifiers, aliases and outbox.
// src's memberships are removed by evaluating it empty (the caller marks it).
func (e *Engine) merge(dst, src *state) {
	e.m.merges.Inc()
	for id, es := range src.streams {
		for _, x := range es {
			dst.addEntry(id, x)
		}
	}
	if dst.email == "" {
		dst.email = src.email
	}
	if dst.phone == "" {
		dst.phone = src.phone
	}
	if dst.extID == "" {
		dst.extID = src.extID
	}
	if dst.country == "" {
		dst.country = src.country
	}
	if src.usesAt > dst.usesAt {
		dst.uses, dst.usesAt = src.uses, src.usesAt
	}
	dst.seq = max(dst.seq, src.seq)
	dst.firstSeen = min(dst.firstSeen, src.firstSeen)
	for _, a := range src.aliases {
		e.setAlias(dst, a[:1], a[1:])
	}
	e.setAlias(dst, aliasProfile, src.id)
	dst.pending = append(dst.pending, src.pending...)
	src.pending = nil
	if len(dst.pending) > 0 {
		e.outbox[dst.key()] = dst
	}
	// src's deltas are dst's now: src has nothing left to publish. Left in
	// the outbox, it was never sent (nothing pending) nor settled (in no
	// group), and every commit refused until a failure dropped the
	// uncommitted work, which replayed the same merge.
	if e.outbox[src.key()] == src {
		delete(e.outbox, src.key())
	}
	src.streams = nil
	src.email, src.phone, src.extID = "", "", ""
	src.aliases = nil
	src.merged = dst.id
	k := dst.key()
	e.dirty[k] = dst
	e.dirty[src.key()] = src
}

func (s *state) addEntry(id uint32, x entry) {
	if s.streams == nil {
		s.streams = map[uint32][]entry{}
	}
	es := s.streams[id]
	i, found := slices.BinarySearchFunc(es, x.sec, func(a entry, t uint32) int { return int(int64(a.sec) - int64(t)) })
	if found {
		es[i].count += x.count
		es[i].sum += x.sum
	} else {
		es = slices.Insert(es, i, x)
	}
	for len(es) > maxEntries {
		es[1].count += es[0].count
		es[1].sum += es[0].sum
		es = es[1:]
	}
	s.streams[id] = es
}
