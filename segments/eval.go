package segments

import (
	"slices"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/gateway/event"
)

// ---- matching events to streams ----------------------------------------------

// fields gives where-clauses and sums their values from one envelope; the
// properties are decoded at most once, and only when a rule needs them.
type fields struct {
	env   *event.Envelope
	props map[string]any
	done  bool
}

func (f *fields) values(path []string) []any {
	switch path[0] {
	case "source":
		return []any{string(f.env.Source)}
	case "page":
		if len(path) != 2 {
			return nil
		}
		switch path[1] {
		case "url":
			return []any{f.env.Page.URL}
		case "referrer":
			return []any{f.env.Page.Referrer}
		case "title":
			return []any{f.env.Page.Title}
		}
		return nil
	}
	if !f.done {
		f.done = true
		if len(f.env.Properties) > 0 {
			_ = json.Unmarshal(f.env.Properties, &f.props) // validated by the gateway; a non-object leaves nil
		}
	}
	var out []any
	var walk func(v any, rest []string)
	walk = func(v any, rest []string) {
		if len(rest) == 0 {
			if l, ok := v.([]any); ok {
				out = append(out, l...)
			} else if v != nil {
				out = append(out, v)
			}
			return
		}
		switch x := v.(type) {
		case map[string]any:
			walk(x[rest[0]], rest[1:])
		case []any:
			for _, el := range x {
				walk(el, rest)
			}
		}
	}
	walk(f.props, path[1:])
	return out
}

