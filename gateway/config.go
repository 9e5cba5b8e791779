package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/tagway/tagway/gateway/units"
)

// Config is the public edge's configuration. The zero value plus SetDefaults
// works (no sites: every browser and server request is refused as an unknown
// site). cmd/tagway assembles it from the YAML file, env and flags.
type Config struct {
	// Listen is the public listener, host:port. Default ":8080".
	Listen string `yaml:"listen"`
	// TLS serves the public listener over HTTPS when both files are set.
	TLS TLSConfig `yaml:"tls"`
	// Sites that may send browser events, and server sources with their keys.
	Sites   []Site   `yaml:"sites"`
	Sources []Source `yaml:"sources"`
	// TrustedProxies are CIDRs (or single addresses) of reverse proxies whose
	// X-Forwarded-For and X-Forwarded-Proto headers are believed. Default none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	Limits         Limits   `yaml:"limits"`
	// Proxy lists third-party scripts served through the gateway's own
	// origin (the tag proxy). Default none.
	Proxy []ProxyRoute `yaml:"proxy"`
	// DemoPage serves GET /demo (set by cmd/tagway in demo mode).
	DemoPage bool `yaml:"-"`
	// GeoCountryHeader and GeoRegionHeader name the trusted geo headers
	// (consent.geo in the file); read only from trusted proxies.
	GeoCountryHeader string `yaml:"-"`
	GeoRegionHeader  string `yaml:"-"`

	trusted []netip.Prefix
}

// TLSConfig names a certificate and key in PEM files.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Site is a website that loads the tag.
type Site struct {
	// ID is the site id used in events and subjects: lowercase letters,
	// digits, '_' and '-', 1 to 64 characters.
	ID string `yaml:"id"`
	// Origins allowed to post browser batches cross-origin (CORS), e.g.
	// "https://shop.example"; "*" allows any. Empty: only the gateway's own
	// origin (the tag served first-party from the site's domain).
	Origins []string `yaml:"origins"`
	// CookieDomain is the Domain attribute of _tw_id (e.g. "shop.example" to
	// share it across subdomains). Empty: host-only cookie.
	CookieDomain string `yaml:"cookie_domain"`
	// Paths mounts this site's tag, browser batch and pixel under a prefix
	// and names of its own, so path blocklists (which match "event",
	// "collect", "track", "pixel", "analytics"…) do not catch them. The
	// default routes (/t.js, /e, /p.gif) keep working too.
	Paths SitePaths `yaml:"paths"`
}

// SitePaths are a site's own public paths; empty: none besides the defaults.
type SitePaths struct {
	Prefix string `yaml:"prefix"` // e.g. /a7f3
	Tag    string `yaml:"tag"`    // default t.js
	Batch  string `yaml:"batch"`  // default e
	Pixel  string `yaml:"pixel"`  // default p.gif
}

// routes returns the site's tag, batch and pixel paths ("" when it has no
// prefix of its own).
func (p SitePaths) routes() (tag, batch, pixel string) {
	if p.Prefix == "" {
		return "", "", ""
	}
	name := func(v, def string) string {
		if v == "" {
			v = def
		}
		return strings.TrimSuffix(p.Prefix, "/") + "/" + strings.TrimPrefix(v, "/")
	}
	return name(p.Tag, "t.js"), name(p.Batch, "e"), name(p.Pixel, "p.gif")
}

// blockedWords are path parts common blocklists match, even first-party.
var blockedWords = []string{"event", "collect", "track", "ingest", "pixel", "analytics"}

// Source is a backend that posts server events with a bearer key.
type Source struct {
	Name string `yaml:"name"`
	// KeySHA256 is the hex SHA-256 of the bearer key; the key itself is never
	// stored in config (`printf %s "$KEY" | sha256sum`).
	KeySHA256 string `yaml:"key_sha256"`
	// Sites this key may send events for.
	Sites []string `yaml:"sites"`
	// RateLimit for this key; zero uses limits.key_rate (off by default).
	RateLimit Rate `yaml:"rate_limit"`

	keyHash [32]byte
}

// Rate is a token bucket: RPS requests per second on average, bursts of Burst.
// RPS 0 turns the limit off.
type Rate struct {
	RPS   float64 `yaml:"rps"`
	Burst int     `yaml:"burst"`
}

