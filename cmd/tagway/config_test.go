package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagway/tagway/gateway"
)

func loadFile(t *testing.T, yaml string, env map[string]string, args ...string) (*serveConfig, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tagway.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return loadServeConfig(append([]string{"--config", p}, args...), &bytes.Buffer{}, envFunc(env))
}

// The shipped examples must load: deploy/ for deployments, reference.yaml for
// `tagway serve --help`.
func TestDestinationsBecomeForwardUses(t *testing.T) {
	c, err := loadFile(t, "sites: [{id: shop}]\ndestinations:\n  - {name: tiktok, type: tiktok, gvl_id: 755, pixel_code: P1, access_token_env: TT}\n"+
		"  - {name: hook, type: webhook, url: \"https://hooks.example/tw\", secret_file: "+secretFile(t)+"}\n", map[string]string{"TT": "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Consent.Policy["forward:tiktok"]; u.Vendor != 755 || len(u.Purposes) == 0 {
		t.Fatalf("forward:tiktok = %+v", u)
	}
	if _, ok := c.Consent.Policy["forward:hook"]; !ok {
		t.Fatal("no forward:hook")
	}
}

// shippedEnv holds the secrets deploy/tagway.yaml's destinations name.
var shippedEnv = map[string]string{"TIKTOK_ACCESS_TOKEN": "test-token"}

func secretFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestShippedConfigsLoad(t *testing.T) {
	for _, p := range []string{"../../deploy/tagway.yaml", "reference.yaml"} {
		c, err := loadServeConfig([]string{"--config", p}, &bytes.Buffer{}, envFunc(shippedEnv))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(c.Gateway.Sites) != 1 || c.Gateway.Sites[0].ID != "shop" || c.demo {
			t.Fatalf("%s: sites %+v demo %v", p, c.Gateway.Sites, c.demo)
		}
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown top-level key", "listen: \":8080\"\nlisten_addr: x\n", "listen_addr (line 2): unknown key"},
		{"unknown nested key", "admin:\n  listn: x\n", "admin.listn (line 2): unknown key"},
		{"unknown key in a list", "sites:\n  - id: shop\n    cookie_domian: x\n", "sites[0].cookie_domian (line 3): unknown key"},
		{"bad duration", "dedup: {window: 7x}\n", "dedup.window (line 1): invalid duration"},
		{"bad size", "limits:\n  browser_body: huge\n", "limits.browser_body (line 2): invalid size"},
		{"wrong type", "limits:\n  ip_rate: {rps: fast}\n", "limits.ip_rate.rps (line 2)"},
		{"range", "limits:\n  server_events: -1\n", "limits.server_events: must be between"},
		{"site id", "sites:\n  - id: Shop!\n", "sites[0].id:"},
		{"key hash", "sites: [{id: shop}]\nsources:\n  - {name: b, key_sha256: nothex, sites: [shop]}\n", "sources[0].key_sha256: must be 64 hex"},
		{"source unknown site", "sites: [{id: shop}]\nsources:\n  - {name: b, key_sha256: " + strings.Repeat("ab", 32) + ", sites: [blog]}\n", `sources[0].sites[0]: unknown site "blog"`},
		{"origin", "sites:\n  - {id: shop, origins: [shop.example]}\n", "sites[0].origins[0]:"},
		{"proxy", "trusted_proxies: [lb]\n", "trusted_proxies[0]:"},
		{"log level", "log: {level: loud}\n", "log.level:"},
		{"regime", "consent: {default_regime: maybe}\n", "consent.default_regime:"},
		{"destination type", "destinations:\n  - {name: x, type: fax}\n", "destinations[0].type:"},
		{"nats replicas", "nats: {events: {replicas: 9}}\n", "nats.events.replicas:"},
		{"syntax", "sites: [\n", "line"},
		{"dedup window", "dedup: {window: 30s}\n", "dedup.window:"},
		{"policy use", "consent:\n  policy:\n    measurement: {purposes: [1]}\n    profiling: {}\n", "consent.policy.profiling: unknown use"},
		{"policy key", "consent:\n  policy:\n    measurement: {purposez: [1]}\n", "consent.policy.measurement.purposez (line 3): unknown key"},
		{"policy purpose", "consent:\n  policy:\n    measurement: {purposes: [30]}\n", "purpose 30"},
		{"destination without a use", "consent:\n  policy:\n    measurement: {purposes: [1]}\ndestinations:\n  - {name: tiktok, type: tiktok, pixel_code: P, access_token_env: TT}\n", `destination "tiktok" has no forward:tiktok use`},
		{"destination pixel", "destinations:\n  - {name: tiktok, type: tiktok, access_token_env: TT}\n", "destinations[0].pixel_code: required"},
		{"destination token", "destinations:\n  - {name: meta, type: meta, pixel_id: \"1\", access_token_env: NOPE}\n", "destinations[0].access_token_env: environment variable NOPE is empty or not set"},
		{"destination key", "destinations:\n  - {name: m, type: meta, pixel_idd: \"1\"}\n", "destinations[0].pixel_idd (line 2): unknown key"},
		{"destination duplicate", "destinations:\n  - {name: t, type: tiktok, pixel_code: P, access_token_env: TT}\n  - {name: t, type: tiktok, pixel_code: P, access_token_env: TT}\n", `destinations[1].name: duplicate destination "t"`},
		{"destination reserved", "destinations:\n  - {name: dead, type: webhook}\n", `destinations[0].name: "dead" is reserved`},
		{"webhook url", "destinations:\n  - {name: h, type: webhook, url: ftp://x, secret_env: TT}\n", "destinations[0].url:"},
		{"audit retention", "consent: {audit_retention: 2h}\n", "consent.audit_retention:"},
		{"claim wait", "dedup: {claim_wait: 3s}\nnats: {publish_timeout: 5s}\n", "dedup.claim_wait: must be longer than nats.publish_timeout"},
		{"events duplicate window", "nats: {publish_timeout: 5s, events: {duplicate_window: 10s}}\n", "nats.events.duplicate_window: 10s is too short: at least 13s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadFile(t, tc.yaml, map[string]string{"TT": "tok"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigPrecedence(t *testing.T) {
	yaml := "listen: \":9000\"\ndata: /from/file\nadmin: {listen: \"127.0.0.1:9001\"}\n"
	c, err := loadFile(t, yaml, nil)
	if err != nil || c.Gateway.Listen != ":9000" || c.Data != "/from/file" || c.Admin.Listen != "127.0.0.1:9001" {
		t.Fatalf("file: %v %+v", err, c)
	}
	c, err = loadFile(t, yaml, map[string]string{"TAGWAY_LISTEN": ":9100", "TAGWAY_DATA": "/from/env", "TAGWAY_NATS": "nats://n1:4222"})
	if err != nil || c.Gateway.Listen != ":9100" || c.Data != "/from/env" || c.NATS.URL != "nats://n1:4222" {
		t.Fatalf("env over file: %v %+v", err, c)
	}
	c, err = loadFile(t, yaml, map[string]string{"TAGWAY_LISTEN": ":9100"}, "--listen", ":9200", "--nats-listen", "off")
	if err != nil || c.Gateway.Listen != ":9200" || c.NATS.Listen != "off" {
		t.Fatalf("flag over env: %v %+v", err, c)
	}
	// Defaults with no file at all: demo mode.
	c, err = loadServeConfig(nil, &bytes.Buffer{}, envFunc(map[string]string{"TAGWAY_DEMO_KEY": "k"}))
	if err != nil || !c.demo || c.demoKey != "k" || c.Gateway.Listen != ":8080" || c.Admin.Listen != "127.0.0.1:8081" ||
		c.Data != "./data" || c.NATS.Listen != "127.0.0.1:4222" || c.NATS.URL != "" {
		t.Fatalf("defaults: %v %+v", err, c)
	}
	if _, ok := c.Consent.Policy["forward:tiktok"]; ok {
		t.Fatal("forward use without a destination")
	}
	if len(c.Gateway.Sources) != 1 || c.Gateway.Sources[0].Sites[0] != "demo" {
		t.Fatalf("demo source: %+v", c.Gateway.Sources)
	}
	c2, _ := loadServeConfig(nil, &bytes.Buffer{}, envFunc(nil))
	if !strings.HasPrefix(c2.demoKey, "tw_demo_") || c2.demoKey == c.demoKey {
		t.Fatalf("random demo key: %q", c2.demoKey)
	}
	// TAGWAY_CONFIG names the file when --config is absent.
	p := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(p, []byte(yaml), 0o600)
	c, err = loadServeConfig(nil, &bytes.Buffer{}, envFunc(map[string]string{"TAGWAY_CONFIG": p}))
	if err != nil || c.demo || c.Gateway.Listen != ":9000" {
		t.Fatalf("TAGWAY_CONFIG: %v %+v", err, c)
	}
}

func TestAdminTokenRequiredOffLoopback(t *testing.T) {
	_, err := loadFile(t, "", nil, "--admin-listen", "0.0.0.0:8081")
	if !errors.Is(err, gateway.ErrAdminToken) {
		t.Fatalf("err = %v", err)
	}
	c, err := loadFile(t, "admin: {token_env: MY_TOKEN}\n", map[string]string{"MY_TOKEN": "t0ken"}, "--admin-listen", "0.0.0.0:8081")
	if err != nil || c.Admin.Token != "t0ken" {
		t.Fatalf("with token: %v", err)
	}
}

func TestCLI(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"version"}, &out, &errb, envFunc(nil)); err != nil || !strings.HasPrefix(out.String(), "tagway ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	out.Reset()
	if err := run(t.Context(), []string{"serve", "--check-config", "--config", "../../deploy/tagway.yaml"}, &out, &errb, envFunc(shippedEnv)); err != nil || !strings.HasPrefix(out.String(), "config ok") {
		t.Fatalf("check-config: %v %q", err, out.String())
	}
	errb.Reset()
	if err := run(t.Context(), []string{"serve", "--help"}, &out, &errb, envFunc(nil)); !errors.Is(err, errHelp) {
		t.Fatalf("help: %v", err)
	}
	for _, want := range []string{"-listen", "TAGWAY_NATS_LISTEN", "TAGWAY_ADMIN_TOKEN", "TAGWAY_DEMO_KEY", "limits:", "browser_body: 64KiB", "trusted_proxies"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
	if err := run(t.Context(), []string{"bogus"}, &out, &errb, envFunc(nil)); !errors.Is(err, errUsage) {
		t.Fatalf("unknown command: %v", err)
	}
}

// The events stream's window must leave the gateway room to publish an
// unconfirmed event again (gateway/unsure.go): its default grows with a
// long publish_timeout, and one set too short is refused (above).
func TestEventsWindowFollowsPublishTimeout(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"", 15 * time.Second},
		{"nats: {publish_timeout: 30s}\ndedup: {claim_wait: 40s}\n", 63 * time.Second},
		{"nats: {publish_timeout: 30s, events: {duplicate_window: 2m}}\ndedup: {claim_wait: 40s}\n", 2 * time.Minute},
	} {
		c, err := loadFile(t, tc.yaml, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.NATS.Events.DuplicateWindow.D(); got != tc.want {
			t.Errorf("%q: nats.events.duplicate_window = %v, want %v", tc.yaml, got, tc.want)
		}
	}
}
