// Package consent will decode consent signals (IAB TCF v2, GPP with its US
// sections, US Privacy, GPC, first-party categories), decide per use which
// processing is allowed, and keep the tamper-evident audit log (the consent
// issue).
//
// Today the gateway runs gateway.PassConsent in its place: envelopes carry the
// signals as received with consent.decided=false, which consumers must treat
// as not consented.
package consent
