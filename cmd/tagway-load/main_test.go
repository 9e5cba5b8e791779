package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A short real run: the baselines and tagway are driven, every scenario is
// measured without errors, and the report and profile are written.
func TestLoadSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and drives a real tagway; skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tagway")
	if err := runGo(t, "build", "-o", bin, "../tagway"); err != nil {
		t.Fatal(err)
	}
	var out, log bytes.Buffer
	rep, _ := runReport(t, []string{"--duration", "400ms", "--conns", "4", "--profiles", "1000", "--out", dir, "--bin", bin, "--segments", "../../segments/testdata/examples.yaml"}, dir, &out, &log)
	tagway := 0
	for _, r := range rep.Results {
		if r.Events == 0 || len(r.Errors) != 0 || r.P99ms <= 0 {
			t.Errorf("%s %s %s: %+v", r.Target, r.Scenario, r.Mode, r)
		}
		if r.Target == "tagway" {
			tagway++
		}
		if r.Target == "tagway" && r.Mode == "closed" && r.Drained && (r.SustainedEventsPerS <= 0 || r.SustainedEventsPerS > r.EPS) {
			t.Errorf("%s: sustained %.0f events/s, peak %.0f", r.Scenario, r.SustainedEventsPerS, r.EPS)
		}
		// Every accepted event is stored by the broker at least once and
		// delivered to segments, and leaves at least a dedup record in Badger.
		if pe := r.PerEvent; r.Target == "tagway" && r.Mode == "closed" &&
			(pe == nil || pe.BrokerStored < 0.5 || pe.BrokerDelivered < 0.5 || pe.BadgerEntries < 0.5 || pe.BadgerBytes < 20 ||
				pe.HeapAllocBytes < 1000) { // an event allocates its envelope, decoded and encoded, at least (a short run may see no GC cycle)
			t.Errorf("%s: work per event %+v", r.Scenario, pe)
		} else if r.Target == "tagway" && r.Mode == "closed" && pe.BrokerStoredBy["TW_EVENTS"] < 0.5 {
			t.Errorf("%s: TW_EVENTS stored %v per event", r.Scenario, pe.BrokerStoredBy)
		}
	}
	if tagway != 4 || len(rep.Ratios) != 4 || rep.PeakRSSMiB <= 0 || !strings.Contains(out.String(), "events/s vs bare pipeline") {
		t.Fatalf("report: %d tagway runs, ratios %v, rss %v\n%s", tagway, rep.Ratios, rep.PeakRSSMiB, out.String())
	}
	if rep.Segments != 20 || rep.SinkEvents == 0 {
		t.Fatalf("the pipeline: %d segments, %d conversions at the TikTok sink", rep.Segments, rep.SinkEvents)
	}
	if rep.ServerCopies == 0 {
		t.Fatal("no server event copied a browser purchase tagway had received: no dedup hits")
	}
	timed := 0
	for _, r := range rep.Results {
		if r.Target == "tagway" && r.Mode == "open" {
			timed += r.Deltas
			if _, ok := r.Lags["tw-segments"]; !ok {
				t.Errorf("%s: no tw-segments backlog sampled: %v", r.Scenario, r.Lags)
			}
			// The server works through an open loop: its cores are measured
			// (a share of the box's, never above the cores it has).
			if r.ServerCores <= 0 || r.ServerCores > float64(runtime.NumCPU())+0.5 {
				t.Errorf("%s: open loop's server cores %v", r.Scenario, r.ServerCores)
			}
			// And what an event cost at that rate, catch-up included: its
			// CPU, and its work counted (each event is stored and delivered).
			if pe := r.PerEvent; r.Drained && (r.CPUPerEventUS <= 0 || pe == nil || pe.BrokerStored < 0.5 || pe.BrokerDelivered < 0.5 || pe.BadgerEntries < 0.5) {
				t.Errorf("%s: open loop's CPU per event %v µs, work per event %+v", r.Scenario, r.CPUPerEventUS, pe)
			}
		}
	}
	if timed == 0 {
		t.Error("no event → delta latency was timed")
	}
	var cpu []string // each scenario's peak, its catch-up and its open loop
	for _, p := range []string{rep.CPUProfile, rep.CPUProfileBrowser} {
		cpu = append(cpu, p, strings.TrimSuffix(p, ".pprof")+"-catchup.pprof", strings.TrimSuffix(p, ".pprof")+"-open.pprof")
	}
	for _, p := range append(cpu, rep.HeapProfile) {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Fatalf("profile %q: %v", p, err)
		}
	}
}

