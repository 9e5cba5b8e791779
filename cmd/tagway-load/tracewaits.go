package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// TraceWaits is what an execution trace of an open loop says about where
// the time went: how busy the server's Ps were and with what, how long the
// request handlers waited for a P (runnable) or for something else
// (blocked, by where), and where the consumers' goroutines spent theirs.
// A p99 over its target at a load the CPU seems to have room for reads
// here as either the CPU (long runnable waits: bursts of other work) or a
// wait on another goroutine (a PubAck, Badger's commit).
type TraceWaits struct {
	Seconds float64 `json:"seconds"`
	// BusyPs is the Ps running goroutines, on average over the trace (of
	// GOMAXPROCS; the load generator runs in its own process).
	BusyPs  float64 `json:"busy_ps"`
	Running []Share `json:"running"` // P time by goroutine (its start function)
	// HandlerRunnable is request handlers' waits for a P.
	HandlerRunnable WaitStats `json:"handler_runnable"`
	// HandlerBlocked is handlers' time blocked, by where; ..Over5ms counts
	// only the waits longer than 5 ms (what makes a p99).
	HandlerBlocked        []Share `json:"handler_blocked"`
	HandlerBlockedOver5ms []Share `json:"handler_blocked_over_5ms"`
	// Consumers is the consumers' goroutines' time (segments' engine,
	// forward's router and deliverers, and the NATS subscriptions that feed
	// them) by state and, when blocked, where; idle waits for work are left
	// out.
	Consumers []Share `json:"consumers"`
	// SlowWindows are the quarter seconds in which the request handlers
	// began the most blocked time (what makes the slow seconds), busiest
	// first, each with what ran in it; Typical is the window of median
	// blocked time, for comparison. In the 2026-12-06 traces the slow ones
	// were those where Badger's compactions ran.
	SlowWindows []Window `json:"slow_windows,omitempty"`
	Typical     *Window  `json:"typical_window,omitempty"`
}

// Window is one quarter second of the trace: AtS its start (seconds into
// the trace), HandlerBlockedMS the blocked time request handlers began in
// it, Running the P time of what ran in it (by start function).
type Window struct {
	AtS              float64 `json:"at_s"`
	HandlerBlockedMS float64 `json:"handler_blocked_ms"`
	Running          []Share `json:"running"`
}

// window is the length of a Window.
const window = 250 * time.Millisecond

// Share is time spent on one thing, in milliseconds (n: how many waits).
type Share struct {
	What string  `json:"what"`
	MS   float64 `json:"ms"`
	N    int     `json:"n,omitempty"`
}

// WaitStats summarises waits.
type WaitStats struct {
	N       int     `json:"n"`
	TotalMS float64 `json:"total_ms"`
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
	MaxMS   float64 `json:"max_ms"`
	Over5ms int     `json:"over_5ms"`
}

// goInfo is what the analysis keeps per goroutine.
type goInfo struct {
	start    string // the function it started in
	since    trace.Time
	handler  bool   // its last known stack was serving a request
	where    string // where it blocked
	runStart trace.Time
	// role names a NATS subscription's goroutine by tagway's callback it
	// runs (the outermost tagway frame seen on its stacks).
	role string
}

const handlerFrame = "gateway.(*Gateway).handle"

// consumerStarts are the start functions of the consumers' own goroutines;
// the NATS subscriptions that feed them run in nats.go's (subscription).
var consumerStarts = []string{"segments.(*Engine).loop", "forward.(*Forwarder).releaseHeld", "forward.(*deliverer).worker"}

