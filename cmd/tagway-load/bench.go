package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Result is one measured run.
type Result struct {
	Target      string         `json:"target"`
	Scenario    string         `json:"scenario"`
	Mode        string         `json:"mode"`
	Seconds     float64        `json:"seconds"`
	Requests    int64          `json:"requests"`
	Events      int64          `json:"events"`
	RPS         float64        `json:"requests_per_s"`
	EPS         float64        `json:"events_per_s"`
	P50ms       float64        `json:"p50_ms"`
	P99ms       float64        `json:"p99_ms"`
	P999ms      float64        `json:"p999_ms"`
	Errors      map[string]int `json:"errors"`
	TargetRate  float64        `json:"target_rate,omitempty"`
	ServerCores float64        `json:"server_cores,omitempty"`
	// Open loop against tagway: event → tw.audience delta latency (browser
	// profiles), and each consumer's backlog over the run.
	DeltaP99ms float64 `json:"delta_p99_ms,omitempty"`
	// Closed loop against tagway: how long the consumers took to catch up
	// after it (and whether they did within --drain).
	DrainSeconds float64 `json:"drain_seconds,omitempty"`
	Drained      bool    `json:"drained,omitempty"`
	// CPUPerEventUS is the server's CPU time from the start of the run
	// until its consumers caught up, per event: what the whole pipeline
	// costs an event, steadier than a rate on a shared box.
	CPUPerEventUS float64 `json:"cpu_per_event_us,omitempty"`
	// Over the same span, what the work was per event, counted (steady
	// from run to run where CPU time is not): the bytes of the entries
	// Tagway wrote to Badger and of the tables its compactions wrote, the
	// entries and the point reads that reached Badger, the messages the
	// broker stored (all streams) and delivered (all consumers).
	PerEvent *Work `json:"per_event,omitempty"`
	// SustainedEventsPerS is the closed loop's events over its length plus
	// the catch-up: the rate the whole pipeline keeps up with. The peak
	// outruns the consumers, which fall behind and catch up after.
	SustainedEventsPerS float64        `json:"sustained_events_per_s,omitempty"`
	Deltas              int            `json:"deltas_timed,omitempty"`
	Lags                map[string]Lag `json:"consumer_lag,omitempty"`
	// Open loop: when it started (unix ms, to line up with server logs and
	// GODEBUG=gctrace) and its latency second by second (by scheduled
	// time), which shows whether a p99 comes from steady queueing or from
	// stalls.
	StartedAtMs int64    `json:"started_at_ms,omitempty"`
	Timeline    []Second `json:"timeline,omitempty"`
	// TraceWaits (open loop, with --trace): where the time went, read from
	// the execution trace.
	TraceWaits *TraceWaits `json:"trace_waits,omitempty"`
}

