package segments

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/tagway/tagway/gateway/event"
)

// examples reads the README's example segments (testdata/examples.yaml,
// which TestReadmeShowsTheExamples keeps identical to the README's block).
func examples(t testing.TB) string {
	t.Helper()
	raw, err := os.ReadFile("testdata/examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Segments yaml.Node `yaml:"segments"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out, _ := yaml.Marshal(&doc.Segments)
	return string(out)
}

func TestReadmeShowsTheExamples(t *testing.T) {
	raw, _ := os.ReadFile("testdata/examples.yaml")
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+string(raw)+"```") {
		t.Fatal("README.md must show segments/testdata/examples.yaml verbatim in a yaml block")
	}
	cfg := parseRules(t, examples(t))
	prog, err := cfg.Validate()
	if err != nil {
		t.Fatal(err)
	}
	if len(prog.Segments) != 20 {
		t.Fatalf("%d example segments, the benchmark wants 20", len(prog.Segments))
	}
}

// benchMsg feeds apply() directly: the benchmarks measure the engine's own
// cost per event (state, evaluation, Badger writes, delta publishing on the
// real JetStream), not the consumer's transport.
type benchMsg struct {
	jetstream.Msg
	md   jetstream.MsgMetadata
	data []byte
}

func (m *benchMsg) Metadata() (*jetstream.MsgMetadata, error) { return &m.md, nil }
func (m *benchMsg) Data() []byte                              { return m.data }

// mix is a realistic event mix for a shop: name and weight.
var mix = []struct {
	name  string
	w     int
	props string
	url   string
}{
	{"PageView", 55, "", "https://shop.example/p/%d"},
	{"PageView", 5, "", "https://shop.example/pricing"},
	{"ViewContent", 12, `{"contents":[{"content_id":"sku-%d"}]}`, ""},
	{"AddToCart", 7, `{"value":%d,"currency":"EUR"}`, ""},
	{"InitiateCheckout", 3, "", ""},
	{"CompletePayment", 2, `{"value":%d,"currency":"EUR"}`, ""},
	{"EngagementTime", 8, `{"seconds":%d}`, ""},
	{"VideoProgress", 4, `{"percent":%d}`, ""},
	{"Lead", 1, "", ""},
	{"Search", 2, `{"query":"shoes"}`, ""},
	{"CompleteRegistration", 1, "", ""},
}

// genEvents builds n envelopes over profiles, spread over span ending at
// end, in visits: 200 visits run at once, each 1 to 10 events (about 4) by
// one profile, as a shop's traffic comes. 90 % of profiles consent to
// segments; a quarter have a hashed email.
func genEvents(n, profiles int, end time.Time, span time.Duration, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 7))
	total := 0
	for _, m := range mix {
		total += m.w
	}
	type visit struct{ profile, left int }
	visits := make([]visit, 200)
	for i := range visits {
		visits[i] = visit{r.IntN(profiles), 1 + r.IntN(7)}
	}
	out := make([][]byte, n)
	for i := range out {
		v := &visits[r.IntN(len(visits))]
		if v.left == 0 {
			*v = visit{r.IntN(profiles), 1 + r.IntN(7)}
		}
		v.left--
		p := v.profile
		x := r.IntN(total)
		k := 0
		for x >= mix[k].w {
			x -= mix[k].w
			k++
		}
		m := mix[k]
		at := end.Add(-span + time.Duration(float64(span)*float64(i)/float64(n)))
		env := event.Envelope{ID: fmt.Sprintf("%032x", i), EventID: fmt.Sprint(i), Site: "shop", Source: event.SourceBrowser,
			Event: m.name, EventTime: at.UnixMilli(), ReceivedAt: at.UnixMilli(),
			User:    event.User{AnonID: fmt.Sprintf("%032x", p)},
			Consent: event.Consent{Decided: true, Allowed: []string{"measurement", "segments"}, Jurisdiction: "DE"}}
		if p%10 == 9 {
			env.Consent.Allowed = []string{"measurement"}
		}
		if p%4 == 0 {
			env.User.EmailSHA256 = fmt.Sprintf("%064x", p)
		}
		if m.url != "" {
			env.Page.URL = m.url
			if strings.Contains(m.url, "%d") {
				env.Page.URL = fmt.Sprintf(m.url, r.IntN(50))
			}
		}
		if m.props != "" {
			v := r.IntN(100) + 1
			if m.name == "ViewContent" {
				v = r.IntN(20)
			}
			env.Properties = event.RawJSON(strings.ReplaceAll(m.props, "%d", fmt.Sprint(v)))
		}
		env.Profile = event.ProfileID(&env.User)
		out[i], _ = json.Marshal(&env)
	}
	return out
}

