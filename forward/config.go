package forward

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tagway/tagway/gateway/units"
)

// Destination is one entry of the `destinations:` config section. Secrets
// come from an environment variable or a file, never from the file itself,
// and are never logged (Secret's String and LogValue hide them).
type Destination struct {
	// Name is the destination's name: a NATS subject token, used in
	// tw.forward.<name>.<event>, in the consent use forward:<name> and in
	// metrics. Required; "dead" is reserved.
	Name string `yaml:"name"`
	// Type is tiktok, meta or webhook. Required.
	Type Kind `yaml:"type"`
	// GVLID is the destination's IAB Global Vendor List id (consent: the
	// forward:<name> use needs this vendor's consent under TCF).
	GVLID int `yaml:"gvl_id"`

	// BaseURL: default https://business-api.tiktok.com (tiktok),
	// https://graph.facebook.com (meta). Tests point it at a local fake.
	BaseURL string `yaml:"base_url"`
	// PixelCode is TikTok's pixel code (event_source_id). Required for tiktok.
	PixelCode string `yaml:"pixel_code"`
	// PixelID is Meta's dataset (pixel) id. Required for meta.
	PixelID string `yaml:"pixel_id"`
	// APIVersion is Meta's Graph API version. Default v21.0.
	APIVersion string `yaml:"api_version"`
	// AccessTokenEnv / AccessTokenFile name where the access token is
	// (tiktok: the Access-Token header; meta: access_token). One is required
	// for tiktok and meta.
	AccessTokenEnv  string `yaml:"access_token_env"`
	AccessTokenFile string `yaml:"access_token_file"`
	// TestEventCode routes events to the platform's test-events view.
	TestEventCode string `yaml:"test_event_code"`

	// URL is where a webhook posts. Required for webhook.
	URL string `yaml:"url"`
	// SecretEnv / SecretFile: the webhook's HMAC-SHA256 signing secret.
	// Required for webhook.
	SecretEnv  string `yaml:"secret_env"`
	SecretFile string `yaml:"secret_file"`
	// SignatureHeader carries the signature. Default Tagway-Signature.
	SignatureHeader string `yaml:"signature_header"`
	// Headers are sent with every webhook request.
	Headers map[string]string `yaml:"headers"`

	// Events are the events this destination receives, compared by
	// canonical name (Purchase selects CompletePayment). Default
	// DefaultEvents.
	Events []string `yaml:"events"`
	// EventMap renames events for this destination (after the catalogue).
	EventMap map[string]string `yaml:"event_map"`
	// Hold is how long a conversion waits for the other copy's identifiers
	// before it is sent. Default: dedup.merge_window.
	Hold units.Duration `yaml:"hold"`

	// Concurrency is how many requests may be in flight. Default 4.
	Concurrency int `yaml:"concurrency"`
	// BatchSize is the most events per request (webhook: always 1).
	// Default and maximum: the API's limit (1000 for TikTok and Meta).
	BatchSize int `yaml:"batch_size"`
	// Linger is how long a request waits to fill its batch. Default 200ms.
	Linger units.Duration `yaml:"linger"`
	// Timeout bounds one request. Default 15s.
	Timeout units.Duration `yaml:"timeout"`
	// MinBackoff and MaxBackoff bound the retry delay (exponential, with
	// full jitter; a Retry-After header wins). Defaults 1s and 5m.
	MinBackoff units.Duration `yaml:"min_backoff"`
	MaxBackoff units.Duration `yaml:"max_backoff"`
	// MaxAge: a conversion older than this (by its event time) is no longer
	// tried but dead-lettered as expired; both APIs refuse events older than
	// 7 days. Default 7d.
	MaxAge units.Duration `yaml:"max_age"`

	token, secret Secret
}

// Secret is a credential read from the environment or a file. Its String,
// GoString and LogValue never show it, nor does a Destination's Format.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string       { return redacted }
func (s Secret) GoString() string     { return redacted }
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// redactedDestination is a Destination without its methods, for Format.
type redactedDestination Destination

// Format prints the destination with its secrets as [redacted], whatever
// the verb (%v, %+v, %#v, %s, %x…): fmt does not call String on unexported
// fields, so without it the secrets would print in clear.
func (d Destination) Format(f fmt.State, verb rune) {
	r := redactedDestination(d)
	if r.token != "" {
		r.token = redacted
	}
	if r.secret != "" {
		r.secret = redacted
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), r)
}

