// Package consent decodes consent signals exactly: IAB TCF v2 (2.0–2.2)
// strings with their segments, GPP strings with their sections, US Privacy
// strings, GPC, and first-party categories. Decoders refuse malformed input
// with an error naming the field and bit offset, never a partial result, and
// bound the time and memory hostile input can cost.
//
// Still to come (the consent issue): the per-use policy and decisions, consent
// state per profile, the tamper-evident audit log, access and erasure. Until
// then the gateway runs gateway.PassConsent: envelopes carry the signals as
// received with consent.decided=false, which consumers must treat as not
// consented.
//
// Everything here is safe for concurrent use: decoders are pure functions.
package consent