// feedEvents applies the envelopes in batches and commits them as the consumer
// would, with the clock following the events.
func feedEvents(tb testing.TB, r *rig, data [][]byte, seq0 uint64, batch int) {
	msgs := make([]jetstream.Msg, 0, batch)
	for i := 0; i < len(data); i += batch {
		msgs = msgs[:0]
		for j := i; j < min(i+batch, len(data)); j++ {
			msgs = append(msgs, &benchMsg{md: jetstream.MsgMetadata{Stream: eventsStream, Consumer: EventsConsumer,
				Sequence: jetstream.SequencePair{Stream: seq0 + uint64(j) + 1}}, data: data[j]})
		}
		var last event.Envelope
		_ = json.Unmarshal(data[min(i+batch, len(data))-1], &last)
		r.clk.mu.Lock()
		r.clk.t = time.UnixMilli(last.ReceivedAt)
		r.clk.mu.Unlock()
		r.e.mu.Lock()
		err := r.e.apply(msgs)
		if r.e.uncommitted += len(msgs); err == nil && (r.e.uncommitted >= r.e.cfg.MaxUncommitted || i+batch >= len(data)) {
			err = r.e.commit() // as the consumer does: state stored in one WriteBatch per MaxUncommitted
		}
		r.e.mu.Unlock()
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkEvent20Segments is the per-event cost of update + evaluation
// with the README's 20 segments, on a store already holding the profiles.
func BenchmarkEvent20Segments(b *testing.B) {
	for _, profiles := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("profiles=%d", profiles), func(b *testing.B) {
			r := newRig(b, examples(b))
			end := t0.Add(30 * day)
			warm := genEvents(profiles*3, profiles, end, 30*day, 1)
			feedEvents(b, r, warm, 0, 512)
			data := genEvents(max(b.N, 1), profiles, end.Add(time.Hour), time.Hour, 2)
			d0 := r.e.deltaCount()
			b.ReportAllocs()
			b.ResetTimer()
			feedEvents(b, r, data, uint64(len(warm)), 512)
			b.StopTimer()
			d1 := r.e.deltaCount()
			b.ReportMetric((d1-d0)/float64(b.N), "deltas/event")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "µs/event")
		})
	}
}

// BenchmarkProfiles1M fills the store with 1M profiles (3M events of the
// mix over 30 days) and reports the heap, Badger's size on disk and the
// bytes per profile. Run it with -benchtime=1x (make bench does).
func BenchmarkProfiles1M(b *testing.B) {
	const profiles, events = 1_000_000, 3_000_000
	for range b.N {
		r := newRig(b, examples(b))
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		end := t0.Add(30 * day)
		start := time.Now()
		const chunk = 500_000
		for i := 0; i < events; i += chunk {
			feedEvents(b, r, genEvents(chunk, profiles, end.Add(-30*day+time.Duration(i/chunk+1)*5*day), 5*day, uint64(i)), uint64(i), 512)
		}
		elapsed := time.Since(start)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if f := os.Getenv("TAGWAY_HEAPPROFILE"); f != "" { // go tool pprof -sample_index=inuse_space
			if w, err := os.Create(f); err == nil {
				_ = pprof.WriteHeapProfile(w)
				_ = w.Close()
			}
		}
		// Live size: compact the LSM and collect the value log, as the
		// store's GC loop does over time.
		_ = r.store.DB().Flatten(1)
		for r.store.DB().RunValueLogGC(0.5) == nil {
		}
		lsm, vlog := r.store.DB().Size()
		var disk int64 // blocks in use: Badger's value-log files are sparse
		_ = filepath.Walk(r.dir, func(_ string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					disk += st.Blocks * 512
				} else {
					disk += fi.Size()
				}
			}
			return nil
		})
		b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(lsm)/(1<<20), "lsm-MiB")
		b.ReportMetric(float64(vlog)/(1<<20), "vlog-MiB")
		b.ReportMetric(float64(disk)/(1<<20), "disk-MiB")
		n := 0
		for _, st := range r.e.seg {
			n += int(st.Members)
		}
		b.ReportMetric(float64(n), "memberships")
		_ = context.Background()
	}
}
