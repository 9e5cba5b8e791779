package segments

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tagway/tagway/gateway/units"
)

// MaxLookback is the longest window a rule may use.
const MaxLookback = 180 * 24 * time.Hour

// DefaultMinSize is TikTok's minimum audience size for delivery.
const DefaultMinSize = 1000

// Rule is one segment as written in the config (segments.rules[i]).
type Rule struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Include and Exclude are the short form: a member matches Include and
	// not Exclude. Either may be a whole condition tree.
	Include *Cond `yaml:"include"`
	Exclude *Cond `yaml:"exclude"`
	// MinSize: smaller audiences are tracked but reported as not
	// deliverable. Default 1000 (TikTok's minimum); set 1 to deliver any size.
	MinSize int `yaml:"min_size"`
	// ControlGroup is the percentage (0–50) of matching profiles held out by
	// a stable hash of (segment, profile): tracked and counted, never
	// published on tw.audience nor exported.
	ControlGroup float64 `yaml:"control_group"`
	// TargetCap caps exported members (0: no cap); the members kept are
	// those with the smallest stable hash, so the choice is deterministic.
	TargetCap int `yaml:"target_cap"`
	// Use is the consent use a profile needs to be a member. Default segments.
	Use string `yaml:"use"`
}

// Cond is a condition: exactly one of a composite (all, any, not), an event
// condition (event, within, where, count | sum | top_percent) or a profile
// filter (country, has).
type Cond struct {
	All []*Cond `yaml:"all"`
	Any []*Cond `yaml:"any"`
	Not *Cond   `yaml:"not"`

	// Event names the event; Within is the rolling window (at most 180d).
	Event  string         `yaml:"event"`
	Within units.Duration `yaml:"within"`
	// Where filters the events: "field op value", or a list of them (all
	// must hold). Fields: page.url, page.referrer, page.title, source, or a
	// property path (properties.value or value; contents.content_id looks
	// into every element of the contents list).
	Where StringList `yaml:"where"`
	// Count is ">= N" or "> N" (or just N, meaning at least N). Default: at
	// least one event.
	Count string `yaml:"count"`
	// Sum is "FIELD >= X" (or >): the sum of a numeric field over the window.
	Sum string `yaml:"sum"`
	// TopPercent selects the profiles whose Metric over the window is in the
	// top P percent of the site's profiles that have any.
	TopPercent float64 `yaml:"top_percent"`
	// Metric is "count" (default) or "sum(FIELD)"; only with top_percent.
	Metric string `yaml:"metric"`

	// Country is an ISO 3166-1 alpha-2 code or a list of them: the country of
	// the profile's last consent jurisdiction.
	Country StringList `yaml:"country"`
	// Has is email, phone or external_id: the profile has that hashed id.
	Has string `yaml:"has"`
}

// StringList reads a YAML scalar or a sequence of scalars.
type StringList []string

// UnmarshalYAML accepts "x" or ["x", "y"].
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(StringList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d column %d: must be a string or a list of strings", c.Line, c.Column)
			}
			out = append(out, c.Value)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d column %d: must be a string or a list of strings", n.Line, n.Column)
}

// ---- compiled form ---------------------------------------------------------

// stream is what a profile's state keeps per distinct (event, where, summed
// field): one entry per second with the events' count and sum.
type stream struct {
	id     uint32 // stable hash of key; the id in stored state
	key    string // canonical text, e.g. "VideoProgress|percent >= 75|"
	event  string
	where  []pred
	sumOf  string        // property summed, "" when only counted
	window time.Duration // the longest window any rule uses it with
	uses   []string      // consent uses of the segments that read it
}

type condKind uint8

const (
	kAll condKind = iota
	kAny
	kNot
	kEvent
	kTop
	kCountry
	kHas
)

type cond struct {
	kind      condKind
	kids      []*cond
	st        *stream
	window    time.Duration
	agg       aggKind // count or sum
	strict    bool    // > rather than >=
	min       float64
	top       float64 // top_percent
	metric    aggKind // for top_percent
	countries []string
	has       string
	text      string // for explain
}

type aggKind uint8

const (
	aggCount aggKind = iota
	aggSum
)

// Segment is a compiled rule.
type Segment struct {
	Rule
	root    *cond
	streams []*stream
	hash    string // canonical definition, to detect rule changes
	tops    []*cond
}

