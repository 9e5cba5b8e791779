package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The whole pipeline under load: the 20 example segments and one TikTok
// destination pointed at a local sink, so the run measures what a
// deployment runs (the segments and forward consumers share the box with
// the edge), plus how far behind the consumers fall and how long an event
// takes to become a tw.audience delta.

// pipelineConfig is the YAML appended to the bench config: the segments
// (indented under a `segments:` key in the file) and the destination, each
// only if its stage runs (--stages; without segments the gateway runs no
// segments engine, without a destination forward has nothing to route).
func pipelineConfig(o options, sinkURL string) (string, int, error) {
	var yml string
	nseg := 0
	if o.segmentsOn {
		raw, err := os.ReadFile(o.segments)
		if err != nil {
			return "", 0, fmt.Errorf("--segments: %w (run from the repository root, or name the file)", err)
		}
		yml, nseg = string(raw), strings.Count(string(raw), "name: ")
	}
	if o.forwardOn {
		// The hold is short so conversions flow within a 10 s run (the
		// default is dedup.merge_window, 5 minutes, during which they wait).
		yml += `destinations:
  - {name: tiktok, type: tiktok, base_url: "` + sinkURL + `", pixel_code: BENCH, access_token_env: TAGWAY_LOAD_TIKTOK_TOKEN, hold: ` + o.hold.String() + `}
`
	}
	return yml, nseg, nil
}