// Second is the open loop's requests scheduled in one second.
type Second struct {
	At       int     `json:"at_s"`
	Requests int     `json:"requests"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

// sample is one open-loop request: the second it was scheduled in and its
// latency.
type sample struct {
	sec int32
	d   time.Duration
}

// timeline groups samples by second.
func timeline(ss []sample) []Second {
	by := map[int32][]time.Duration{}
	for _, s := range ss {
		by[s.sec] = append(by[s.sec], s.d)
	}
	var out []Second
	for _, sec := range slices.Sorted(maps.Keys(by)) {
		ds := by[sec]
		slices.Sort(ds)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		out = append(out, Second{At: int(sec), Requests: len(ds), P99ms: ms(ds[min(len(ds)-1, int(0.99*float64(len(ds))))]), MaxMs: ms(ds[len(ds)-1])})
	}
	return out
}

// stalls summarises a timeline: how many seconds had a p99 over limit, and
// the worst few by their slowest request.
func stalls(tl []Second, limit float64, n int) (over int, worst []Second) {
	for _, s := range tl {
		if s.P99ms > limit {
			over++
		}
	}
	worst = slices.Clone(tl)
	slices.SortStableFunc(worst, func(a, b Second) int { return cmp.Compare(b.MaxMs, a.MaxMs) })
	return over, worst[:min(n, len(worst))]
}

// Report is the whole run.
type Report struct {
	At         string             `json:"at"`
	Machine    string             `json:"machine"`
	Command    string             `json:"command"`
	Config     string             `json:"tagway_config,omitempty"` // --config's YAML
	Results    []Result           `json:"results"`
	PeakRSSMiB float64            `json:"tagway_peak_rss_mib"`
	BadgerMiB  float64            `json:"tagway_badger_mib"`
	Ratios     map[string]float64 `json:"ratios"`
	CPUProfile string             `json:"cpu_profile"`
	// CPUProfileBrowser is the profile of the beacons' peak run.
	CPUProfileBrowser string `json:"cpu_profile_browser"`
	// HeapProfile is taken at the end of the server batches' open loop
	// (heap-<stamp>-browser.pprof at the beacons'): alloc_space is what
	// the run allocated so far, inuse_space what the server holds.
	HeapProfile string `json:"heap_profile"`
	Segments    int    `json:"segments"`
	// Stages are the parts of the pipeline that ran (--stages): the edge,
	// and the segments and forward consumers unless left out.
	Stages []string `json:"stages"`
	// SinkEvents is how many conversions reached the TikTok sink.
	SinkEvents int64 `json:"sink_events"`
	// ServerCopies is how many server events were the copy of a browser
	// purchase tagway had received (dedup hits).
	ServerCopies int64 `json:"server_copies"`
}

type scenario struct {
	name  string
	path  string
	batch int // events per server request; 0: browser beacon of 1 event
}

var scenarios = []scenario{{"server batches of 20", "/v1/events", 20}, {"browser beacons of 1", "/e", 0}}

// scenarios are the ones --only picks.
func (o *options) scenarios() []scenario {
	switch o.only {
	case "server":
		return scenarios[:1]
	case "browser":
		return scenarios[1:]
	}
	return scenarios
}

const benchKey = "bench-key"

// runBaselines measures the bare 204 handler and the bare durable pipeline
// in closed loop for each scenario, adding their results to rep.
func runBaselines(ctx context.Context, tmp string, tr *traffic, o options, rep *Report, log io.Writer) (map[string]map[string]Result, error) {
	u204, stop204, err := baseline204()
	if err != nil {
		return nil, err
	}
	defer stop204()
	uPipe, stopPipe, err := baselinePipeline(filepath.Join(tmp, "pipeline"))
	if err != nil {
		return nil, err
	}
	defer stopPipe()
	baselines := map[string]map[string]Result{}
	for name, url := range map[string]string{"bare fasthttp 204": u204, "bare durable pipeline": uPipe} {
		baselines[name] = map[string]Result{}
		for _, sc := range o.scenarios() {
			fmt.Fprintf(log, "closed loop: %s, %s…\n", name, sc.name)
			r := closedLoop(ctx, url, sc, tr, o)
			r.Target = name
			rep.Results = append(rep.Results, r)
			baselines[name][sc.name] = r
		}
	}
	return baselines, nil
}

func bench(ctx context.Context, o options, stamp string, log io.Writer) (*Report, error) {
	rep := &Report{At: time.Now().UTC().Format(time.RFC3339), Command: "go run ./cmd/tagway-load " + strings.Join(os.Args[1:], " "), Config: o.config, Ratios: map[string]float64{}}
	rep.Machine = machine()
	tr := &traffic{profiles: o.profiles}

	// Baselines first.
	tmp, err := os.MkdirTemp("", "tagway-load")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	baselines := map[string]map[string]Result{}
	if o.baselines {
		if baselines, err = runBaselines(ctx, tmp, tr, o, rep, log); err != nil {
			return nil, err
		}
	}

	// Tagway itself, as a separate process, with the 20 example segments
	// and a TikTok destination pointed at a local sink.
	sk, err := startSink()
	if err != nil {
		return nil, err
	}
	defer sk.stop()
	extra, nseg, err := pipelineConfig(o, sk.url)
	if err != nil {
		return nil, err
	}
	rep.Segments = nseg
	rep.Stages = []string{"edge"}
	if o.segmentsOn {
		rep.Stages = append(rep.Stages, "segments")
	}
	if o.forwardOn {
		rep.Stages = append(rep.Stages, "forward")
	}
	srv, err := startTagway(ctx, o, tmp, extra+"\n"+o.config, log)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	tr.times = newSendTimes(o.profiles)
	tr.keep = true // from here on, browser purchases are the server's to copy
	for _, sc := range o.scenarios() {
		if sc.batch > 0 {
			// Server copies must be of purchases tagway has seen.
			n := seedPurchases(ctx, srv.url, tr, o)
			took, ok := waitDrained(srv.nats, o.drain, log)
			fmt.Fprintf(log, "seeded %d browser purchases for server copies; consumers caught up: %v after %s\n", n, ok, took.Round(time.Millisecond))
		}
		fmt.Fprintf(log, "closed loop: tagway, %s…\n", sc.name)
		cpu0 := srv.cpuSeconds()
		work0 := srv.work()
		var prof sync.WaitGroup
		// Profile each peak run: cpu-<stamp>.pprof for server batches,
		// cpu-<stamp>-browser.pprof for beacons.
		path := filepath.Join(o.out, "cpu-"+stamp+".pprof")
		if sc.batch > 0 {
			rep.CPUProfile = path
		} else {
			path = filepath.Join(o.out, "cpu-"+stamp+"-browser.pprof")
			rep.CPUProfileBrowser = path
		}
		prof.Add(1)
		go func() { defer prof.Done(); srv.profile(o.duration, path) }()
		r := closedLoop(ctx, srv.url, sc, tr, o)
		prof.Wait()
		r.Target, r.ServerCores = "tagway", (srv.cpuSeconds()-cpu0)/r.Seconds
		rep.Results = append(rep.Results, r)
		if b := baselines["bare durable pipeline"][sc.name]; b.EPS > 0 {
			if sc.batch > 0 {
				rep.Ratios[sc.name+": events/s vs bare pipeline"] = r.EPS / b.EPS
			} else {
				rep.Ratios[sc.name+": requests/s vs bare pipeline"] = r.RPS / b.RPS
			}
		}
		if b := baselines["bare fasthttp 204"][sc.name]; b.RPS > 0 {
			rep.Ratios[sc.name+": requests/s vs bare 204"] = r.RPS / b.RPS
		}
		// Let the consumers catch up with the closed loop's backlog first,
		// profiling the catch-up too (cpu-<stamp>[-browser]-catchup.pprof):
		// the peak run's profile shows the edge, this one the consumers.
		catchup := strings.TrimSuffix(path, ".pprof") + "-catchup.pprof"
		prof.Add(1)
		go func() { defer prof.Done(); srv.profile(o.duration, catchup) }()
		took, ok := waitDrained(srv.nats, o.drain, log)
		prof.Wait()
		r.DrainSeconds, r.Drained = took.Seconds(), ok
		if r.Events > 0 {
			r.CPUPerEventUS = (srv.cpuSeconds() - cpu0) / float64(r.Events) * 1e6
			r.PerEvent = srv.work().since(work0, float64(r.Events))
			if ok {
				r.SustainedEventsPerS = float64(r.Events) / (r.Seconds + r.DrainSeconds)
			}
		}
		rep.Results[len(rep.Results)-1] = r
		fmt.Fprintf(log, "consumers caught up: %v after %s\n", ok, took.Round(time.Millisecond))
		// Open loop at a share of this peak: latency without coordinated omission.
		rate := r.RPS * o.openShare
		if o.rate > 0 {
			rate = o.rate
		}
		fmt.Fprintf(log, "open loop: tagway, %s at %.0f requests/s…\n", sc.name, rate)
		w, err := watch(srv.nats, tr.times)
		if err != nil {
			return nil, fmt.Errorf("watching NATS: %w", err)
		}
		tp := ""
		if o.trace {
			tp = filepath.Join(o.out, "trace-"+stamp+".out")
			if sc.batch == 0 {
				tp = filepath.Join(o.out, "trace-"+stamp+"-browser.out")
			}
			prof.Add(1)
			go func() { defer prof.Done(); srv.trace(min(o.duration, 20*time.Second), tp) }()
			fmt.Fprintf(log, "execution trace of the open loop: %s (go tool trace %s)\n", tp, tp)
		}
		// And the open loop (cpu-<stamp>[-browser]-open.pprof): what an
		// event costs at this rate, against the closed loop's batches.
		prof.Add(1)
		go func() { defer prof.Done(); srv.profile(o.duration, strings.TrimSuffix(path, ".pprof")+"-open.pprof") }()
		cpuOpen, workOpen := srv.cpuSeconds(), srv.work()
		ol := openLoop(ctx, srv.url, sc, tr, o, rate)
		// The server's cores over the open loop: whether the consumers
		// falling behind (lags below) is the CPU or waiting.
		ol.ServerCores = (srv.cpuSeconds() - cpuOpen) / ol.Seconds
		prof.Wait()
		if tp != "" {
			if tw, err := analyzeTrace(tp); err != nil {
				fmt.Fprintf(log, "reading the execution trace: %v\n", err)
			} else {
				ol.TraceWaits = tw
			}
		}
		p99, n, lags := w.finish()
		ol.Target, ol.DeltaP99ms, ol.Deltas, ol.Lags = "tagway", float64(p99)/float64(time.Millisecond), n, lags
		// The heap at the open loop's end, when the backlog is largest.
		heap := filepath.Join(o.out, "heap-"+stamp+".pprof")
		if sc.batch == 0 {
			heap = filepath.Join(o.out, "heap-"+stamp+"-browser.pprof")
		}
		srv.heapProfile(heap)
		if rep.HeapProfile == "" || sc.batch > 0 {
			rep.HeapProfile = heap
		}
		// The next scenario's peak must not pay for this one's backlog.
		took, ok = waitDrained(srv.nats, o.drain, log)
		ol.DrainSeconds, ol.Drained = took.Seconds(), ok
		if ol.Events > 0 {
			// As for the closed loop, catch-up included. At this rate an
			// event costs more: the batches are smaller, and more of the
			// profiles are returning ones (made by the closed loop), read.
			ol.CPUPerEventUS = (srv.cpuSeconds() - cpuOpen) / float64(ol.Events) * 1e6
			ol.PerEvent = srv.work().since(workOpen, float64(ol.Events))
		}
		fmt.Fprintf(log, "consumers caught up: %v after %s\n", ok, took.Round(time.Millisecond))
		rep.Results = append(rep.Results, ol)
	}
	rep.SinkEvents = sk.events.Load()
	rep.ServerCopies = tr.copies.Load()
	rep.PeakRSSMiB = srv.peakRSS() / (1 << 20)
	rep.BadgerMiB = dirSize(filepath.Join(srv.data, "badger")) / (1 << 20)
	return rep, nil
}

// seedPurchases sends tagway browser beacons of 5 purchases, enough for
// ~20 % of the server events of a closed and an open loop at up to 30 k
// events/s to be a copy of one. It returns how many purchases it sent.
func seedPurchases(ctx context.Context, url string, tr *traffic, o options) int {
	want := int(9000 * o.duration.Seconds())
	client := &fasthttp.Client{MaxConnsPerHost: o.conns * 2, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < o.conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w)+5000, uint64(time.Now().UnixNano())))
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for sent.Add(5) <= int64(want) && ctx.Err() == nil {
				body, anon := tr.purchaseBeacon(r, 5)
				req.Reset()
				req.Header.SetMethod("POST")
				req.SetRequestURI(url + "/e")
				req.Header.SetContentType("text/plain;charset=UTF-8")
				req.Header.SetCookie("_tw_id", anon)
				req.SetBodyString(body)
				_ = client.Do(req, resp)
			}
		}(w)
	}
	wg.Wait()
	return want
}

func newRequest(url string, sc scenario, tr *traffic, r *rand.Rand, req *fasthttp.Request) int {
	req.Reset()
	req.Header.SetMethod("POST")
	if sc.batch > 0 {
		req.SetRequestURI(url + sc.path)
		req.Header.SetContentType("application/json")
		req.Header.Set("Authorization", "Bearer "+benchKey)
		req.SetBodyString(tr.server(r, sc.batch))
		return sc.batch
	}
	body, anon, _ := tr.browser(r)
	// One-event beacons for the ratio the targets use.
	if i := strings.Index(body, `},{"event"`); i > 0 {
		body = body[:i+1] + "]}"
	}
	req.SetRequestURI(url + sc.path)
	req.Header.SetContentType("text/plain;charset=UTF-8")
	req.Header.SetCookie("_tw_id", anon)
	req.SetBodyString(body)
	return 1
}

func classify(err error, status int) string {
	switch {
	case err != nil && strings.Contains(err.Error(), "timeout"):
		return "timeout"
	case err != nil:
		return "connection"
	case status >= 500:
		return "status " + strconv.Itoa(status)
	case status >= 400 && status != 400:
		return "status " + strconv.Itoa(status)
	}
	return ""
}

// closedLoop runs o.conns workers as fast as they go.
func closedLoop(ctx context.Context, url string, sc scenario, tr *traffic, o options) Result {
	client := &fasthttp.Client{MaxConnsPerHost: o.conns * 2, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	deadline := time.Now().Add(o.duration)
	t := newTally()
	lat := make([][]time.Duration, o.conns)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < o.conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				n := newRequest(url, sc, tr, r, req)
				t0 := time.Now()
				err := client.Do(req, resp)
				lat[w] = append(lat[w], time.Since(t0))
				t.record(err, resp.StatusCode(), n)
			}
		}(w)
	}
	wg.Wait()
	return t.summarize(sc, "closed", time.Since(start), slices.Concat(lat...))
}

// openLoop sends at a fixed rate; each latency counts from the request's
// scheduled time, so a slow server cannot make the load generator wait and
// hide its queueing (coordinated omission).
func openLoop(ctx context.Context, url string, sc scenario, tr *traffic, o options, rate float64) Result {
	if rate < 1 {
		rate = 1
	}
	client := &fasthttp.Client{MaxConnsPerHost: 512, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	interval := time.Duration(float64(time.Second) / rate)
	total := int(o.duration / interval)
	sched := make(chan time.Time, 4096)
	t := newTally()
	start := time.Now() // before the workers read it
	var mu sync.Mutex   // guards lats, samples
	var lats []time.Duration
	var samples []sample
	var wg sync.WaitGroup
	for w := 0; w < 256; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w)+1000, uint64(time.Now().UnixNano())))
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			var mine []time.Duration
			var ss []sample
			for at := range sched {
				n := newRequest(url, sc, tr, r, req)
				err := client.Do(req, resp)
				d := time.Since(at)
				mine = append(mine, d)
				ss = append(ss, sample{sec: int32(at.Sub(start) / time.Second), d: d})
				t.record(err, resp.StatusCode(), n)
			}
			mu.Lock()
			lats = append(lats, mine...)
			samples = append(samples, ss...)
			mu.Unlock()
		}(w)
	}
	for i := 0; i < total && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		sched <- at
	}
	close(sched)
	wg.Wait()
	res := t.summarize(sc, "open", time.Since(start), lats)
	res.TargetRate = rate
	res.StartedAtMs, res.Timeline = start.UnixMilli(), timeline(samples)
	return res
}

// tally counts a loop's answered requests and events, and its errors by kind.
type tally struct {
	reqs, events atomic.Int64
	mu           sync.Mutex
	errs         map[string]int
}

func newTally() *tally { return &tally{errs: map[string]int{}} }

// record counts one request of n events: an error by kind, or an answer.
func (t *tally) record(err error, status, n int) {
	if k := classify(err, status); k != "" {
		t.mu.Lock()
		t.errs[k]++
		t.mu.Unlock()
		return
	}
	t.reqs.Add(1)
	t.events.Add(int64(n))
}

func (t *tally) summarize(sc scenario, mode string, d time.Duration, lat []time.Duration) Result {
	reqs, events := t.reqs.Load(), t.events.Load()
	t.mu.Lock()
	errs := maps.Clone(t.errs)
	t.mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	return Result{Scenario: sc.name, Mode: mode, Seconds: d.Seconds(), Requests: reqs, Events: events,
		RPS: float64(reqs) / d.Seconds(), EPS: float64(events) / d.Seconds(),
		P50ms: pct(0.5), P99ms: pct(0.99), P999ms: pct(0.999), Errors: errs}
}

// ---- the tagway process ------------------------------------------------

type tagwayProc struct {
	cmd   *exec.Cmd
	url   string
	admin string
	nats  string
	data  string
}

func startTagway(ctx context.Context, o options, tmp, extra string, log io.Writer) (*tagwayProc, error) {
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(tmp, "tagway")
		fmt.Fprintln(log, "building tagway…")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tagway").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	sum := sha256.Sum256([]byte(benchKey))
	cfg := filepath.Join(tmp, "bench.yaml")
	_ = os.WriteFile(cfg, []byte(`sites: [{id: bench, origins: ["*"]}]
sources: [{name: bench, key_sha256: "`+hex.EncodeToString(sum[:])+`", sites: [bench]}]
limits: {ip_rate: {rps: 0}}
consent: {default_regime: opt-out}
log: {level: warn}
`+extra), 0o600)
	p := &tagwayProc{data: filepath.Join(tmp, "data")}
	p.cmd = exec.CommandContext(ctx, bin, "serve", "--config", cfg, "--data", p.data,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	p.cmd.Env = append(os.Environ(), "TAGWAY_LOAD_TIKTOK_TOKEN=bench")
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	pub, adm := regexp.MustCompile(`browser events\s+POST (http://\S+)/e`), regexp.MustCompile(`admin\s+(http://\S+)/metrics`)
	nu := regexp.MustCompile(`NATS\s+embedded (nats://\S+)`)
	sc := bufio.NewScanner(out)
	for sc.Scan() && (p.url == "" || p.admin == "" || p.nats == "") {
		if m := nu.FindStringSubmatch(sc.Text()); m != nil {
			p.nats = m[1]
		}
		if m := pub.FindStringSubmatch(sc.Text()); m != nil {
			p.url = m[1]
		}
		if m := adm.FindStringSubmatch(sc.Text()); m != nil {
			p.admin = m[1]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	if p.url == "" {
		p.stop()
		return nil, errNoBanner
	}
	return p, nil
}

func (p *tagwayProc) stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(os.Interrupt)
		_ = p.cmd.Wait()
	}
}

// cpuSeconds is the process's user+system CPU time (Linux /proc).
func (p *tagwayProc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks (USER_HZ 100 on Linux)
}

// Work is what the server did, counted: in all, or per event.
type Work struct {
	BadgerBytes           float64 `json:"badger_bytes"`
	BadgerCompactionBytes float64 `json:"badger_compaction_bytes"`
	BadgerEntries         float64 `json:"badger_entries"`
	BadgerGets            float64 `json:"badger_gets"`
	BrokerStored          float64 `json:"broker_stored"`
	BrokerDelivered       float64 `json:"broker_delivered"`
	// BrokerStoredBy is BrokerStored by stream.
	BrokerStoredBy map[string]float64 `json:"broker_stored_by_stream,omitempty"`
	// HeapAllocBytes is what the server allocated on the Go heap (its
	// go_memstats_alloc_bytes_total): what the GC has to collect, and a
	// steadier figure between runs than the CPU time. GCCycles counts the
	// collections.
	HeapAllocBytes float64 `json:"heap_alloc_bytes"`
	GCCycles       float64 `json:"gc_cycles"`
}

// since is the work done after w0, divided by n.
func (w Work) since(w0 Work, n float64) *Work {
	by := map[string]float64{}
	for k, v := range w.BrokerStoredBy {
		if d := v - w0.BrokerStoredBy[k]; d > 0 {
			by[k] = d / n
		}
	}
	return &Work{(w.BadgerBytes - w0.BadgerBytes) / n, (w.BadgerCompactionBytes - w0.BadgerCompactionBytes) / n,
		(w.BadgerEntries - w0.BadgerEntries) / n, (w.BadgerGets - w0.BadgerGets) / n,
		(w.BrokerStored - w0.BrokerStored) / n, (w.BrokerDelivered - w0.BrokerDelivered) / n, by,
		(w.HeapAllocBytes - w0.HeapAllocBytes) / n, (w.GCCycles - w0.GCCycles) / n}
}

// work reads Badger's counters from the admin /metrics and the broker's
// from JetStream (brokerWork).
func (p *tagwayProc) work() Work {
	var w Work
	w.BrokerStoredBy, w.BrokerDelivered = brokerWork(p.nats)
	for _, v := range w.BrokerStoredBy {
		w.BrokerStored += v
	}
	_, body, err := fasthttp.GetTimeout(nil, p.admin+"/metrics", 5*time.Second)
	if err != nil {
		return w
	}
	for _, l := range strings.Split(string(body), "\n") {
		name, v, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(v, 64)
		switch name {
		case `tagway_badger_written_bytes_total{stage="user"}`:
			w.BadgerBytes = f
		case `tagway_badger_written_bytes_total{stage="compaction"}`:
			w.BadgerCompactionBytes = f
		case "tagway_badger_entries_written_total":
			w.BadgerEntries = f
		case "tagway_badger_gets_total":
			w.BadgerGets = f
		case "go_memstats_alloc_bytes_total":
			w.HeapAllocBytes = f
		case "go_gc_duration_seconds_count":
			w.GCCycles = f
		}
	}
	return w
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func (p *tagwayProc) peakRSS() float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

// profile saves a CPU profile of the server taken from its admin pprof.
func (p *tagwayProc) profile(d time.Duration, path string) {
	secs := max(int(d/time.Second)-1, 1)
	save(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.admin, secs), path)
}

// trace saves an execution trace of the server (goroutines, GC, syscalls,
// blocking: where a stall's requests waited) from its admin pprof.
func (p *tagwayProc) trace(d time.Duration, path string) {
	save(fmt.Sprintf("%s/debug/pprof/trace?seconds=%d", p.admin, max(int(d/time.Second), 1)), path)
}

// heapProfile saves the server's heap profile (allocations since start,
// and what is in use) from its admin pprof.
func (p *tagwayProc) heapProfile(path string) { save(p.admin+"/debug/pprof/heap", path) }

// save writes what url answers to path (a missing profile shows as a
// missing file, which the smoke test checks).
func save(url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// dirSize is the disk space a directory's files use (allocated blocks: Badger
// preallocates sparse value-log files, whose apparent size means nothing).
func dirSize(dir string) float64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	return float64(n)
}

func machine() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	model := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
			break
		}
	}
	return fmt.Sprintf("%s, %d CPUs", model, strings.Count(string(b), "processor\t:"))
}

func printReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "\nTagway load test — %s — %s\n\n", rep.At, rep.Machine)
	fmt.Fprintf(w, "%-22s %-22s %-6s %10s %11s %8s %8s %8s %7s  %s\n", "target", "scenario", "mode", "req/s", "events/s", "p50 ms", "p99 ms", "p99.9", "cores", "errors")
	for _, r := range rep.Results {
		cores := ""
		if r.ServerCores > 0 {
			cores = fmt.Sprintf("%.2f", r.ServerCores)
		}
		fmt.Fprintf(w, "%-22s %-22s %-6s %10.0f %11.0f %8.2f %8.2f %8.2f %7s  %v\n", r.Target, r.Scenario, r.Mode, r.RPS, r.EPS, r.P50ms, r.P99ms, r.P999ms, cores, r.Errors)
	}
	fmt.Fprintln(w)
	keys := make([]string, 0, len(rep.Ratios))
	for k := range rep.Ratios {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%-55s %5.0f %%\n", k, rep.Ratios[k]*100)
	}
	fmt.Fprintf(w, "tagway (%s) peak RSS %.0f MiB, Badger %.1f MiB; %d segments; %d conversions reached the TikTok sink; %d server events copied a browser purchase\n",
		strings.Join(rep.Stages, " + "), rep.PeakRSSMiB, rep.BadgerMiB, rep.Segments, rep.SinkEvents, rep.ServerCopies)
	for _, r := range rep.Results {
		if r.Target == "tagway" {
			fmt.Fprintf(w, "%s loop, %s: the consumers caught up %.1f s after it (within --drain: %v)", r.Mode, r.Scenario, r.DrainSeconds, r.Drained)
			if r.CPUPerEventUS > 0 {
				fmt.Fprintf(w, "; server CPU %.0f µs per event, catch-up included", r.CPUPerEventUS)
				if pe := r.PerEvent; pe != nil {
					streams := slices.Sorted(maps.Keys(pe.BrokerStoredBy))
					by := make([]string, len(streams))
					for i, k := range streams {
						by[i] = fmt.Sprintf("%s %.2f", k, pe.BrokerStoredBy[k])
					}
					fmt.Fprintf(w, "; per event: Badger %.2f entries written (%.0f bytes, its compactions %.0f more), %.2f reads; broker %.2f messages stored (%s), %.2f delivered; %.1f KB allocated on the heap (%.0f events per GC cycle)",
						pe.BadgerEntries, pe.BadgerBytes, pe.BadgerCompactionBytes, pe.BadgerGets, pe.BrokerStored, strings.Join(by, ", "), pe.BrokerDelivered,
						pe.HeapAllocBytes/1e3, 1/max(pe.GCCycles, 1e-9))
				}
			}
			if r.SustainedEventsPerS > 0 {
				fmt.Fprintf(w, "; sustained %.0f events/s", r.SustainedEventsPerS)
			}
			fmt.Fprintln(w)
		}
		if len(r.Timeline) > 0 {
			over, worst := stalls(r.Timeline, 10, 5)
			fmt.Fprintf(w, "%s loop, %s, %s: %d of %d seconds had a p99 over 10 ms; slowest seconds (from the start, max/p99 ms):", r.Mode, r.Target, r.Scenario, over, len(r.Timeline))
			for _, s := range worst {
				fmt.Fprintf(w, " %ds %.0f/%.0f", s.At, s.MaxMs, s.P99ms)
			}
			fmt.Fprintln(w)
		}
		if r.TraceWaits != nil {
			printTraceWaits(w, r.Scenario, r.TraceWaits)
		}
		if r.Lags == nil && r.Deltas == 0 {
			continue
		}
		if r.Deltas > 0 {
			fmt.Fprintf(w, "open loop, %s: event → tw.audience delta p99 %.1f ms (%d timed)\n", r.Scenario, r.DeltaP99ms, r.Deltas)
		} else {
			fmt.Fprintf(w, "open loop, %s: consumer backlogs (deltas are timed for browser profiles only)\n", r.Scenario)
		}
		names := slices.Sorted(maps.Keys(r.Lags))
		for _, c := range names {
			l := r.Lags[c]
			fmt.Fprintf(w, "  consumer %-18s backlog max %d, mean %.0f then %.0f (first, second half), last %d; not delivered yet: mean %.0f then %.0f\n",
				c, l.Max, l.FirstHalf, l.SecondHalf, l.Last, l.UndeliveredFirstHalf, l.UndeliveredSecondHalf)
		}
	}
}
