package forward

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagway/tagway/gateway/units"
)

const (
	secretToken = "tok-SECRET-123"
	secretHook  = "hook-SECRET-456"
)

var testEnv = map[string]string{"TT": secretToken, "META": secretToken, "HOOK": secretHook, "BLANK": "  "}

func getenv(k string) string { return testEnv[k] }

func validTikTok() Destination {
	return Destination{Name: "tiktok", Type: KindTikTok, PixelCode: "CPIXEL", AccessTokenEnv: "TT"}
}

func validMeta() Destination {
	return Destination{Name: "meta", Type: KindMeta, PixelID: "123", AccessTokenEnv: "META"}
}

func validHook() Destination {
	return Destination{Name: "hook", Type: KindWebhook, URL: "https://hooks.example/in", SecretEnv: "HOOK"}
}

func TestDestinationDefaults(t *testing.T) {
	tt, mt, wh := validTikTok(), validMeta(), validHook()
	wh.BatchSize = 50
	for _, d := range []*Destination{&tt, &mt, &wh} {
		d.SetDefaults(5 * time.Minute)
		if err := d.Validate(0, getenv); err != nil {
			t.Fatalf("%s: %v", d.Name, err)
		}
		if d.Hold.D() != 5*time.Minute || d.Concurrency != 4 || d.Linger.D() != 200*time.Millisecond || d.Timeout.D() != 15*time.Second ||
			d.MinBackoff.D() != time.Second || d.MaxBackoff.D() != 5*time.Minute || d.MaxAge.D() != 7*24*time.Hour || len(d.Events) == 0 {
			t.Errorf("%s defaults: %+v", d.Name, *d)
		}
	}
	if tt.BaseURL != "https://business-api.tiktok.com" || tt.BatchSize != TikTokMaxBatch || tt.token.Reveal() != secretToken {
		t.Errorf("tiktok: base %s batch %d", tt.BaseURL, tt.BatchSize)
	}
	if mt.BaseURL != "https://graph.facebook.com" || mt.APIVersion != "v21.0" || mt.BatchSize != MetaMaxBatch {
		t.Errorf("meta: base %s version %s batch %d", mt.BaseURL, mt.APIVersion, mt.BatchSize)
	}
	if wh.BatchSize != 1 || wh.SignatureHeader != WebhookSignatureHeader || wh.secret.Reveal() != secretHook {
		t.Errorf("webhook: batch %d header %s", wh.BatchSize, wh.SignatureHeader)
	}
	// What is set stays.
	d := validTikTok()
	d.Hold, d.Concurrency, d.BatchSize, d.BaseURL = units.Duration(time.Second), 9, 10, "http://127.0.0.1:9"
	d.SetDefaults(5 * time.Minute)
	if d.Hold.D() != time.Second || d.Concurrency != 9 || d.BatchSize != 10 || d.BaseURL != "http://127.0.0.1:9" {
		t.Errorf("SetDefaults overwrote: %+v", d)
	}
}

