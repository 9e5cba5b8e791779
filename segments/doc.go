// Package segments will hold the rule language, the rolling per-profile state
// in Badger and the evaluation that publishes tw.audience.<segment> (the
// segments issue). Nothing in it is implemented yet; the `segments:` config
// section is read and checked by cmd/tagway so deployments keep loading.
package segments