// analyzeTrace reads an execution trace (runtime/trace, as the server's
// /debug/pprof/trace writes it).
func analyzeTrace(path string) (*TraceWaits, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	gs := map[trace.GoID]*goInfo{}
	running := map[string]float64{}
	blocked := map[string]*Share{}
	blocked5 := map[string]*Share{}
	consumers := map[string]*Share{}
	var runnable []float64
	var first, last trace.Time
	// Per window: P time by start function, and handlers' blocked time.
	winRun := map[int]map[string]float64{}
	winBlocked := map[int]float64{}
	win := func(t trace.Time) int { return int(time.Duration(t-first) / window) }
	addRun := func(from, to trace.Time, what string) {
		for from < to {
			w := win(from)
			end := min(to, first+trace.Time(time.Duration(w+1)*window))
			if winRun[w] == nil {
				winRun[w] = map[string]float64{}
			}
			winRun[w][what] += float64(end-from) / 1e6
			from = end
		}
	}
	add := func(m map[string]*Share, what string, ms float64) {
		s := m[what]
		if s == nil {
			s = &Share{What: what}
			m[what] = s
		}
		s.MS += ms
		s.N++
	}
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		t := ev.Time()
		if first == 0 {
			first = t
		}
		last = t
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		g := gs[id]
		if g == nil {
			g = &goInfo{}
			gs[id] = g
		}
		if s := startFunc(st.Stack); s != "" && (g.start == "" || from == trace.GoNotExist) {
			g.start = s
		}
		ms := 0.0
		if g.since != 0 {
			ms = float64(t-g.since) / 1e6
		}
		if from == trace.GoRunning && g.runStart != 0 {
			running[short(g.start)] += float64(t-g.runStart) / 1e6
			addRun(g.runStart, t, short(g.start))
			g.runStart = 0
		}
		if st.Stack != (trace.Stack{}) && (to == trace.GoWaiting || to == trace.GoRunnable || to == trace.GoSyscall) {
			g.handler = hasFrame(st.Stack, handlerFrame)
			if g.role == "" && isSubscription(g.start) {
				g.role = outermostOwn(st.Stack)
			}
		}
		if g.since != 0 {
			switch {
			case g.handler && from == trace.GoRunnable:
				runnable = append(runnable, ms)
			case g.handler && from == trace.GoWaiting:
				add(blocked, g.where, ms)
				winBlocked[win(g.since)] += ms
				if ms > 5 {
					add(blocked5, g.where, ms)
				}
			}
			if who := consumer(g); who != "" && !strings.HasPrefix(g.where, "idle") {
				switch from {
				case trace.GoRunning:
					add(consumers, who+": running", ms)
				case trace.GoRunnable:
					add(consumers, who+": waiting for a P", ms)
				case trace.GoWaiting:
					add(consumers, who+": blocked in "+g.where, ms)
				}
			}
		}
		switch to {
		case trace.GoWaiting:
			g.where = where(st.Stack)
		case trace.GoRunning:
			g.where = ""
			g.runStart = t
		default: // runnable (its wait for a P counts, even after an idle wait), in a syscall
			g.where = ""
		}
		g.since = t
	}
	span := float64(last-first) / 1e6
	if span <= 0 {
		return nil, fmt.Errorf("%s: an empty trace", path)
	}
	tw := &TraceWaits{Seconds: span / 1e3}
	var busy float64
	runShares := map[string]*Share{}
	for k, v := range running {
		busy += v
		runShares[k] = &Share{What: k, MS: v}
	}
	tw.BusyPs = busy / span
	tw.Running = top(runShares, 12)
	tw.HandlerRunnable = waitStats(runnable)
	tw.HandlerBlocked = top(blocked, 8)
	tw.HandlerBlockedOver5ms = top(blocked5, 6)
	tw.Consumers = top(consumers, 14)
	tw.SlowWindows, tw.Typical = slowWindows(winRun, winBlocked, 3)
	return tw, nil
}

// slowWindows returns the n windows with the most handler blocked time
// begun in them (most first) and the window of median blocked time.
func slowWindows(run map[int]map[string]float64, blocked map[int]float64, n int) ([]Window, *Window) {
	var ws []int
	for w := range run {
		ws = append(ws, w)
	}
	if len(ws) == 0 {
		return nil, nil
	}
	sort.Slice(ws, func(i, j int) bool {
		if blocked[ws[i]] != blocked[ws[j]] {
			return blocked[ws[i]] > blocked[ws[j]]
		}
		return ws[i] < ws[j]
	})
	mk := func(w int) Window {
		m := map[string]*Share{}
		for k, v := range run[w] {
			m[k] = &Share{What: k, MS: v}
		}
		return Window{AtS: (time.Duration(w) * window).Seconds(), HandlerBlockedMS: blocked[w], Running: top(m, 5)}
	}
	var slow []Window
	for _, w := range ws[:min(n, len(ws))] {
		slow = append(slow, mk(w))
	}
	typical := mk(ws[len(ws)/2])
	return slow, &typical
}

func waitStats(ds []float64) WaitStats {
	if len(ds) == 0 {
		return WaitStats{}
	}
	slices.Sort(ds)
	w := WaitStats{N: len(ds), P50MS: ds[len(ds)/2], P99MS: ds[len(ds)*99/100], MaxMS: ds[len(ds)-1]}
	for _, d := range ds {
		w.TotalMS += d
		if d > 5 {
			w.Over5ms++
		}
	}
	return w
}

func top(m map[string]*Share, n int) []Share {
	out := make([]Share, 0, len(m))
	for _, s := range m {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MS > out[j].MS })
	return out[:min(n, len(out))]
}

// startFunc is the outermost function of a goroutine's stack.
func startFunc(s trace.Stack) string {
	last := ""
	for f := range s.Frames() {
		if f.Func != "runtime.goexit" {
			last = f.Func
		}
	}
	return last
}

