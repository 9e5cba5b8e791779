// Package segments keeps rolling retargeting segments: the rule language
// (rules.go, compiled by Config.Validate), compact per-profile state in
// Badger bounded by the longest window in use (state.go), evaluation
// (eval.go), identity stitching (identity.go), the expiry-index sweep and
// top_percent ranking (sweep.go), and the admin API's list, explain and
// export (admin.go).
//
// The Engine consumes TW_EVENTS, TW_IDENTITY and TW_CONSENT through durable
// consumers (consume.go explains how acknowledgement works and why the
// consumers are recreated from their ack floor on every subscription) and
// publishes each membership change once on tw.audience.<segment> (stream
// TW_AUDIENCE, payload Delta), with a Nats-Msg-Id derived from the profile,
// the segment and the membership's change count, so a replay after a crash
// computes the same ids: the engine reads back what TW_AUDIENCE received
// since its last commit (scanPublished) and does not publish those again.
//
// Metrics: tagway_segment_members{segment}, tagway_segment_held_out{segment},
// tagway_segments_deltas_total{op}, tagway_segments_events_recorded_total,
// tagway_segments_skipped_total{reason}, tagway_segments_merges_total,
// tagway_segments_profiles_created_total, tagway_segments_swept_total,
// tagway_segments_batch_seconds, tagway_segments_batch_errors_total,
// tagway_segments_republish_skipped_total,
// tagway_segments_publish_errors_total. Logs go to the Deps logger with
// component=segments and carry no identifiers.
//
// An Engine is safe for concurrent use: one goroutine (its loop) owns the
// consumers, and every access to state holds the engine's mutex.
package segments
