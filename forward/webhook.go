package forward

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/gateway/event"
)

// Generic webhooks: the receiver gets Tagway's own envelope, signed.
//
// The signature scheme is Stripe's (https://docs.stripe.com/webhooks#verify-manually):
// the header WebhookSignatureHeader carries "t=<unix seconds>,v1=<hex
// HMAC-SHA256 of "<unix seconds>.<body>">". Because the timestamp is
// inside the signed bytes, a captured delivery cannot be replayed later
// than the receiver's tolerance, and the body cannot be changed without
// the secret. A receiver checks it with VerifyWebhook (or any Stripe-style
// verifier); several v1 entries are allowed, so a sender rotating secrets
// can sign with the old and the new one for a while.

// WebhookSignatureHeader is the HTTP header the signature travels in.
const WebhookSignatureHeader = "Tagway-Signature"

// DefaultWebhookTolerance is how far a signature's timestamp may be from
// the receiver's clock when VerifyWebhook is given no tolerance (Stripe's
// default too).
const DefaultWebhookTolerance = 5 * time.Minute

// Errors VerifyWebhook returns.
var (
	ErrWebhookHeader    = errors.New("forward: malformed webhook signature header")
	ErrWebhookSignature = errors.New("forward: webhook signature does not match")
	ErrWebhookTimestamp = errors.New("forward: webhook signature timestamp outside tolerance")
)

// WebhookBody returns the envelope as JSON, exactly as published on
// tw.events.<site>.<event> (same encoder, same field names).
func WebhookBody(env *event.Envelope) ([]byte, error) {
	if env == nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, FieldError{"envelope", "is nil"})
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("forward: encoding webhook body: %w", err)
	}
	return b, nil
}

// SignWebhook returns the WebhookSignatureHeader value for body sent at t.
func SignWebhook(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + webhookMAC(secret, ts, body)
}

func webhookMAC(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyWebhook checks a WebhookSignatureHeader value against body: one of
// its v1 signatures must be the HMAC of "<t>.<body>" under secret
// (compared in constant time), and t must be within tolerance of now,
// either way (DefaultWebhookTolerance when tolerance ≤ 0). Elements other
// than t and v1 are ignored, as Stripe's scheme asks, so new schemes can be
// added without breaking receivers.
func VerifyWebhook(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultWebhookTolerance
	}
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: more than one t", ErrWebhookHeader)
			}
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return fmt.Errorf("%w: needs t and v1", ErrWebhookHeader)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec < 0 {
		return fmt.Errorf("%w: t is not unix seconds", ErrWebhookHeader)
	}
	want := []byte(webhookMAC(secret, ts, body))
	match := false
	for _, s := range sigs {
		if hmac.Equal(want, []byte(strings.ToLower(s))) {
			match = true
		}
	}
	if !match {
		return ErrWebhookSignature
	}
	if age := now.Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: signed %s ago, tolerance %s", ErrWebhookTimestamp, age.Round(time.Second), tolerance)
	}
	return nil
}
