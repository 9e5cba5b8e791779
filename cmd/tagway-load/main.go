// Command tagway-load benchmarks Tagway against two baselines in the same
// run, on this machine: a bare fasthttp 204 handler, and a bare durable
// pipeline (parse + JetStream async publish + reply after the PubAcks).
// It starts `tagway serve` itself (a temp data dir, loopback ports), drives
// realistic traffic in closed loop (peak) and open loop (latency at a fixed
// fraction of peak, measured from each request's scheduled time, so
// coordinated omission does not hide queueing), and reports events/s,
// requests/s, p50/p99/p99.9, errors by kind, the server's CPU cores, peak RSS
// and Badger size, with a CPU profile of the closed-loop run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tagway-load:", err)
		os.Exit(1)
	}
}

type options struct {
	duration  time.Duration
	conns     int
	profiles  int
	openShare float64
	rate      float64
	out       string
	bin       string
	segments  string
	drain     time.Duration
	only      string
	hold      time.Duration
	config    string // YAML appended to the bench's tagway config
	baselines bool
	// segmentsOn and forwardOn are the consumer stages that run besides
	// the edge (--stages): with neither, the edge alone is measured.
	segmentsOn, forwardOn bool
	trace                 bool // save an execution trace of each open loop
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tagway-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each run")
	fs.IntVar(&o.conns, "conns", 32, "connections in closed loop")
	fs.IntVar(&o.profiles, "profiles", 1_000_000, "distinct profiles in the traffic")
	fs.Float64Var(&o.openShare, "open", 0.5, "open-loop rate as a share of Tagway's closed-loop peak")
	fs.Float64Var(&o.rate, "rate", 0, "open-loop rate in requests/s instead of --open's share (the same load for each build when comparing; use with --only)")
	fs.StringVar(&o.out, "out", "bench/results", "directory for the JSON report and profiles")
	fs.StringVar(&o.bin, "bin", "", "tagway binary (default: go build ./cmd/tagway)")
	fs.DurationVar(&o.drain, "drain", 2*time.Minute, "how long to wait for the consumers to catch up between closed and open loop")
	fs.StringVar(&o.segments, "segments", "segments/testdata/examples.yaml", "YAML with the segments: section to run (the README's 20 examples)")
	fs.StringVar(&o.only, "only", "", `run one scenario: "server" (batches of 20) or "browser" (beacons); default both`)
	fs.DurationVar(&o.hold, "hold", 2*time.Second, "the TikTok destination's hold (how long a conversion waits for its other copy)")
	fs.StringVar(&o.config, "config", "", "YAML file appended to tagway's bench config: sections it does not set (badger:, dedup:, nats:), to measure a setting")
	fs.BoolVar(&o.baselines, "baselines", true, "measure the baselines too (without them the report has no ratios)")
	stages := fs.String("stages", "segments,forward", `the consumer stages that run besides the edge: "segments,forward", "segments", "forward", or "none" (the edge alone); runs with fewer show what each stage costs`)
	fs.BoolVar(&o.trace, "trace", false, "save an execution trace of each open loop's first 20 s (trace-<stamp>[-browser].out, for go tool trace; it slows the server by a few %)")
	err := fs.Parse(args)
	if err != nil {
		return err
	}
	switch o.only {
	case "", "server", "browser":
	default:
		return fmt.Errorf(`--only: %q is not "server" or "browser"`, o.only)
	}
	if o.segmentsOn, o.forwardOn, err = parseStages(*stages); err != nil {
		return err
	}
	if o.rate < 0 {
		return fmt.Errorf("--rate: %v is negative", o.rate)
	}
	if o.config != "" {
		b, err := os.ReadFile(o.config)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		o.config = string(b)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	// The server's stderr is copied in by exec's own goroutine: progress
	// lines share the writer, so it is locked.
	rep, err := bench(ctx, o, stamp, &lockedWriter{w: stderr})
	if err != nil {
		return err
	}
	printReport(stdout, rep)
	b, _ := json.MarshalIndent(rep, "", "  ")
	path := filepath.Join(o.out, stamp+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport: %s\ncpu profiles: %s, %s\nheap profile: %s (go tool pprof -sample_index=alloc_space %s)\n",
		path, rep.CPUProfile, rep.CPUProfileBrowser, rep.HeapProfile, rep.HeapProfile)
	return nil
}

// parseStages reads --stages.
func parseStages(v string) (segments, forward bool, err error) {
	if v == "none" {
		return false, false, nil
	}
	for _, s := range strings.Split(v, ",") {
		switch strings.TrimSpace(s) {
		case "segments":
			segments = true
		case "forward":
			forward = true
		default:
			return false, false, fmt.Errorf(`--stages: %q is not "segments" or "forward" (a list of them, or "none")`, s)
		}
	}
	return segments, forward, nil
}

var errNoBanner = errors.New("tagway serve printed no banner")

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