// --rate fixes the open loop's rate, whatever the peak was: two builds are
// compared under the same load.
func TestRateFixesTheOpenLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and drives a real tagway; skipped with -short")
	}
	var log bytes.Buffer
	if err := run(t.Context(), []string{"--rate", "-1"}, &bytes.Buffer{}, &log); err == nil || !strings.Contains(err.Error(), "--rate") {
		t.Fatalf("negative rate: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tagway")
	if err := runGo(t, "build", "-o", bin, "../tagway"); err != nil {
		t.Fatal(err)
	}
	// --config reaches the server: a bad setting stops it, naming the key.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("badger: {compression: lz4}\n"), 0o600)
	if err := run(t.Context(), []string{"--only", "browser", "--baselines=false", "--duration", "1s", "--out", dir, "--bin", bin, "--config", bad, "--segments", "../../segments/testdata/examples.yaml"}, &bytes.Buffer{}, &log); err == nil || !strings.Contains(log.String(), "badger.compression") {
		t.Fatalf("a bad --config: %v\n%s", err, log.String())
	}
	log.Reset()
	good := filepath.Join(dir, "good.yaml")
	_ = os.WriteFile(good, []byte("badger: {memtable_size: 16MiB}\n"), 0o600)
	args := []string{"--only", "browser", "--baselines=false", "--rate", "150", "--duration", "1s", "--conns", "4", "--profiles", "1000", "--out", dir, "--bin", bin, "--config", good, "--segments", "../../segments/testdata/examples.yaml"}
	rep, _ := runReport(t, args, dir, &bytes.Buffer{}, &log)
	if rep.Config != "badger: {memtable_size: 16MiB}\n" {
		t.Fatalf("report's config: %q", rep.Config)
	}
	for _, r := range rep.Results {
		if r.Mode != "open" {
			continue
		}
		if r.RPS < 130 || r.RPS > 160 {
			t.Fatalf("open loop at --rate 150 ran at %.0f requests/s", r.RPS)
		}
		n := 0
		for _, s := range r.Timeline {
			n += s.Requests
		}
		if len(r.Timeline) != 1 || r.Timeline[0].At != 0 || int64(n) != r.Requests || r.StartedAtMs < time.Now().Add(-time.Minute).UnixMilli() {
			t.Fatalf("timeline %+v (started %d) for %d requests", r.Timeline, r.StartedAtMs, r.Requests)
		}
	}
	if !strings.Contains(log.String(), "at 150 requests/s") {
		t.Fatalf("log: %s", log.String())
	}
}

// --stages leaves consumer stages out, so each stage's cost can be read
// off the difference; --trace saves the open loop's execution trace.
func TestStagesAndTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and drives a real tagway; skipped with -short")
	}
	var log bytes.Buffer
	if err := run(t.Context(), []string{"--stages", "segments,sinks"}, &bytes.Buffer{}, &log); err == nil || !strings.Contains(err.Error(), `--stages: "sinks"`) {
		t.Fatalf("a bad stage: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tagway")
	if err := runGo(t, "build", "-o", bin, "../tagway"); err != nil {
		t.Fatal(err)
	}
	args := []string{"--only", "server", "--stages", "none", "--trace", "--baselines=false", "--rate", "50", "--duration", "1s", "--conns", "4", "--profiles", "1000", "--out", dir, "--bin", bin, "--segments", "../../segments/testdata/examples.yaml"}
	rep, report := runReport(t, args, dir, &bytes.Buffer{}, &log)
	if strings.Join(rep.Stages, ",") != "edge" || rep.Segments != 0 || rep.SinkEvents != 0 {
		t.Fatalf("the edge alone: stages %v, %d segments, %d conversions at the sink", rep.Stages, rep.Segments, rep.SinkEvents)
	}
	for _, r := range rep.Results {
		if r.Mode != "closed" {
			continue
		}
		// Nothing consumes: the events are stored, not delivered, and no
		// delta or forward message is published.
		if pe := r.PerEvent; pe == nil || pe.BrokerStoredBy["TW_EVENTS"] < 0.5 || pe.BrokerDelivered != 0 ||
			pe.BrokerStoredBy["TW_AUDIENCE"] != 0 || pe.BrokerStoredBy["TW_FORWARD"] != 0 {
			t.Fatalf("the edge alone did this work per event: %+v", pe)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "trace-"+strings.TrimSuffix(filepath.Base(report), ".json")+".out")); err != nil || st.Size() == 0 {
		t.Fatalf("execution trace: %v\n%s", err, log.String())
	}
	// The trace is read: the server's Ps ran, the request handlers woke
	// (runnable) and blocked on their PubAcks, and no consumer ran.
	for _, r := range rep.Results {
		if r.Mode != "open" {
			continue
		}
		tw := r.TraceWaits
		if tw == nil || tw.BusyPs <= 0 || tw.BusyPs > float64(runtime.NumCPU())+0.01 || len(tw.Running) == 0 || tw.HandlerRunnable.N == 0 {
			t.Fatalf("trace waits: %+v", tw)
		}
		published := false
		for _, s := range tw.HandlerBlocked {
			published = published || (strings.Contains(s.What, "PublishWait") && s.N > 0 && s.MS > 0)
		}
		if !published || len(tw.Consumers) != 0 {
			t.Fatalf("handlers blocked %+v; consumers %+v", tw.HandlerBlocked, tw.Consumers)
		}
		// The slowest quarter seconds: most blocked time first, each with
		// what ran in it, the median window no more blocked than them.
		sw := tw.SlowWindows
		if len(sw) == 0 || tw.Typical == nil || sw[0].HandlerBlockedMS <= 0 || len(sw[0].Running) == 0 ||
			sw[len(sw)-1].HandlerBlockedMS < tw.Typical.HandlerBlockedMS || sw[0].AtS > tw.Seconds {
			t.Fatalf("slow windows %+v, typical %+v", sw, tw.Typical)
		}
		for i := 1; i < len(sw); i++ {
			if sw[i].HandlerBlockedMS > sw[i-1].HandlerBlockedMS {
				t.Fatalf("slow windows out of order: %+v", sw)
			}
		}
	}
}

