// Package forward delivers consented conversions to ad platforms: the
// TikTok Events API 2.0, Meta's Conversions API and signed webhooks.
//
// Pure parts (safe for concurrent use): the event-name catalogue
// (catalog.go, versioned by CatalogVersion), named and versioned
// normalisation profiles with test vectors (normalize.go), and the payload
// builders (tiktok.go, meta.go, webhook.go).
//
// The pipeline (forwarder.go, deliver.go, replay.go):
//
//   - the router, a durable consumer on TW_EVENTS (tw-forward) filtered to
//     the events some destination wants, holds each conversion for its
//     destination's hold (unacknowledged in memory up to held_in_memory,
//     beyond it NakWithDelay: hold.go), picks up the
//     identifiers the other copy brought meanwhile (tw.identity.<site>,
//     consumer tw-forward-identity, kept in Badger), and publishes the
//     destination's own payload on tw.forward.<destination>.<event> (stream
//     TW_FORWARD, Nats-Msg-Id destination|site|event|event_id) for every
//     destination whose forward:<name> use the event's decision allows;
//     after a restart it reads back what TW_FORWARD received since a stored
//     mark and does not publish those payloads again (readback.go);
//   - one deliverer per destination (consumer tw-deliver-<name>) re-checks
//     consent against the profile's current state, batches up to the API's
//     limit with bounded concurrency, retries timeouts, 5xx and 429 with
//     jittered exponential backoff (honouring Retry-After), and moves what
//     the API refuses to tw.forward.dead.<destination> with the answer;
//     Replay sends dead letters again.
//
// Metrics: tagway_forward_routed_total{outcome},
// tagway_forward_published_total, _republish_skipped_total, _delivered_total, _retried_total,
// _dead_lettered_total{reason}, _skipped_total{reason},
// _requests_total{outcome}, _payloads_with_dropped_fields_total and
// _delivery_seconds, each by destination;
// tagway_forward_consumer_lag{consumer}; tagway_forward_enriched_identifiers_total.
// Logs carry destination names and event names, never identifiers or
// secrets (Secret prints as [redacted]).
package forward