// Reveal returns the secret itself, for the request that needs it.
func (s Secret) Reveal() string { return string(s) }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// SetDefaults fills zero fields; hold is dedup.merge_window.
func (d *Destination) SetDefaults(hold time.Duration) {
	def := func(p *units.Duration, v time.Duration) {
		if *p == 0 {
			*p = units.Duration(v)
		}
	}
	switch d.Type {
	case KindTikTok:
		if d.BaseURL == "" {
			d.BaseURL = "https://business-api.tiktok.com"
		}
		if d.BatchSize == 0 {
			d.BatchSize = TikTokMaxBatch
		}
	case KindMeta:
		if d.BaseURL == "" {
			d.BaseURL = "https://graph.facebook.com"
		}
		if d.APIVersion == "" {
			d.APIVersion = "v21.0"
		}
		if d.BatchSize == 0 {
			d.BatchSize = MetaMaxBatch
		}
	case KindWebhook:
		d.BatchSize = 1
		if d.SignatureHeader == "" {
			d.SignatureHeader = WebhookSignatureHeader
		}
	}
	if len(d.Events) == 0 {
		d.Events = DefaultEvents
	}
	def(&d.Hold, hold)
	if d.Concurrency == 0 {
		d.Concurrency = 4
	}
	def(&d.Linger, 200*time.Millisecond)
	def(&d.Timeout, 15*time.Second)
	def(&d.MinBackoff, time.Second)
	def(&d.MaxBackoff, 5*time.Minute)
	def(&d.MaxAge, 7*24*time.Hour)
}

// Validate checks the destination and reads its secrets (getenv is
// os.Getenv in production). Errors name the key: destinations[i].<key>.
func (d *Destination) Validate(i int, getenv func(string) string) error {
	key := func(k string) string { return fmt.Sprintf("destinations[%d].%s", i, k) }
	switch {
	case d.Name == "":
		return errors.New(key("name") + ": required")
	case !nameRE.MatchString(d.Name):
		return fmt.Errorf("%s: %q must be 1 to 64 letters, digits, _ or -", key("name"), d.Name)
	case d.Name == "dead":
		return errors.New(key("name") + `: "dead" is reserved (tw.forward.dead.<name> holds dead letters)`)
	}
	switch d.Type {
	case KindTikTok, KindMeta, KindWebhook:
	default:
		return fmt.Errorf("%s: %q must be tiktok, meta or webhook", key("type"), d.Type)
	}
	if d.Type != KindWebhook {
		u, err := url.Parse(d.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%s: %q is not an http(s) URL", key("base_url"), d.BaseURL)
		}
		tok, err := readSecret(key("access_token"), d.AccessTokenEnv, d.AccessTokenFile, getenv)
		if err != nil {
			return err
		}
		d.token = tok
	}
	switch d.Type {
	case KindTikTok:
		if d.PixelCode == "" {
			return errors.New(key("pixel_code") + ": required for a tiktok destination")
		}
		if d.BatchSize < 1 || d.BatchSize > TikTokMaxBatch {
			return fmt.Errorf("%s: must be between 1 and %d", key("batch_size"), TikTokMaxBatch)
		}
	case KindMeta:
		if d.PixelID == "" {
			return errors.New(key("pixel_id") + ": required for a meta destination")
		}
		if !strings.HasPrefix(d.APIVersion, "v") {
			return fmt.Errorf("%s: %q must look like v21.0", key("api_version"), d.APIVersion)
		}
		if d.BatchSize < 1 || d.BatchSize > MetaMaxBatch {
			return fmt.Errorf("%s: must be between 1 and %d", key("batch_size"), MetaMaxBatch)
		}
	case KindWebhook:
		u, err := url.Parse(d.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%s: %q is not an http(s) URL", key("url"), d.URL)
		}
		sec, err := readSecret(key("secret"), d.SecretEnv, d.SecretFile, getenv)
		if err != nil {
			return err
		}
		d.secret = sec
	}
	switch {
	case d.Concurrency < 1 || d.Concurrency > 64:
		return errors.New(key("concurrency") + ": must be between 1 and 64")
	case d.Hold < 0 || d.Hold.D() > 24*time.Hour:
		return errors.New(key("hold") + ": must be between 0 and 24h")
	case d.Timeout.D() < 100*time.Millisecond:
		return errors.New(key("timeout") + ": must be at least 100ms")
	case d.MinBackoff.D() <= 0 || d.MaxBackoff < d.MinBackoff:
		return errors.New(key("max_backoff") + ": must be at least min_backoff, which must be positive")
	case d.MaxAge.D() <= d.Hold.D():
		return errors.New(key("max_age") + ": must be longer than hold")
	}
	for _, e := range d.Events {
		if !nameRE.MatchString(e) {
			return fmt.Errorf("%s: %q is not an event name", key("events"), e)
		}
	}
	return nil
}

