package event

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
}

// Alias kinds, the keys of IdentityLink.Aliases.
const (
	AliasEmail      = "email_sha256"
	AliasPhone      = "phone_sha256"
	AliasExternalID = "external_id_sha256"
	AliasAnonID     = "anon_id"
	AliasTTCLID     = "ttclid"
	AliasTTP        = "ttp"
	AliasFBC        = "fbc"
	AliasFBP        = "fbp"
	AliasGCLID      = "gclid"
	AliasMSCLKID    = "msclkid"
)

// Aliases lists u's identifiers by alias kind (only those present).
func (u *User) Aliases() map[string]string {
	m := make(map[string]string, 4)
	for _, a := range [...]struct{ k, v string }{
		{AliasEmail, u.EmailSHA256}, {AliasPhone, u.PhoneSHA256}, {AliasExternalID, u.ExternalIDSHA256},
		{AliasAnonID, u.AnonID}, {AliasTTCLID, u.TTCLID}, {AliasTTP, u.TTP}, {AliasFBC, u.FBC},
		{AliasFBP, u.FBP}, {AliasGCLID, u.GCLID}, {AliasMSCLKID, u.MSCLKID},
	} {
		if a.v != "" {
			m[a.k] = a.v
		}
	}
	return m
}

// IdentitySubject is the subject identity links of a site are published on.
func IdentitySubject(site string) string { return "tw.identity." + site }
