package main

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/forward"
	"github.com/tagway/tagway/gateway"
	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/dedup"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
	"github.com/tagway/tagway/gateway/units"
	"github.com/tagway/tagway/segments"
)

// reference.yaml documents every key with its default; `tagway serve --help`
// prints it and a test keeps it loadable.
//
//go:embed reference.yaml
var referenceYAML string

// fileConfig is the YAML file (DESIGN.md, "Configuration"). Each package owns
// its part; this only assembles them.
type fileConfig struct {
	Gateway         gateway.Config      `yaml:",inline"`
	Data            string              `yaml:"data"`
	Admin           gateway.AdminConfig `yaml:"admin"`
	NATS            bus.Config          `yaml:"nats"`
	Badger          kv.Config           `yaml:"badger"`
	Log             logConfig           `yaml:"log"`
	ShutdownTimeout units.Duration      `yaml:"shutdown_timeout"`

	Consent      consent.Config        `yaml:"consent"`
	Dedup        dedup.Config          `yaml:"dedup"`
	Segments     segments.Config       `yaml:"segments"`
	Forward      forward.Config        `yaml:"forward"`
	Destinations []forward.Destination `yaml:"destinations"`
}

type logConfig struct {
	// Level: debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format: json or text. Default json.
	Format string `yaml:"format"`
}

// serveConfig is everything serve needs, after defaults, file, env and flags.
type serveConfig struct {
	fileConfig
	configFile string
	demo       bool   // no config file: demo site and source
	demoKey    string // the demo source's bearer key (demo only)
	checkOnly  bool
	segments   *segments.Program // compiled segments.rules
	getenv     func(string) string
}

// demoSegments are the sample segments of demo mode (no --config).
const demoSegments = `
- {name: cart_abandoners_7d, include: {event: AddToCart, within: 7d}, exclude: {event: CompletePayment, within: 30d}}
- {name: visitors_30d, include: {event: PageView, within: 30d}}
- {name: video_viewers_75_30d, include: {event: VideoProgress, within: 30d, where: "percent >= 75"}}
- {name: high_value_90d, include: {event: CompletePayment, within: 90d, sum: "value >= 500"}}
`

// Settings that flags and environment variables override, in that order.
var overrides = []struct {
	flag, env, help string
	set             func(c *serveConfig, v string)
}{
	{"listen", "TAGWAY_LISTEN", "public listener host:port (default :8080)", func(c *serveConfig, v string) { c.Gateway.Listen = v }},
	{"admin-listen", "TAGWAY_ADMIN_LISTEN", "admin listener host:port (default 127.0.0.1:8081)", func(c *serveConfig, v string) { c.Admin.Listen = v }},
	{"data", "TAGWAY_DATA", "data directory: Badger in DIR/badger, embedded JetStream in DIR/nats (default ./data)", func(c *serveConfig, v string) { c.Data = v }},
	{"nats", "TAGWAY_NATS", "URL of an external NATS cluster (default: embedded server)", func(c *serveConfig, v string) { c.NATS.URL = v }},
	{"nats-listen", "TAGWAY_NATS_LISTEN", `embedded NATS client listener host:port, "off" for none (default 127.0.0.1:4222)`, func(c *serveConfig, v string) { c.NATS.Listen = v }},
	{"log-level", "TAGWAY_LOG_LEVEL", "debug, info, warn or error (default info)", func(c *serveConfig, v string) { c.Log.Level = v }},
	{"log-format", "TAGWAY_LOG_FORMAT", "json or text (default json)", func(c *serveConfig, v string) { c.Log.Format = v }},
}