// Program is the compiled rule set.
type Program struct {
	Segments []*Segment
	byName   map[string]*Segment
	streams  map[uint32]*stream
	byEvent  map[string][]*stream
	segsByEv map[string][]*Segment
	uses     []string
	hasTop   bool
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
var useRE = regexp.MustCompile(`^[a-z][a-z0-9_:-]{0,63}$`)

// Compile checks rules and builds the program. Errors name the key, e.g.
// "segments.rules[2].include.all[1].within: required".
func Compile(rules []Rule) (*Program, error) {
	p := &Program{byName: map[string]*Segment{}, streams: map[uint32]*stream{}, byEvent: map[string][]*stream{}, segsByEv: map[string][]*Segment{}}
	for i := range rules {
		r := rules[i]
		key := fmt.Sprintf("segments.rules[%d]", i)
		if !nameRE.MatchString(r.Name) {
			if r.Name == "" {
				return nil, fmt.Errorf("%s.name: required", key)
			}
			return nil, fmt.Errorf("%s.name: %q must be 1 to 64 letters, digits, _ or - (it is a NATS subject token)", key, r.Name)
		}
		if p.byName[r.Name] != nil {
			return nil, fmt.Errorf("%s.name: duplicate segment %q", key, r.Name)
		}
		if r.Include == nil {
			return nil, fmt.Errorf("%s.include: required", key)
		}
		if r.MinSize == 0 {
			r.MinSize = DefaultMinSize
		}
		if r.MinSize < 0 {
			return nil, fmt.Errorf("%s.min_size: must be positive", key)
		}
		if r.ControlGroup < 0 || r.ControlGroup > 50 || math.IsNaN(r.ControlGroup) {
			return nil, fmt.Errorf("%s.control_group: must be a percentage from 0 to 50", key)
		}
		if r.TargetCap < 0 {
			return nil, fmt.Errorf("%s.target_cap: must be positive", key)
		}
		if r.Use == "" {
			r.Use = "segments"
		}
		if !useRE.MatchString(r.Use) {
			return nil, fmt.Errorf("%s.use: %q is not a consent use name", key, r.Use)
		}
		s := &Segment{Rule: r}
		c := &compiler{p: p, seg: s}
		inc, err := c.compile(r.Include, key+".include")
		if err != nil {
			return nil, err
		}
		root := inc
		if r.Exclude != nil {
			exc, err := c.compile(r.Exclude, key+".exclude")
			if err != nil {
				return nil, err
			}
			root = &cond{kind: kAll, kids: []*cond{inc, {kind: kNot, kids: []*cond{exc}, text: "not " + exc.text}}, text: inc.text + " and not " + exc.text}
		}
		s.root = root
		s.hash = fmt.Sprintf("%s|use=%s|cg=%g|%s", r.Name, r.Use, r.ControlGroup, root.text)
		p.Segments = append(p.Segments, s)
		p.byName[r.Name] = s
		if !slices.Contains(p.uses, r.Use) {
			p.uses = append(p.uses, r.Use)
		}
		for _, st := range s.streams {
			if !slices.Contains(p.segsByEv[st.event], s) {
				p.segsByEv[st.event] = append(p.segsByEv[st.event], s)
			}
			if !slices.Contains(st.uses, r.Use) {
				st.uses = append(st.uses, r.Use)
			}
		}
		if len(s.tops) > 0 {
			p.hasTop = true
		}
	}
	return p, nil
}

// Segment returns the named segment or nil.
func (p *Program) Segment(name string) *Segment { return p.byName[name] }

// Uses lists the consent uses the segments need.
func (p *Program) Uses() []string { return slices.Clone(p.uses) }

// Window is the longest window of any stream (what state is kept for).
func (p *Program) Window() time.Duration {
	var w time.Duration
	for _, s := range p.streams {
		w = max(w, s.window)
	}
	return w
}

type compiler struct {
	p   *Program
	seg *Segment
}

func (c *compiler) compile(n *Cond, key string) (*cond, error) {
	if n == nil {
		return nil, fmt.Errorf("%s: empty condition", key)
	}
	forms := 0
	for _, b := range []bool{n.All != nil, n.Any != nil, n.Not != nil, n.Event != "", n.Country != nil, n.Has != ""} {
		if b {
			forms++
		}
	}
	if forms != 1 {
		return nil, fmt.Errorf("%s: give exactly one of all, any, not, event, country or has", key)
	}
	if n.Event == "" {
		for k, set := range map[string]bool{"within": n.Within != 0, "where": n.Where != nil, "count": n.Count != "", "sum": n.Sum != "", "top_percent": n.TopPercent != 0, "metric": n.Metric != ""} {
			if set {
				return nil, fmt.Errorf("%s.%s: only with event", key, k)
			}
		}
	}
	switch {
	case n.All != nil || n.Any != nil:
		kind, kids, name := kAll, n.All, "all"
		if n.Any != nil {
			kind, kids, name = kAny, n.Any, "any"
		}
		if len(kids) == 0 {
			return nil, fmt.Errorf("%s.%s: needs at least one condition", key, name)
		}
		out := &cond{kind: kind}
		var texts []string
		for i, k := range kids {
			cc, err := c.compile(k, fmt.Sprintf("%s.%s[%d]", key, name, i))
			if err != nil {
				return nil, err
			}
			out.kids = append(out.kids, cc)
			texts = append(texts, cc.text)
		}
		out.text = name + "(" + strings.Join(texts, ", ") + ")"
		return out, nil
	case n.Not != nil:
		cc, err := c.compile(n.Not, key+".not")
		if err != nil {
			return nil, err
		}
		return &cond{kind: kNot, kids: []*cond{cc}, text: "not " + cc.text}, nil
	case n.Country != nil:
		var cs []string
		for _, v := range n.Country {
			v = strings.ToUpper(strings.TrimSpace(v))
			if len(v) != 2 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z' {
				return nil, fmt.Errorf("%s.country: %q is not an ISO 3166-1 alpha-2 code", key, v)
			}
			cs = append(cs, v)
		}
		slices.Sort(cs)
		return &cond{kind: kCountry, countries: cs, text: "country in [" + strings.Join(cs, ",") + "]"}, nil
	case n.Has != "":
		switch n.Has {
		case "email", "phone", "external_id":
		default:
			return nil, fmt.Errorf("%s.has: %q must be email, phone or external_id", key, n.Has)
		}
		return &cond{kind: kHas, has: n.Has, text: "has " + n.Has}, nil
	}
	return c.event(n, key)
}

var eventRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

func (c *compiler) event(n *Cond, key string) (*cond, error) {
	if !eventRE.MatchString(n.Event) {
		return nil, fmt.Errorf("%s.event: %q is not an event name", key, n.Event)
	}
	w := n.Within.D()
	switch {
	case w == 0:
		return nil, fmt.Errorf("%s.within: required (a window such as 7d, at most 180d)", key)
	case w > MaxLookback:
		return nil, fmt.Errorf("%s.within: %s is longer than the 180d lookback", key, n.Within)
	case w < time.Minute:
		return nil, fmt.Errorf("%s.within: %s is shorter than a minute", key, n.Within)
	}
	var where []pred
	var wtexts []string
	for i, s := range n.Where {
		pr, err := parsePred(s)
		if err != nil {
			k := key + ".where"
			if len(n.Where) > 1 {
				k = fmt.Sprintf("%s[%d]", k, i)
			}
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		where = append(where, pr)
		wtexts = append(wtexts, pr.text)
	}
	slices.Sort(wtexts)
	out := &cond{kind: kEvent, window: w, min: 1}
	sumOf := ""
	aggText := "count >= 1"
	switch {
	case n.TopPercent != 0:
		if n.Count != "" || n.Sum != "" {
			return nil, fmt.Errorf("%s.top_percent: not with count or sum (use metric)", key)
		}
		if n.TopPercent <= 0 || n.TopPercent >= 100 || math.IsNaN(n.TopPercent) {
			return nil, fmt.Errorf("%s.top_percent: must be between 0 and 100", key)
		}
		if len(c.seg.tops) > 0 {
			return nil, fmt.Errorf("%s.top_percent: one top_percent per segment", key)
		}
		out.kind, out.top, out.metric = kTop, n.TopPercent, aggCount
		aggText = fmt.Sprintf("top %g%% by count", n.TopPercent)
		if m := strings.TrimSpace(n.Metric); m != "" && m != "count" {
			f, ok := strings.CutPrefix(m, "sum(")
			f, ok2 := strings.CutSuffix(f, ")")
			if !ok || !ok2 || !fieldRE.MatchString(f) {
				return nil, fmt.Errorf("%s.metric: %q must be count or sum(FIELD)", key, n.Metric)
			}
			out.metric, sumOf = aggSum, normField(f)
			aggText = fmt.Sprintf("top %g%% by sum(%s)", n.TopPercent, sumOf)
		}
	case n.Metric != "":
		return nil, fmt.Errorf("%s.metric: only with top_percent", key)
	case n.Count != "" && n.Sum != "":
		return nil, fmt.Errorf("%s: give count or sum, not both", key)
	case n.Count != "":
		strict, v, err := parseAtLeast(n.Count)
		if err != nil || v != math.Trunc(v) || v < 1 {
			return nil, fmt.Errorf("%s.count: %q must be \">= N\" or \"> N\" with N a whole number of at least 1 (use not: for fewer than)", key, n.Count)
		}
		out.strict, out.min = strict, v
		aggText = "count " + opText(strict) + " " + fmtNum(v)
	case n.Sum != "":
		f, rest, _ := strings.Cut(strings.TrimSpace(n.Sum), " ")
		strict, v, err := parseAtLeast(rest)
		if !fieldRE.MatchString(f) || err != nil {
			return nil, fmt.Errorf("%s.sum: %q must be \"FIELD >= X\" or \"FIELD > X\", e.g. \"value >= 500\"", key, n.Sum)
		}
		sumOf = normField(f)
		out.agg, out.strict, out.min = aggSum, strict, v
		aggText = "sum(" + sumOf + ") " + opText(strict) + " " + fmtNum(v)
	}
	sk := n.Event + "|" + strings.Join(wtexts, " && ") + "|" + sumOf
	st := c.p.streams[streamID(sk)]
	if st == nil {
		st = &stream{id: streamID(sk), key: sk, event: n.Event, where: where, sumOf: sumOf}
		c.p.streams[st.id] = st
		c.p.byEvent[st.event] = append(c.p.byEvent[st.event], st)
	} else if st.key != sk {
		return nil, fmt.Errorf("%s: internal stream id collision between %q and %q; rename a field", key, st.key, sk)
	}
	st.window = max(st.window, w)
	out.st = st
	if !slices.Contains(c.seg.streams, st) {
		c.seg.streams = append(c.seg.streams, st)
	}
	if out.kind == kTop {
		c.seg.tops = append(c.seg.tops, out)
	}
	desc := n.Event
	if len(wtexts) > 0 {
		desc += " where " + strings.Join(wtexts, " and ")
	}
	out.text = fmt.Sprintf("%s %s within %s", desc, aggText, units.Duration(w))
	return out, nil
}

func streamID(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()
}

func opText(strict bool) string {
	if strict {
		return ">"
	}
	return ">="
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// parseAtLeast reads ">= N", "> N" or "N".
func parseAtLeast(s string) (strict bool, v float64, err error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, ">="):
		s = s[2:]
	case strings.HasPrefix(s, ">"):
		strict, s = true, s[1:]
	}
	v, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
		err = errors.New("not a number")
	}
	return strict, v, err
}