func TestSlowWindows(t *testing.T) {
	run := map[int]map[string]float64{
		0: {"a": 100, "b": 50}, 1: {"a": 10}, 2: {"c": 200, "a": 5}, 3: {"b": 1}, 4: {"a": 1},
	}
	blocked := map[int]float64{0: 30, 1: 500, 2: 900, 4: 5} // window 3: none
	slow, typical := slowWindows(run, blocked, 2)
	if len(slow) != 2 || slow[0].AtS != 0.5 || slow[0].HandlerBlockedMS != 900 || slow[1].AtS != 0.25 {
		t.Fatalf("slow %+v", slow)
	}
	if slow[0].Running[0].What != "c" || slow[0].Running[0].MS != 200 || len(slow[0].Running) != 2 {
		t.Fatalf("what ran in the slowest window: %+v", slow[0].Running)
	}
	// Blocked time, most first: 900, 500, 30, 5, 0: the median is window 0.
	if typical == nil || typical.AtS != 0 || typical.HandlerBlockedMS != 30 {
		t.Fatalf("typical %+v", typical)
	}
	if s, ty := slowWindows(nil, nil, 3); s != nil || ty != nil {
		t.Fatalf("no windows: %+v %+v", s, ty)
	}
}

// runReport runs tagway-load with args (whose --out is dir), its output to
// out, and returns the report it wrote and the report's path.
func runReport(t *testing.T, args []string, dir string, out, log *bytes.Buffer) (Report, string) {
	t.Helper()
	if err := run(t.Context(), args, out, log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("reports: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep, files[0]
}

func runGo(t *testing.T, args ...string) error {
	t.Helper()
	cmd := execCommand("go", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("%s", out)
	}
	return err
}

var execCommand = exec.Command

func TestTimelineFindsTheStall(t *testing.T) {
	var ss []sample
	for sec := int32(0); sec < 5; sec++ {
		for i := range 200 {
			d := time.Duration(i%10+1) * time.Millisecond / 2 // 0.5–5 ms
			if sec == 3 && i >= 190 {
				d = time.Duration(i-189) * 100 * time.Millisecond // the slowest 5 %: 100 ms–1 s
			}
			ss = append(ss, sample{sec: sec, d: d})
		}
	}
	tl := timeline(ss)
	if len(tl) != 5 || tl[3].At != 3 || tl[3].Requests != 200 || tl[3].MaxMs != 1000 || tl[3].P99ms != 900 || tl[0].MaxMs != 5 || tl[0].P99ms != 5 {
		t.Fatalf("timeline %+v", tl)
	}
	over, worst := stalls(tl, 10, 2)
	if over != 1 || len(worst) != 2 || worst[0].At != 3 {
		t.Fatalf("over %d, worst %+v", over, worst)
	}
}