func hasFrame(s trace.Stack, sub string) bool {
	for f := range s.Frames() {
		if strings.Contains(f.Func, sub) {
			return true
		}
	}
	return false
}

// consumer names g if it is one of the consumers' goroutines: its start
// function, or for a subscription the callback it runs ("" for the
// publishers' PubAck subscriptions and everything else).
func consumer(g *goInfo) string {
	for _, c := range consumerStarts {
		if strings.HasSuffix(g.start, c) {
			return c
		}
	}
	if isSubscription(g.start) && (strings.HasPrefix(g.role, "segments.") || strings.HasPrefix(g.role, "forward.")) {
		return "subscription " + g.role
	}
	return ""
}

func isSubscription(start string) bool { return strings.HasSuffix(start, "(*Conn).waitForMsgs") }

// outermostOwn is the outermost tagway frame of a stack, short ("" if none).
func outermostOwn(s trace.Stack) string {
	out := ""
	for f := range s.Frames() {
		if strings.HasPrefix(f.Func, "github.com/tagway/tagway/") {
			out = short(f.Func)
		}
	}
	return out
}

// where names a blocked stack: its innermost frame outside the runtime and
// the standard library's sync and channel code, and the innermost of
// tagway's own when that is another; "idle" when no tagway or Badger frame
// is on it (a goroutine waiting for work, such as a subscription's).
func where(s trace.Stack) string {
	inner, own := "", ""
	for f := range s.Frames() {
		fn := f.Func
		if inner == "" && !strings.HasPrefix(fn, "runtime.") && !strings.HasPrefix(fn, "sync.") && !strings.HasPrefix(fn, "internal/") {
			inner = fn
		}
		if own == "" && strings.HasPrefix(fn, "github.com/tagway/tagway/") {
			own = fn
		}
	}
	switch {
	case own == "" && !strings.Contains(inner, "badger"), own == inner && isIdleLoop(own):
		return "idle"
	case own == "" || own == inner:
		return short(inner)
	}
	return short(inner) + " ← " + short(own)
}

// isIdleLoop: a consumer's loop, where it waits for its next message or
// tick.
func isIdleLoop(fn string) bool {
	return strings.HasSuffix(fn, "(*Engine).loop") || strings.HasSuffix(fn, "releaseHeld") || strings.HasSuffix(fn, "(*deliverer).worker")
}

// short drops a function's import path: "segments.(*Engine).loop".
func short(fn string) string {
	if i := strings.LastIndexByte(fn, '/'); i >= 0 {
		fn = fn[i+1:]
	}
	return strings.Replace(fn, "nats%2ego", "nats.go", 1)
}

// printTraceWaits writes the analysis for a person.
func printTraceWaits(w io.Writer, name string, tw *TraceWaits) {
	fmt.Fprintf(w, "execution trace of the open loop, %s (%.0f s): goroutines ran on %.2f Ps on average\n", name, tw.Seconds, tw.BusyPs)
	fmt.Fprintf(w, "  running (ms):")
	for _, s := range tw.Running[:min(6, len(tw.Running))] {
		fmt.Fprintf(w, " %s %.0f;", s.What, s.MS)
	}
	h := tw.HandlerRunnable
	fmt.Fprintf(w, "\n  request handlers waited for a P %d times, %.0f ms in all (p99 %.1f ms, max %.1f ms, %d over 5 ms)\n", h.N, h.TotalMS, h.P99MS, h.MaxMS, h.Over5ms)
	fmt.Fprintf(w, "  request handlers blocked, waits over 5 ms (count, ms):")
	for _, s := range tw.HandlerBlockedOver5ms {
		fmt.Fprintf(w, "\n    %5d %8.0f  %s", s.N, s.MS, s.What)
	}
	fmt.Fprintf(w, "\n  consumers, busy or blocked (ms):")
	for _, s := range tw.Consumers[:min(8, len(tw.Consumers))] {
		fmt.Fprintf(w, "\n    %8.0f  %s", s.MS, s.What)
	}
	if len(tw.SlowWindows) > 0 {
		fmt.Fprintf(w, "\n  quarter seconds where handlers began the most blocked time, and what ran (ms of P time):")
		for _, x := range append(tw.SlowWindows, *tw.Typical) {
			fmt.Fprintf(w, "\n    at %5.2f s, %7.0f ms blocked:", x.AtS, x.HandlerBlockedMS)
			for _, s := range x.Running {
				fmt.Fprintf(w, " %s %.0f;", s.What, s.MS)
			}
		}
		fmt.Fprintf(w, " (the median window)")
	}
	fmt.Fprintln(w)
}