// readSecret reads a secret from the env var or the file named (exactly one).
func readSecret(key, env, file string, getenv func(string) string) (Secret, error) {
	switch {
	case env != "" && file != "":
		return "", fmt.Errorf("%s_env, %s_file: give one, not both", key, key)
	case env != "":
		v := strings.TrimSpace(getenv(env))
		if v == "" {
			return "", fmt.Errorf("%s_env: environment variable %s is empty or not set", key, env)
		}
		return Secret(v), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", key, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s_file: %s is empty", key, file)
		}
		return Secret(v), nil
	}
	return "", fmt.Errorf("%s_env: required (or %s_file)", key, key)
}

// Config is what the forwarder needs besides the destinations.
type Config struct {
	// Stream configures TW_FORWARD.
	Stream StreamConfig `yaml:"stream"`
	// MaxPending bounds the conversions held (waiting for their hold) or in
	// flight per consumer. Default 100000.
	MaxPending int `yaml:"max_pending"`
	// HeldInMemory bounds the conversions that wait out their hold in
	// memory (unacknowledged, ~3 KiB each with the decoded envelope); the
	// rest wait in JetStream, which costs the broker a nak and a
	// redelivery each. Default 20000; -1: none.
	HeldInMemory int `yaml:"held_in_memory"`
}

// StreamConfig tunes TW_FORWARD (tw.forward.>).
type StreamConfig struct {
	// MaxAge: default 14d (dead letters wait there for a replay).
	MaxAge units.Duration `yaml:"max_age"`
	// Replicas: default 1 (3 on a cluster).
	Replicas int `yaml:"replicas"`
	// DuplicateWindow: JetStream's Nats-Msg-Id window against publish
	// retries while running (a restart reads back what was published:
	// readback.go). ~180 bytes of broker memory per payload inside it, and
	// two objects for the garbage collector to mark at every cycle.
	// Default 20s: more than a PubAck timeout (10s), the retry's 1s
	// NakWithDelay and its redelivery, with room for a busy router (30s
	// until 2026-12-06). A retry later than that is stored and delivered
	// twice, with the same event_id, which the platforms deduplicate.
	DuplicateWindow units.Duration `yaml:"duplicate_window"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.Stream.MaxAge == 0 {
		c.Stream.MaxAge = units.Duration(14 * 24 * time.Hour)
	}
	if c.Stream.Replicas == 0 {
		c.Stream.Replicas = 1
	}
	if c.Stream.DuplicateWindow == 0 {
		c.Stream.DuplicateWindow = units.Duration(20 * time.Second)
	}
	if c.MaxPending == 0 {
		c.MaxPending = 100_000
	}
	if c.HeldInMemory == 0 {
		c.HeldInMemory = 20_000
	}
}

// Validate checks the section.
func (c *Config) Validate() error {
	switch {
	case c.Stream.Replicas < 1 || c.Stream.Replicas > 5:
		return errors.New("forward.stream.replicas: must be between 1 and 5")
	case c.Stream.MaxAge.D() < time.Hour:
		return errors.New("forward.stream.max_age: must be at least 1h")
	case c.Stream.DuplicateWindow.D() < 100*time.Millisecond || c.Stream.DuplicateWindow > c.Stream.MaxAge:
		return errors.New("forward.stream.duplicate_window: must be at least 100ms (JetStream's minimum) and at most max_age")
	case c.MaxPending < 1:
		return errors.New("forward.max_pending: must be positive")
	case c.HeldInMemory < -1:
		return errors.New("forward.held_in_memory: must be -1 (none) or more")
	}
	return nil
}