// loadServeConfig parses flags, reads the file and applies env and flags.
func loadServeConfig(args []string, stderr io.Writer, getenv func(string) string) (*serveConfig, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "YAML config file (env TAGWAY_CONFIG); none: demo mode")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	vals := make([]*string, len(overrides))
	for i, o := range overrides {
		vals[i] = fs.String(o.flag, "", o.help+" (env "+o.env+")")
	}
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: tagway serve [flags]\n\nFlags (each also settable by the environment variable shown):\n")
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Other environment variables:
  TAGWAY_ADMIN_TOKEN   admin bearer token (required when the admin listener is not loopback;
                       the variable's name is set by admin.token_env)
  TAGWAY_DEMO_KEY      demo mode: the demo source's API key (default: random, printed at start)

Config file reference (every key, with its default):

`+referenceYAML)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	c := &serveConfig{checkOnly: *check, getenv: getenv}
	c.configFile = *configFile
	if !set["config"] {
		c.configFile = getenv("TAGWAY_CONFIG")
	}
	if c.configFile != "" {
		raw, err := os.ReadFile(c.configFile)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(raw, &c.fileConfig); err != nil {
			return nil, fmt.Errorf("config %s: %w", c.configFile, err)
		}
	}
	for i, o := range overrides {
		if v := getenv(o.env); v != "" {
			o.set(c, v)
		}
		if set[o.flag] {
			o.set(c, *vals[i])
		}
	}
	if c.configFile == "" {
		c.demo = true
		c.demoKey = getenv("TAGWAY_DEMO_KEY")
		if c.demoKey == "" {
			c.demoKey = "tw_demo_" + event.NewAnonID()
		}
		sum := sha256.Sum256([]byte(c.demoKey))
		c.Gateway.Sites = []gateway.Site{{ID: "demo", Origins: []string{"*"}}}
		c.Gateway.Sources = []gateway.Source{{Name: "demo", KeySHA256: hex.EncodeToString(sum[:]), Sites: []string{"demo"}}}
		// The demo has no geo source, so no known consent law applies by
		// default (regime none); a local client may play a proxy's geo
		// headers (curl -H 'CF-IPCountry: FR') to see opt-in consent at work.
		c.Consent.DefaultRegime = consent.None
		c.Consent.Geo.CountryHeader, c.Consent.Geo.RegionHeader = "CF-IPCountry", "X-Region"
		c.Gateway.TrustedProxies = []string{"127.0.0.0/8", "::1"}
		c.Gateway.DemoPage = true
		if err := yaml.Unmarshal([]byte(demoSegments), &c.Segments.Rules); err != nil {
			return nil, fmt.Errorf("demo segments: %w", err)
		}
	}
	c.Admin.SetDefaults()
	c.Admin.Token = getenv(c.Admin.TokenEnv)
	if err := c.finish(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeYAML decodes strictly: an unknown key or a bad value is an error
// that names the key's path ("limits.ip_rate.rps (line 12): …").
func decodeYAML(raw []byte, out *fileConfig) error {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return err // a syntax error: yaml names the line
	}
	if root.Kind == 0 {
		return nil // an empty file is all defaults
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return nameKeys(err, keyPaths(&root))
	}
	return nil
}

// position is a place in the YAML source.
type position struct{ line, col int }

// keyPaths maps the position of every key and value to its dotted path.
func keyPaths(root *yaml.Node) map[position]string {
	paths := map[position]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				paths[position{k.Line, k.Column}] = p
				paths[position{v.Line, v.Column}] = p
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				paths[position{c.Line, c.Column}] = p
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return paths
}

var (
	lineColRe = regexp.MustCompile(`^line (\d+), column (\d+): (.*)$`)
	lineRe    = regexp.MustCompile(`^\s*line (\d+): (.*)$`)
	unknownRe = regexp.MustCompile(`^field (\S+) not found in type`)
)

// nameKeys rewrites decoder errors that give a position into ones that name
// the key. yaml's own errors give only a line: the deepest key that starts on
// that line is named.
func nameKeys(err error, paths map[position]string) error {
	onLine := func(line int) string {
		best, bestCol := "", -1
		for p, path := range paths {
			if p.line == line && p.col > bestCol {
				best, bestCol = path, p.col
			}
		}
		return best
	}
	msg := err.Error()
	if m := lineColRe.FindStringSubmatch(msg); m != nil {
		line, col := atoi(m[1]), atoi(m[2])
		path := paths[position{line, col}]
		if path == "" {
			path = onLine(line)
		}
		return fmt.Errorf("%s (line %d): %s", path, line, m[3])
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	out := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		m := lineRe.FindStringSubmatch(e)
		if m == nil {
			out = append(out, e)
			continue
		}
		line, text := atoi(m[1]), m[2]
		path := onLine(line)
		if u := unknownRe.FindStringSubmatch(text); u != nil {
			// The key itself is on that line: name its path.
			named := ""
			for p, full := range paths {
				if p.line == line && (full == u[1] || strings.HasSuffix(full, "."+u[1])) && len(full) > len(named) {
					named = full
				}
			}
			switch {
			case named != "":
				path = named
			case path == "" || !strings.HasSuffix(path, u[1]):
				path = strings.TrimPrefix(path+"."+u[1], ".")
			}
			text = "unknown key (see tagway serve --help for every key)"
		}
		out = append(out, fmt.Sprintf("%s (line %d): %s", path, line, text))
	}
	return errors.New(strings.Join(out, "; "))
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// finish fills defaults and validates every part, naming the bad key.
func (c *serveConfig) finish() error {
	if c.Data == "" {
		c.Data = "./data"
	}
	if c.NATS.Listen == "" && c.NATS.URL == "" {
		c.NATS.Listen = "127.0.0.1:4222"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = units.Duration(15 * time.Second)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q must be debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		return fmt.Errorf("log.format: %q must be json or text", c.Log.Format)
	}
	c.Gateway.SetDefaults()
	if err := c.Gateway.Validate(); err != nil {
		return err
	}
	if err := c.Admin.Validate(); err != nil {
		return err
	}
	windowSet := c.NATS.Events.DuplicateWindow != 0
	c.NATS.SetDefaults()
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	// The gateway publishes an unconfirmed event again within the events
	// stream's window to learn whether it was stored (gateway/unsure.go):
	// room for two attempts and a margin. The default grows with a long
	// publish_timeout; a window set too short is refused.
	min := 2*(c.NATS.PublishTimeout.D()+time.Second) + time.Second
	if !windowSet && c.NATS.Events.DuplicateWindow.D() < min {
		c.NATS.Events.DuplicateWindow = units.Duration(min)
	}
	if c.NATS.Events.DuplicateWindow.D() < min {
		return fmt.Errorf("nats.events.duplicate_window: %v is too short: at least %v (twice nats.publish_timeout plus 3s), so that an unconfirmed publish can be retried within it",
			c.NATS.Events.DuplicateWindow.D(), min)
	}
	c.Badger.SetDefaults()
	if err := c.Badger.Validate(); err != nil {
		return err
	}
	c.Dedup.SetDefaults()
	if err := c.Dedup.Validate(); err != nil {
		return err
	}
	// Each destination is a use, forward:<name>, gated by its GVL vendor id.
	c.Forward.SetDefaults()
	if err := c.Forward.Validate(); err != nil {
		return err
	}
	dests := map[string]int{}
	for i := range c.Destinations {
		d := &c.Destinations[i]
		d.SetDefaults(c.Dedup.MergeWindow.D())
		if err := d.Validate(i, c.getenv); err != nil {
			return err
		}
		if _, dup := dests[d.Name]; dup {
			return fmt.Errorf("destinations[%d].name: duplicate destination %q", i, d.Name)
		}
		dests[d.Name] = d.GVLID
	}
	c.Consent.SetDefaults(dests)
	if err := c.Consent.Validate(); err != nil {
		return err
	}
	for name := range dests {
		if _, ok := c.Consent.Policy[consent.UseForward+name]; !ok {
			return fmt.Errorf("consent.policy: destination %q has no forward:%s use", name, name)
		}
	}
	c.Segments.SetDefaults()
	prog, err := c.Segments.Validate()
	if err != nil {
		return err
	}
	for i, r := range c.Segments.Rules {
		use := r.Use
		if use == "" {
			use = "segments"
		}
		if _, ok := c.Consent.Policy[use]; !ok {
			return fmt.Errorf("segments.rules[%d].use: %q is not a use in consent.policy", i, use)
		}
	}
	c.segments = prog
	c.Gateway.GeoCountryHeader, c.Gateway.GeoRegionHeader = c.Consent.Geo.CountryHeader, c.Consent.Geo.RegionHeader
	if c.Dedup.ClaimWait <= c.NATS.PublishTimeout {
		// A copy waits for a concurrent copy's publish; it must not give up
		// before that publish can have timed out itself.
		return fmt.Errorf("dedup.claim_wait: must be longer than nats.publish_timeout (%s)", c.NATS.PublishTimeout)
	}
	return nil
}

func (c *serveConfig) String() string {
	return strings.Join([]string{"listen=" + c.Gateway.Listen, "admin=" + c.Admin.Listen, "data=" + c.Data}, " ")
}