// ---- where predicates --------------------------------------------------------

var fieldRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$`)

type pred struct {
	path []string // "page","url" | "source" | property path
	op   string
	str  string
	num  float64
	isN  bool
	set  []string
	text string
}

var ops = []string{">=", "<=", "!=", "==", "=", ">", "<", " contains ", " starts_with ", " ends_with ", " not_in ", " in "}

// parsePred reads "field op value".
func parsePred(s string) (pred, error) {
	s = strings.TrimSpace(s)
	at, op := -1, ""
	for _, o := range ops {
		if i := strings.Index(s, o); i > 0 && (at < 0 || i < at) {
			at, op = i, o
		}
	}
	if at < 0 {
		return pred{}, fmt.Errorf("%q must be \"FIELD OP VALUE\" with OP one of ==, !=, >, >=, <, <=, contains, starts_with, ends_with, in, not_in", s)
	}
	field, val := strings.TrimSpace(s[:at]), strings.TrimSpace(s[at+len(op):])
	op = strings.TrimSpace(op)
	if op == "=" {
		op = "=="
	}
	if !fieldRE.MatchString(field) {
		return pred{}, fmt.Errorf("%q: field %q must be a dotted name such as page.url or contents.content_id", s, field)
	}
	p := pred{path: strings.Split(normField(field), "."), op: op}
	switch op {
	case "in", "not_in":
		var list []string
		if err := yaml.Unmarshal([]byte(val), &list); err != nil || !strings.HasPrefix(val, "[") {
			return pred{}, fmt.Errorf("%q: %s needs a list such as [a, b]", s, op)
		}
		p.set = list
		sorted := slices.Clone(list)
		slices.Sort(sorted)
		val = "[" + strings.Join(sorted, ", ") + "]"
	case ">", ">=", "<", "<=":
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return pred{}, fmt.Errorf("%q: %s needs a number", s, op)
		}
		p.num, p.isN = v, true
	default:
		val = strings.Trim(val, `"'`)
		if val == "" {
			return pred{}, fmt.Errorf("%q: value required", s)
		}
		p.str = val
		if v, err := strconv.ParseFloat(val, 64); err == nil && (op == "==" || op == "!=") {
			p.num, p.isN = v, true
		}
	}
	p.text = strings.Join(p.path, ".") + " " + op + " " + val
	return p, nil
}

// normField maps a bare property name to its properties path; page.* and
// source stay as they are.
func normField(f string) string {
	if f == "source" || strings.HasPrefix(f, "page.") || strings.HasPrefix(f, "properties.") {
		return f
	}
	return "properties." + f
}
