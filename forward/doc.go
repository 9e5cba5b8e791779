// Package forward will turn consented conversions into destination payloads
// (TikTok Events API, Meta CAPI, webhooks), publish them on
// tw.forward.<destination>.<event> and deliver them (the forward issue).
// Nothing in it is implemented yet; the `destinations:` config section is read
// and checked by cmd/tagway so deployments keep loading.
package forward