// sink is a stand-in for the TikTok Events API: it answers success in
// TikTok's format and counts the events it got.
type sink struct {
	srv    *http.Server
	url    string
	events atomic.Int64
	reqs   atomic.Int64
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.reqs.Add(1)
		s.events.Add(int64(bytes.Count(b, []byte(`"event_id"`))))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"code":0,"message":"OK","request_id":"sink","data":{}}`)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) stop() { _ = s.srv.Close() }

// sendTimes records when each browser profile last sent an event, so a
// delta can be timed against it.
type sendTimes struct{ at []atomic.Int64 }

func newSendTimes(profiles int) *sendTimes { return &sendTimes{at: make([]atomic.Int64, profiles)} }

func (s *sendTimes) sent(p int, t time.Time) {
	if s != nil && p >= 0 && p < len(s.at) {
		s.at[p].Store(t.UnixNano())
	}
}

// watcher follows tw.audience deltas and the consumers' backlog over NATS.
type watcher struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	sub   *nats.Subscription
	times *sendTimes

	mu     sync.Mutex
	deltas []time.Duration
	lags   map[string][]uint64 // consumer → samples: pending + unacknowledged
	undel  map[string][]uint64 // consumer → samples: not delivered yet
	stop   chan struct{}
	done   chan struct{}
}

// consumers whose backlog the report follows.
var watchedConsumers = [][2]string{{"TW_EVENTS", "tw-segments"}, {"TW_EVENTS", "tw-forward"}, {"TW_FORWARD", "tw-deliver-tiktok"}}

func watch(natsURL string, times *sendTimes) (*watcher, error) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	w := &watcher{nc: nc, js: js, times: times, lags: map[string][]uint64{}, undel: map[string][]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	w.sub, err = nc.Subscribe("tw.audience.>", func(m *nats.Msg) {
		now := time.Now()
		var d struct {
			Profile string `json:"profile"`
			Reason  string `json:"reason"`
		}
		if json.Unmarshal(m.Data, &d) != nil || !strings.HasPrefix(d.Reason, "event") || !strings.HasPrefix(d.Profile, "a:") {
			return
		}
		b, err := hex.DecodeString(d.Profile[2:])
		if err != nil || len(b) != 16 {
			return
		}
		var p int
		for _, x := range b[8:] {
			p = p<<8 | int(x)
		}
		if p < 0 || p >= len(times.at) {
			return
		}
		if at := times.at[p].Load(); at > 0 {
			w.mu.Lock()
			w.deltas = append(w.deltas, now.Sub(time.Unix(0, at)))
			w.mu.Unlock()
		}
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	go w.sampleLag()
	return w, nil
}

// sampleLag samples each consumer's backlog at the start, every second,
// and once more when the run ends.
func (w *watcher) sampleLag() {
	defer close(w.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		w.sampleOnce()
		select {
		case <-w.stop:
			w.sampleOnce()
			return
		case <-t.C:
		}
	}
}

func (w *watcher) sampleOnce() {
	for _, c := range watchedConsumers {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cons, err := w.js.Consumer(ctx, c[0], c[1])
		cancel()
		if err != nil {
			continue
		}
		info := cons.CachedInfo()
		w.mu.Lock()
		w.lags[c[1]] = append(w.lags[c[1]], info.NumPending+uint64(info.NumAckPending))
		w.undel[c[1]] = append(w.undel[c[1]], info.NumPending)
		w.mu.Unlock()
	}
}

// Lag is a consumer's backlog over a run: pending plus unacknowledged.
type Lag struct {
	Max uint64 `json:"max"`
	// FirstHalf and SecondHalf are mean backlogs: a second half well above
	// the first means the consumer falls behind at this load.
	FirstHalf  float64 `json:"first_half_mean"`
	SecondHalf float64 `json:"second_half_mean"`
	Last       uint64  `json:"last"`
	// Undelivered* count only what the consumer has not been handed yet:
	// the router's unacknowledged messages are mostly conversions waiting
	// out their hold, which is not lag.
	UndeliveredFirstHalf  float64 `json:"undelivered_first_half_mean"`
	UndeliveredSecondHalf float64 `json:"undelivered_second_half_mean"`
}

// finish stops watching and summarises.
func (w *watcher) finish() (p99 time.Duration, n int, lags map[string]Lag) {
	close(w.stop)
	<-w.done
	_ = w.sub.Drain()
	time.Sleep(200 * time.Millisecond)
	w.nc.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	slices.Sort(w.deltas)
	if n = len(w.deltas); n > 0 {
		p99 = w.deltas[min(n-1, n*99/100)]
	}
	lags = map[string]Lag{}
	for c, s := range w.lags {
		if len(s) == 0 {
			continue
		}
		mean := func(x []uint64) float64 {
			if len(x) == 0 {
				return 0
			}
			var t float64
			for _, v := range x {
				t += float64(v)
			}
			return t / float64(len(x))
		}
		u := w.undel[c]
		lags[c] = Lag{Max: slices.Max(s), FirstHalf: mean(s[:len(s)/2]), SecondHalf: mean(s[len(s)/2:]), Last: s[len(s)-1],
			UndeliveredFirstHalf: mean(u[:len(u)/2]), UndeliveredSecondHalf: mean(u[len(u)/2:])}
	}
	return p99, n, lags
}

// waitDrained waits (at most limit) until every watched consumer has caught
// up, so an open-loop run measures its own load, not the closed loop's
// leftovers; it returns how long that took and whether it happened.
// brokerWork is what JetStream has done since the server started: the
// messages stored in each stream (its last sequence) and delivered to
// all consumers (their delivery sequences, redeliveries included). Segments
// recreates its consumers when it drops uncommitted work, which restarts
// their sequences: a span with such a drop under-counts deliveries.
func brokerWork(natsURL string) (stored map[string]float64, delivered float64) {
	stored = map[string]float64{}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return stored, 0
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return stored, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		stored[si.Config.Name] = float64(si.State.LastSeq)
		s, err := js.Stream(ctx, si.Config.Name)
		if err != nil {
			continue
		}
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			delivered += float64(ci.Delivered.Consumer)
		}
	}
	return stored, delivered
}

func waitDrained(natsURL string, limit time.Duration, log io.Writer) (time.Duration, bool) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return 0, false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, false
	}
	start, said := time.Now(), time.Now()
	for time.Since(start) < limit {
		behind := uint64(0)
		var each []string
		for _, c := range watchedConsumers {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			cons, err := js.Consumer(ctx, c[0], c[1])
			cancel()
			if err == nil {
				info := cons.CachedInfo()
				n := info.NumPending + uint64(info.NumAckPending)
				behind += n
				each = append(each, fmt.Sprintf("%s %d", c[1], n))
			}
		}
		if behind == 0 {
			return time.Since(start), true
		}
		if time.Since(said) >= 5*time.Second {
			fmt.Fprintf(log, "  catching up: %s\n", strings.Join(each, ", "))
			said = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Since(start), false
}
