package event

import "iter"

// IdentityLink is published on tw.identity.<site> when a later copy of an
// event carries identifiers the first copy lacked (the server copy's hashed
// email for the browser copy's cookie profile, say). Field names are a
// contract (DESIGN.md, "NATS subjects").
type IdentityLink struct {
	// Profile is the first copy's profile, which the aliases now belong to.
	Profile string `json:"profile"`
	// Aliases maps an identifier kind (AliasEmail, …) to its value: hashes
	// for personal data, ids as sent for cookies and click ids.
	Aliases map[string]string `json:"aliases"`
	Site    string            `json:"site"`
	Event   string            `json:"event"`
	EventID string            `json:"event_id"`
	// At is when the link was learned, unix milliseconds.
	At int64 `json:"at"`
	// IP and UserAgent are the later copy's device context when the first
	// copy had none (a server copy first, the browser's second), for the
	// forwarder's match quality. They are not identifiers: nothing joins
	// profiles by them.
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// Alias kinds, the keys of IdentityLink.Aliases.
const (
	AliasEmail      = "email_sha256"
	AliasPhone      = "phone_sha256"
	AliasPhoneE164  = "phone_e164_sha256"
	AliasExternalID = "external_id_sha256"
	AliasAnonID     = "anon_id"
	AliasTTCLID     = "ttclid"
	AliasTTP        = "ttp"
	AliasFBC        = "fbc"
	AliasFBP        = "fbp"
	AliasGCLID      = "gclid"
	AliasMSCLKID    = "msclkid"
	// Device context carried by links (IP, UserAgent), never used as aliases.
	AliasIP        = "ip"
	AliasUserAgent = "user_agent"
)

// AliasKinds lists the alias kinds in a fixed order; bit i of an AliasSet
// stands for AliasKinds[i].
var AliasKinds = [...]string{AliasEmail, AliasPhone, AliasExternalID, AliasAnonID, AliasTTCLID, AliasTTP, AliasFBC, AliasFBP, AliasGCLID, AliasMSCLKID, AliasPhoneE164}

// AliasSet is a set of alias kinds, one bit each (see AliasKinds).
type AliasSet uint16

func (u *User) aliasValues() [len(AliasKinds)]string {
	return [...]string{u.EmailSHA256, u.PhoneSHA256, u.ExternalIDSHA256, u.AnonID, u.TTCLID, u.TTP, u.FBC, u.FBP, u.GCLID, u.MSCLKID, u.PhoneE164SHA256}
}

// Aliases yields u's identifiers as (kind, value), in AliasKinds order,
// without building a map.
func (u *User) Aliases() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for i, v := range u.aliasValues() {
			if v != "" && !yield(AliasKinds[i], v) {
				return
			}
		}
	}
}

// AliasSet returns the kinds of identifier u carries.
func (u *User) AliasSet() AliasSet {
	var s AliasSet
	for i, v := range u.aliasValues() {
		if v != "" {
			s |= 1 << i
		}
	}
	return s
}

// AliasesNotIn returns u's identifiers whose kind is not in have, by kind,
// or nil when there are none.
func (u *User) AliasesNotIn(have AliasSet) map[string]string {
	var m map[string]string
	for i, v := range u.aliasValues() {
		if v != "" && have&(1<<i) == 0 {
			if m == nil {
				m = make(map[string]string, 2)
			}
			m[AliasKinds[i]] = v
		}
	}
	return m
}

// IdentitySubject is the subject identity links of a site are published on.
func IdentitySubject(site string) string { return "tw.identity." + site }