// Every error names the key: destinations[i].<key>.
func TestDestinationValidate(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(tokenFile, []byte(secretToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dur := func(d time.Duration) units.Duration { return units.Duration(d) }
	for _, tc := range []struct {
		name string
		base func() Destination
		edit func(*Destination)
		want string // "" for valid
	}{
		{"tiktok", validTikTok, nil, ""},
		{"meta", validMeta, nil, ""},
		{"webhook", validHook, nil, ""},
		{"token from a file", validTikTok, func(d *Destination) { d.AccessTokenEnv, d.AccessTokenFile = "", tokenFile }, ""},
		{"hold zero", validTikTok, func(d *Destination) { d.Hold = 0; d.MaxAge = dur(time.Hour) }, ""},

		{"name missing", validTikTok, func(d *Destination) { d.Name = "" }, "destinations[3].name: required"},
		{"name with a dot", validTikTok, func(d *Destination) { d.Name = "tik.tok" }, "destinations[3].name:"},
		{"name with a space", validTikTok, func(d *Destination) { d.Name = "tik tok" }, "destinations[3].name:"},
		{"name too long", validTikTok, func(d *Destination) { d.Name = strings.Repeat("a", 65) }, "destinations[3].name:"},
		{"name dead", validTikTok, func(d *Destination) { d.Name = "dead" }, `destinations[3].name: "dead" is reserved`},
		{"type missing", validTikTok, func(d *Destination) { d.Type = "" }, "destinations[3].type:"},
		{"type unknown", validTikTok, func(d *Destination) { d.Type = "snap" }, `destinations[3].type: "snap" must be tiktok, meta or webhook`},
		{"base_url not http", validTikTok, func(d *Destination) { d.BaseURL = "ftp://x" }, "destinations[3].base_url:"},
		{"base_url no host", validMeta, func(d *Destination) { d.BaseURL = "https://" }, "destinations[3].base_url:"},
		{"token env not set", validTikTok, func(d *Destination) { d.AccessTokenEnv = "NOPE" }, "destinations[3].access_token_env: environment variable NOPE is empty or not set"},
		{"token env blank", validMeta, func(d *Destination) { d.AccessTokenEnv = "BLANK" }, "destinations[3].access_token_env:"},
		{"token env and file", validTikTok, func(d *Destination) { d.AccessTokenFile = tokenFile }, "destinations[3].access_token_env, destinations[3].access_token_file: give one, not both"},
		{"token neither", validMeta, func(d *Destination) { d.AccessTokenEnv = "" }, "destinations[3].access_token_env: required (or destinations[3].access_token_file)"},
		{"token file missing", validTikTok, func(d *Destination) { d.AccessTokenEnv, d.AccessTokenFile = "", filepath.Join(dir, "nope") }, "destinations[3].access_token_file:"},
		{"token file empty", validTikTok, func(d *Destination) { d.AccessTokenEnv, d.AccessTokenFile = "", emptyFile }, "destinations[3].access_token_file:"},
		{"pixel_code missing", validTikTok, func(d *Destination) { d.PixelCode = "" }, "destinations[3].pixel_code: required"},
		{"tiktok batch_size over the limit", validTikTok, func(d *Destination) { d.BatchSize = TikTokMaxBatch + 1 }, "destinations[3].batch_size: must be between 1 and 1000"},
		{"tiktok batch_size negative", validTikTok, func(d *Destination) { d.BatchSize = -1 }, "destinations[3].batch_size:"},
		{"pixel_id missing", validMeta, func(d *Destination) { d.PixelID = "" }, "destinations[3].pixel_id: required"},
		{"api_version", validMeta, func(d *Destination) { d.APIVersion = "21.0" }, "destinations[3].api_version:"},
		{"meta batch_size over the limit", validMeta, func(d *Destination) { d.BatchSize = MetaMaxBatch + 1 }, "destinations[3].batch_size: must be between 1 and 1000"},
		{"webhook url missing", validHook, func(d *Destination) { d.URL = "" }, "destinations[3].url:"},
		{"webhook url relative", validHook, func(d *Destination) { d.URL = "/in" }, "destinations[3].url:"},
		{"webhook secret env not set", validHook, func(d *Destination) { d.SecretEnv = "NOPE" }, "destinations[3].secret_env: environment variable NOPE"},
		{"webhook secret env and file", validHook, func(d *Destination) { d.SecretFile = tokenFile }, "destinations[3].secret_env, destinations[3].secret_file: give one, not both"},
		{"webhook secret neither", validHook, func(d *Destination) { d.SecretEnv = "" }, "destinations[3].secret_env: required"},
		{"concurrency over 64", validTikTok, func(d *Destination) { d.Concurrency = 65 }, "destinations[3].concurrency:"},
		{"concurrency negative", validTikTok, func(d *Destination) { d.Concurrency = -1 }, "destinations[3].concurrency:"},
		{"hold negative", validTikTok, func(d *Destination) { d.Hold = dur(-time.Second) }, "destinations[3].hold:"},
		{"hold over a day", validTikTok, func(d *Destination) { d.Hold = dur(25 * time.Hour); d.MaxAge = dur(48 * time.Hour) }, "destinations[3].hold:"},
		{"timeout too short", validTikTok, func(d *Destination) { d.Timeout = dur(time.Millisecond) }, "destinations[3].timeout:"},
		{"min_backoff negative", validTikTok, func(d *Destination) { d.MinBackoff = dur(-time.Second) }, "destinations[3].max_backoff:"},
		{"max_backoff under min_backoff", validTikTok, func(d *Destination) { d.MinBackoff, d.MaxBackoff = dur(time.Minute), dur(time.Second) }, "destinations[3].max_backoff: must be at least min_backoff"},
		{"max_age equal to hold", validTikTok, func(d *Destination) { d.MaxAge = d.Hold }, "destinations[3].max_age: must be longer than hold"},
		{"max_age under hold", validMeta, func(d *Destination) { d.MaxAge = dur(time.Minute) }, "destinations[3].max_age: must be longer than hold"},
		{"event name", validTikTok, func(d *Destination) { d.Events = []string{"Purchase", "Add To Cart"} }, `destinations[3].events: "Add To Cart" is not an event name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.base()
			d.SetDefaults(5 * time.Minute)
			if tc.edit != nil {
				tc.edit(&d)
			}
			err := d.Validate(3, getenv)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate accepted it, want %q", tc.want)
			case tc.want != "" && !strings.HasPrefix(err.Error(), tc.want):
				t.Fatalf("Validate: %q, want it to start with %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), secretToken) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

// Neither fmt nor slog shows a destination's secrets, whatever the verb.
func TestSecretsNeverPrint(t *testing.T) {
	tt, wh := validTikTok(), validHook()
	for _, d := range []*Destination{&tt, &wh} {
		d.SetDefaults(time.Minute)
		if err := d.Validate(0, getenv); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	text := slog.New(slog.NewTextHandler(&logs, nil))
	js := slog.New(slog.NewJSONHandler(&logs, nil))
	for _, d := range []*Destination{&tt, &wh} {
		var outs []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, *d), fmt.Sprintf(verb, d))
		}
		outs = append(outs, fmt.Sprint(*d), fmt.Sprintln(d), fmt.Sprintf("%v", []Destination{*d}),
			fmt.Sprintf("%v", d.token), fmt.Sprintf("%#v", d.token), fmt.Sprintf("%#v", d.secret), fmt.Sprintf("%x", d.secret))
		text.Info("destination", "d", *d, "p", d, "token", d.token, "secret", d.secret)
		js.Info("destination", "d", *d, "p", d, "token", d.token, "secret", d.secret)
		outs = append(outs, logs.String())
		for _, out := range outs {
			if strings.Contains(out, secretToken) || strings.Contains(out, secretHook) ||
				strings.Contains(out, fmt.Sprintf("%x", secretToken)) || strings.Contains(out, fmt.Sprintf("%x", secretHook)) {
				t.Errorf("%s's secret printed: %s", d.Name, out)
			}
		}
		if s := fmt.Sprintf("%+v", *d); !strings.Contains(s, d.Name) || !strings.Contains(s, "[redacted]") {
			t.Errorf("%%+v of %s: %s, want the fields with the secret as [redacted]", d.Name, s)
		}
	}
	if tt.token.Reveal() != secretToken || wh.secret.Reveal() != secretHook {
		t.Error("Reveal does not return the secret")
	}
}

func TestConfigValidate(t *testing.T) {
	var c Config
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.Stream.MaxAge.D() != 14*24*time.Hour || c.Stream.Replicas != 1 ||
		c.Stream.DuplicateWindow.D() != 20*time.Second || c.MaxPending != 100_000 {
		t.Fatalf("defaults %+v: %v", c, err)
	}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Stream.Replicas = 7 }, "forward.stream.replicas:"},
		{func(c *Config) { c.Stream.MaxAge = units.Duration(time.Minute) }, "forward.stream.max_age:"},
		{func(c *Config) { c.MaxPending = -1 }, "forward.max_pending:"},
		{func(c *Config) { c.Stream.DuplicateWindow = units.Duration(time.Millisecond) }, "forward.stream.duplicate_window:"},
		{func(c *Config) { c.Stream.DuplicateWindow = units.Duration(30 * 24 * time.Hour) }, "forward.stream.duplicate_window:"},
	} {
		c := Config{}
		c.SetDefaults()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Validate: %v, want %s…", err, tc.want)
		}
	}
}
