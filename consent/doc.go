// Package consent decodes consent signals exactly and decides what they
// allow.
//
// Decoding: IAB TCF v2 (2.0–2.2) strings with their segments, GPP strings
// with their sections (tcfeuv2, uspv1, usnat v1/v2, the US state sections
// 8–27), and US Privacy strings. Decoders refuse malformed input with an
// error naming the field and bit offset, never a partial result, and bound
// the time and memory hostile input can cost.
//
// Deciding: Resolve maps a country and region to a regime (opt-in, opt-out,
// none) at a given time; Decide applies a Policy (measurement, segments,
// forward:<destination>) to an event's signals and returns the allowed uses
// and a reason for each denied one. Package consent/audit keeps the
// hash-chained audit log.
//
// Engine (engine.go) runs both in the request path: it decides every event,
// keeps each profile's last consent state in Badger ('c' site 0x00 profile),
// lets server events without signals inherit it, appends changes to the audit
// log and hands the gateway their tw.consent.<site> message to publish.
// Logs: component=consent.
//
// Everything here is safe for concurrent use: the decoding and deciding
// functions are pure; the Engine serialises decisions per profile.
package consent
