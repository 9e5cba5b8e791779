package forward

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tagway/tagway/gateway/event"
)

// A known answer, computed independently:
//
//	printf '%s' '1767225600.{"id":"x"}' | openssl dgst -sha256 -hmac whsec_test
func TestSignWebhookKnownAnswer(t *testing.T) {
	got := SignWebhook([]byte("whsec_test"), time.Unix(1767225600, 0), []byte(`{"id":"x"}`))
	want := "t=1767225600,v1=f2a0e9cc79f6a8d5063bc6718561e872509983827740ea4ee5622da1c7e8d2b4"
	if got != want {
		t.Errorf("SignWebhook = %s\nwant          %s", got, want)
	}
}

func TestVerifyWebhook(t *testing.T) {
	secret := []byte("whsec_test")
	body := []byte(`{"id":"x"}`)
	signedAt := time.Unix(1767225600, 0)
	h := SignWebhook(secret, signedAt, body)
	sig := strings.TrimPrefix(h, "t=1767225600,v1=")
	cases := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		tol    time.Duration
		want   error
	}{
		{"valid", secret, h, body, signedAt.Add(time.Minute), 0, nil},
		{"valid at the tolerance edge", secret, h, body, signedAt.Add(5 * time.Minute), 0, nil},
		{"replayed later than the tolerance", secret, h, body, signedAt.Add(5*time.Minute + time.Second), 0, ErrWebhookTimestamp},
		{"signed in the future", secret, h, body, signedAt.Add(-10 * time.Minute), 0, ErrWebhookTimestamp},
		{"custom tolerance", secret, h, body, signedAt.Add(time.Hour), 2 * time.Hour, nil},
		{"tampered body", secret, h, []byte(`{"id":"y"}`), signedAt, 0, ErrWebhookSignature},
		{"wrong secret", []byte("other"), h, body, signedAt, 0, ErrWebhookSignature},
		{"timestamp changed", secret, "t=1767225601,v1=" + sig, body, signedAt, 0, ErrWebhookSignature},
		{"rotated secrets: any v1 may match", secret, "t=1767225600,v1=" + strings.Repeat("0", 64) + ",v1=" + sig, body, signedAt, 0, nil},
		{"uppercase hex accepted", secret, "t=1767225600,v1=" + strings.ToUpper(sig), body, signedAt, 0, nil},
		{"unknown schemes ignored", secret, "t=1767225600, v0=abc, v1=" + sig, body, signedAt, 0, nil},
		{"no v1", secret, "t=1767225600,v0=" + sig, body, signedAt, 0, ErrWebhookHeader},
		{"no t", secret, "v1=" + sig, body, signedAt, 0, ErrWebhookHeader},
		{"two t", secret, "t=1,t=1767225600,v1=" + sig, body, signedAt, 0, ErrWebhookHeader},
		{"t not a number", secret, "t=soon,v1=" + sig, body, signedAt, 0, ErrWebhookHeader},
		{"empty header", secret, "", body, signedAt, 0, ErrWebhookHeader},
		{"huge t", secret, "t=99999999999999999,v1=" + sig, body, signedAt, 0, ErrWebhookSignature},
	}
	for _, c := range cases {
		err := VerifyWebhook(c.secret, c.header, c.body, c.now, c.tol)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: VerifyWebhook = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestWebhookBodyRoundTrip(t *testing.T) {
	env := testEnvelope()
	env.Properties = []byte(`{"value":47,"currency":"USD"}`)
	env.Consent = event.Consent{Decided: true, Allowed: []string{"forward:hook"}}
	b, err := WebhookBody(env)
	if err != nil {
		t.Fatal(err)
	}
	var back event.Envelope
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, env) {
		t.Errorf("round trip changed the envelope:\n%+v\n%+v", back, *env)
	}
	if _, err := WebhookBody(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil envelope: %v", err)
	}
	env.Properties = []byte(`{broken`)
	if _, err := WebhookBody(env); err == nil {
		t.Error("invalid properties encoded")
	}
}

func FuzzVerifyWebhook(f *testing.F) {
	f.Add("t=1767225600,v1=f2a0e9cc79f6a8d5063bc6718561e872509983827740ea4ee5622da1c7e8d2b4", []byte(`{"id":"x"}`))
	f.Add("t=,v1=", []byte(nil))
	f.Add(",,=,t==1", []byte("x"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := VerifyWebhook([]byte("whsec_test"), header, body, time.Unix(1767225600, 0), 0)
		if err == nil && !strings.Contains(header, "v1=") {
			t.Fatalf("accepted %q", header)
		}
	})
}
