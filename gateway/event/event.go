// Package event holds the event model that every Tagway package shares: the
// envelope published on tw.events.<site>.<event>, the identifiers it carries,
// and the normalisation that turns raw personal data into hashes on arrival.
//
// It imports no other Tagway package, so the import graph stays a tree
// (cmd → gateway → {consent, segments, forward} → event). Everything here is
// safe for concurrent use: the functions are pure and the types are values.
package event

import (
	"log/slog"
)

// Source says which door an event came through.
type Source string

const (
	// SourceBrowser marks events from POST /e or GET /p.gif.
	SourceBrowser Source = "browser"
	// SourceServer marks events from POST /v1/events.
	SourceServer Source = "server"
)

// Envelope is the JSON document published on tw.events.<site>.<event>. Field
// names are a contract (DESIGN.md, "NATS subjects"); add fields, never rename.
type Envelope struct {
	// ID is Tagway's own id for this copy of the event: 32 hex characters,
	// time-ordered (the first 12 are the receive time in milliseconds).
	ID string `json:"id"`
	// EventID is the sender's id, or one Tagway assigned (EventIDAssigned).
	EventID         string `json:"event_id"`
	EventIDAssigned bool   `json:"event_id_assigned,omitempty"`
	Site            string `json:"site"`
	Source          Source `json:"source"`
	// SourceName names the server source (API key) that sent a server event.
	SourceName string `json:"source_name,omitempty"`
	Event      string `json:"event"`
	// EventTime and ReceivedAt are unix milliseconds.
	EventTime  int64 `json:"event_time"`
	ReceivedAt int64 `json:"received_at"`
	// Profile is the id of the person the event is about (see ProfileID).
	Profile string `json:"profile"`
	User    User   `json:"user"`
	// Properties is the validated "properties" object, passed through as JSON.
	Properties RawJSON `json:"properties,omitempty"`
	Page       Page    `json:"page,omitzero"`
	Consent    Consent `json:"consent"`
}

// RawJSON is a JSON value carried through untouched.
type RawJSON []byte

// MarshalJSON returns r itself (or null when empty).
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON stores a copy of data.
func (r *RawJSON) UnmarshalJSON(data []byte) error {
	*r = append((*r)[:0], data...)
	return nil
}

// User holds what identifies the person. Personal data only ever appears here
// hashed (SHA-256, lowercase hex); the IP is truncated (TruncateIP).
type User struct {
	EmailSHA256 string `json:"email_sha256,omitempty"`
	PhoneSHA256 string `json:"phone_sha256,omitempty"`
	// PhoneE164SHA256 is the phone's SHA-256 in E.164 with the "+", the
	// normalisation TikTok's Events API matches on (forward/normalize.go).
	PhoneE164SHA256  string `json:"phone_e164_sha256,omitempty"`
	ExternalIDSHA256 string `json:"external_id_sha256,omitempty"`
	// AnonID is the first-party cookie id (_tw_id) of a browser.
	AnonID    string `json:"anon_id,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	// Click and platform ids, passed through as sent.
	TTCLID  string `json:"ttclid,omitempty"`
	TTP     string `json:"ttp,omitempty"`
	FBC     string `json:"fbc,omitempty"`
	FBP     string `json:"fbp,omitempty"`
	GCLID   string `json:"gclid,omitempty"`
	MSCLKID string `json:"msclkid,omitempty"`
}

// LogValue keeps identifiers out of logs: only which ones are present.
func (u User) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("email", u.EmailSHA256 != ""),
		slog.Bool("phone", u.PhoneSHA256 != ""),
		slog.Bool("external_id", u.ExternalIDSHA256 != ""),
		slog.Bool("anon_id", u.AnonID != ""),
	)
}

// Page is where a browser event happened.
type Page struct {
	URL      string `json:"url,omitempty"`
	Referrer string `json:"referrer,omitempty"`
	Title    string `json:"title,omitempty"`
}

// Consent is what the envelope says about consent. Until the consent engine
// decides (Decided false), Allowed is empty and only the signals are carried;
// consumers must not treat an undecided envelope as consented.
type Consent struct {
	Decided      bool     `json:"decided"`
	Jurisdiction string   `json:"jurisdiction,omitempty"`
	Allowed      []string `json:"allowed,omitempty"`
	AuditID      string   `json:"audit_id,omitempty"`
	Signals      Signals  `json:"signals"`
}

// Signals are the consent signals as received, validated for shape only.
type Signals struct {
	TCF    string `json:"tcf,omitempty"`
	GPP    string `json:"gpp,omitempty"`
	GPPSID []int  `json:"gpp_sid,omitempty"`
	USP    string `json:"usp,omitempty"`
	GPC    bool   `json:"gpc,omitempty"`
	// Categories are first-party consent categories from the site's banner.
	Categories map[string]bool `json:"categories,omitempty"`
}

// LogValue logs which signals are present, not their content.
func (e *Envelope) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", e.ID),
		slog.String("site", e.Site),
		slog.String("event", e.Event),
		slog.String("source", string(e.Source)),
		slog.Any("user", e.User),
	)
}

// Subject is the NATS subject an envelope is published on. Site ids and event
// names are validated to be single subject tokens before they get here.
func Subject(site, name string) string {
	return "tw.events." + site + "." + name
}

// DedupKey is the deduplication key, also used as the Nats-Msg-Id.
func DedupKey(site, name, eventID string) string {
	return site + "|" + name + "|" + eventID
}

// ProfileID derives the profile an event is about, strongest first-party
// identifier first: the cookie id, then the external id, email and phone
// hashes. It returns "" when the event carries none of them. Identity
// stitching (linking these to one another) happens downstream.
func ProfileID(u *User) string {
	switch {
	case u.AnonID != "":
		return "a:" + u.AnonID
	case u.ExternalIDSHA256 != "":
		return "x:" + prefix(u.ExternalIDSHA256, 32)
	case u.EmailSHA256 != "":
		return "e:" + prefix(u.EmailSHA256, 32)
	case u.PhoneSHA256 != "":
		return "p:" + prefix(u.PhoneSHA256, 32)
	}
	return ""
}

// prefix is s cut to at most n bytes (hashes are 64 hex characters; this
// keeps a malformed value from panicking).
func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