// Limits bound what one request may carry and how often.
type Limits struct {
	// ServerBody is the largest POST /v1/events body. Default 1MiB.
	ServerBody units.ByteSize `yaml:"server_body"`
	// BrowserBody is the largest POST /e body. Default 64KiB.
	BrowserBody units.ByteSize `yaml:"browser_body"`
	// ServerEvents is the most events in one server batch. Default 1000.
	ServerEvents int `yaml:"server_events"`
	// BrowserEvents is the most events in one browser batch. Default 50.
	BrowserEvents int `yaml:"browser_events"`
	// EventBytes is the largest single event (its JSON). Default 32KiB.
	EventBytes units.ByteSize `yaml:"event_bytes"`
	// MaxAge is how old an event_time may be. Default 7d.
	MaxAge units.Duration `yaml:"max_age"`
	// MaxFuture is how far ahead an event_time may be. Default 10m.
	MaxFuture units.Duration `yaml:"max_future"`
	// IPRate limits browser requests (POST /e, GET /p.gif) per client IP.
	// Default 100/s with bursts of 200; rps 0 turns it off.
	IPRate *Rate `yaml:"ip_rate"`
	// KeyRate limits server requests per source key unless the source sets
	// its own. Default off.
	KeyRate Rate `yaml:"key_rate"`
	// ReadTimeout and WriteTimeout bound one request's I/O. Default 10s each.
	ReadTimeout  units.Duration `yaml:"read_timeout"`
	WriteTimeout units.Duration `yaml:"write_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 60s.
	IdleTimeout units.Duration `yaml:"idle_timeout"`
	// MaxConns caps concurrent connections. Default 100000.
	MaxConns int `yaml:"max_conns"`
}

var siteIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	l := &c.Limits
	def := func(p *units.ByteSize, v units.ByteSize) {
		if *p == 0 {
			*p = v
		}
	}
	def(&l.ServerBody, 1<<20)
	def(&l.BrowserBody, 64<<10)
	def(&l.EventBytes, 32<<10)
	if l.ServerEvents == 0 {
		l.ServerEvents = 1000
	}
	if l.BrowserEvents == 0 {
		l.BrowserEvents = 50
	}
	defD := func(p *units.Duration, v time.Duration) {
		if *p == 0 {
			*p = units.Duration(v)
		}
	}
	defD(&l.MaxAge, 7*24*time.Hour)
	defD(&l.MaxFuture, 10*time.Minute)
	defD(&l.ReadTimeout, 10*time.Second)
	defD(&l.WriteTimeout, 10*time.Second)
	defD(&l.IdleTimeout, 60*time.Second)
	if l.IPRate == nil {
		l.IPRate = &Rate{RPS: 100, Burst: 200}
	}
	for i := range c.Proxy {
		c.Proxy[i].setDefaults()
	}
	if l.MaxConns == 0 {
		l.MaxConns = 100000
	}
}

// Validate checks every value and names the first bad key. It also prepares
// the parsed forms (key hashes, proxy prefixes) the server uses.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return errors.New("listen: must not be empty")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file must be set together")
	}
	seen := map[string]bool{}
	reserved := map[string]bool{"/e": true, "/p.gif": true, "/v1/events": true, "/t.js": true, "/demo": true}
	for i := range c.Sites {
		s := &c.Sites[i]
		key := fmt.Sprintf("sites[%d]", i)
		if !siteIDRe.MatchString(s.ID) {
			return fmt.Errorf("%s.id: %q must be 1-64 lowercase letters, digits, '_' or '-'", key, s.ID)
		}
		if seen[s.ID] {
			return fmt.Errorf("%s.id: duplicate site %q", key, s.ID)
		}
		seen[s.ID] = true
		for j, o := range s.Origins {
			if o == "*" {
				continue
			}
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
				return fmt.Errorf("%s.origins[%d]: %q is not an origin like https://shop.example", key, j, o)
			}
			s.Origins[j] = strings.TrimSuffix(strings.ToLower(o), "/")
		}
		if d := s.CookieDomain; d != "" && (strings.ContainsAny(d, " ;,/:") || strings.HasPrefix(d, ".") && len(d) == 1) {
			return fmt.Errorf("%s.cookie_domain: %q is not a domain", key, d)
		}
		if s.Paths.Prefix != "" {
			if !strings.HasPrefix(s.Paths.Prefix, "/") || s.Paths.Prefix == "/" {
				return fmt.Errorf("%s.paths.prefix: %q must be a path such as /a7f3", key, s.Paths.Prefix)
			}
			tag, batch, pixel := s.Paths.routes()
			for _, r := range []struct{ name, path string }{{"tag", tag}, {"batch", batch}, {"pixel", pixel}} {
				if strings.ContainsAny(r.path, "%?#\\ \"'<>") || strings.Contains(r.path, "//") || strings.Contains(r.path, "/.") {
					return fmt.Errorf("%s.paths.%s: %q must be a plain path", key, r.name, r.path)
				}
				low := strings.ToLower(r.path)
				for _, w := range blockedWords {
					if strings.Contains(low, w) {
						return fmt.Errorf("%s.paths: %q contains %q, which ad blockers match even on a first-party domain", key, r.path, w)
					}
				}
				if reserved[r.path] {
					return fmt.Errorf("%s.paths.%s: %q is already served", key, r.name, r.path)
				}
				reserved[r.path] = true
			}
		}
	}
	names := map[string]bool{}
	for i := range c.Sources {
		s := &c.Sources[i]
		key := fmt.Sprintf("sources[%d]", i)
		if s.Name == "" {
			return fmt.Errorf("%s.name: required", key)
		}
		if names[s.Name] {
			return fmt.Errorf("%s.name: duplicate source %q", key, s.Name)
		}
		names[s.Name] = true
		h, err := hex.DecodeString(s.KeySHA256)
		if err != nil || len(h) != sha256.Size {
			return fmt.Errorf("%s.key_sha256: must be 64 hex digits, the SHA-256 of the key", key)
		}
		copy(s.keyHash[:], h)
		if len(s.Sites) == 0 {
			return fmt.Errorf("%s.sites: list at least one site", key)
		}
		for j, id := range s.Sites {
			if !seen[id] {
				return fmt.Errorf("%s.sites[%d]: unknown site %q", key, j, id)
			}
		}
		if err := s.RateLimit.validate(key + ".rate_limit"); err != nil {
			return err
		}
	}
	c.trusted = c.trusted[:0]
	for i, p := range c.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return fmt.Errorf("trusted_proxies[%d]: %q is not an address or CIDR", i, p)
			}
			pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		c.trusted = append(c.trusted, pfx.Masked())
	}
	l := &c.Limits
	switch {
	case l.ServerBody < 1024 || l.ServerBody > 64<<20:
		return errors.New("limits.server_body: must be between 1KiB and 64MiB")
	case l.BrowserBody < 1024 || l.BrowserBody > 64<<20:
		return errors.New("limits.browser_body: must be between 1KiB and 64MiB")
	case l.ServerEvents < 1 || l.ServerEvents > 100000:
		return errors.New("limits.server_events: must be between 1 and 100000")
	case l.BrowserEvents < 1 || l.BrowserEvents > 10000:
		return errors.New("limits.browser_events: must be between 1 and 10000")
	case l.EventBytes < 256 || l.EventBytes > l.ServerBody:
		return errors.New("limits.event_bytes: must be at least 256 and at most limits.server_body")
	case l.MaxAge.D() <= 0:
		return errors.New("limits.max_age: must be positive")
	case l.MaxFuture.D() < 0:
		return errors.New("limits.max_future: must not be negative")
	case l.ReadTimeout.D() <= 0 || l.WriteTimeout.D() <= 0 || l.IdleTimeout.D() <= 0:
		return errors.New("limits: read_timeout, write_timeout and idle_timeout must be positive")
	case l.MaxConns < 1:
		return errors.New("limits.max_conns: must be positive")
	}
	if l.IPRate != nil {
		if err := l.IPRate.validate("limits.ip_rate"); err != nil {
			return err
		}
	}
	for i := range c.Proxy {
		if err := c.Proxy[i].validate(fmt.Sprintf("proxy[%d]", i), reserved); err != nil {
			return err
		}
		reserved[c.Proxy[i].Path] = true
	}
	return l.KeyRate.validate("limits.key_rate")
}

func (r Rate) validate(key string) error {
	if r.RPS < 0 {
		return fmt.Errorf("%s.rps: must not be negative", key)
	}
	if r.RPS > 0 && r.Burst < 1 {
		return fmt.Errorf("%s.burst: must be at least 1 when rps is set", key)
	}
	return nil
}

func (c *Config) site(id string) *Site {
	for i := range c.Sites {
		if c.Sites[i].ID == id {
			return &c.Sites[i]
		}
	}
	return nil
}