func num(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func (p *pred) match(f *fields) bool {
	vals := f.values(p.path)
	switch p.op {
	case "!=":
		for _, v := range vals {
			if p.eq(v) {
				return false
			}
		}
		return true
	case "not_in":
		for _, v := range vals {
			if slices.Contains(p.set, str(v)) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		switch p.op {
		case "==":
			if p.eq(v) {
				return true
			}
		case "in":
			if slices.Contains(p.set, str(v)) {
				return true
			}
		case "contains":
			if strings.Contains(str(v), p.str) {
				return true
			}
		case "starts_with":
			if strings.HasPrefix(str(v), p.str) {
				return true
			}
		case "ends_with":
			if strings.HasSuffix(str(v), p.str) {
				return true
			}
		default:
			n, ok := num(v)
			if ok && (p.op == ">" && n > p.num || p.op == ">=" && n >= p.num || p.op == "<" && n < p.num || p.op == "<=" && n <= p.num) {
				return true
			}
		}
	}
	return false
}

func (p *pred) eq(v any) bool {
	if p.isN {
		if n, ok := num(v); ok {
			return n == p.num
		}
	}
	return str(v) == p.str
}

// matches reports whether the envelope belongs to the stream and the value
// it adds to the stream's sum.
func (st *stream) matches(f *fields) (bool, float64) {
	for i := range st.where {
		if !st.where[i].match(f) {
			return false, 0
		}
	}
	if st.sumOf == "" {
		return true, 0
	}
	var total float64
	for _, v := range f.values(strings.Split(st.sumOf, ".")) {
		if n, ok := num(v); ok {
			total += n
		}
	}
	return true, total
}

// ---- evaluation ----------------------------------------------------------------

// evalCtx is what evaluation needs besides the state: the time and, for
// top_percent conditions, each segment's current threshold.
type evalCtx struct {
	now       int64 // unix ms
	threshold func(seg string) float64
	seg       string
}

// result of one condition at now: whether it holds, and the next time (unix
// ms) it can change by time alone (0: never, unless an event comes).
type result struct {
	ok   bool
	next int64
}

func minNext(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// visible sums a leaf's visible entries.
func (c *cond) visible(s *state, now int64) (count, sum float64, last int64, expNext int64, negative bool) {
	for _, x := range s.streams[c.st.id] {
		u := x.until(c.window)
		if u <= now {
			continue
		}
		count += float64(x.count)
		sum += x.sum
		last = max(last, int64(x.sec)*1000)
		expNext = minNext(expNext, u)
		if x.sum < 0 {
			negative = true
		}
	}
	return
}

func (c *cond) eval(s *state, ec *evalCtx) result {
	switch c.kind {
	case kAll, kAny:
		want := c.kind == kAny // the value that decides
		r := result{ok: !want}
		var next int64
		for _, k := range c.kids {
			kr := k.eval(s, ec)
			if kr.ok == want {
				r.ok = want
				if kr.next == 0 { // decided for good (until an event comes)
					return result{ok: want}
				}
			}
			next = minNext(next, kr.next)
		}
		r.next = next
		return r
	case kNot:
		kr := c.kids[0].eval(s, ec)
		return result{ok: !kr.ok, next: kr.next}
	case kCountry:
		return result{ok: slices.Contains(c.countries, s.country)}
	case kHas:
		switch c.has {
		case "email":
			return result{ok: s.email != ""}
		case "phone":
			return result{ok: s.phone != ""}
		}
		return result{ok: s.extID != ""}
	case kTop:
		v := c.metricValue(s, ec.now)
		_, _, _, expNext, _ := c.visible(s, ec.now)
		t := ec.threshold(ec.seg)
		return result{ok: v > 0 && t > 0 && v >= t, next: expNext}
	}
	// kEvent
	count, sum, _, expNext, negative := c.visible(s, ec.now)
	v := count
	if c.agg == aggSum {
		v = sum
	}
	ok := v >= c.min && !(c.strict && v == c.min)
	if negative {
		return result{ok: ok, next: expNext}
	}
	if !ok {
		return result{} // values only leave the window: it cannot become true by time
	}
	// Walk newest to oldest until the condition holds: that entry leaving
	// the window is when it stops holding.
	es := s.streams[c.st.id]
	var acc float64
	for i := len(es) - 1; i >= 0; i-- {
		x := es[i]
		if x.until(c.window) <= ec.now {
			break
		}
		if c.agg == aggSum {
			acc += x.sum
		} else {
			acc += float64(x.count)
		}
		if acc >= c.min && !(c.strict && acc == c.min) {
			return result{ok: true, next: x.until(c.window)}
		}
	}
	return result{ok: true, next: expNext}
}

func (c *cond) metricValue(s *state, now int64) float64 {
	count, sum, _, _, _ := c.visible(s, now)
	if c.metric == aggSum {
		return sum
	}
	return count
}

// Explain is one condition's state for a profile, for `tagway segments explain`.
type Explain struct {
	Condition string    `json:"condition"`
	Holds     bool      `json:"holds"`
	Count     *float64  `json:"count,omitempty"`
	Sum       *float64  `json:"sum,omitempty"`
	Threshold *float64  `json:"threshold,omitempty"`
	Last      string    `json:"last_event,omitempty"`
	Changes   string    `json:"next_change,omitempty"`
	Parts     []Explain `json:"parts,omitempty"`
}

func msTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

func (c *cond) explain(s *state, ec *evalCtx) Explain {
	r := c.eval(s, ec)
	x := Explain{Condition: c.text, Holds: r.ok, Changes: msTime(r.next)}
	switch c.kind {
	case kAll, kAny, kNot:
		for _, k := range c.kids {
			x.Parts = append(x.Parts, k.explain(s, ec))
		}
		if c.kind == kNot {
			x.Condition = "not"
		} else if c.kind == kAll {
			x.Condition = "all"
		} else {
			x.Condition = "any"
		}
	case kEvent, kTop:
		count, sum, last, _, _ := c.visible(s, ec.now)
		x.Count = &count
		if c.st.sumOf != "" {
			x.Sum = &sum
		}
		x.Last = msTime(last)
		if c.kind == kTop {
			t := ec.threshold(ec.seg)
			x.Threshold = &t
		}
	}
	return x
}
