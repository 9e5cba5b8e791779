package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/segments"
)

// TestSegmentsSurviveSIGKILL is the segments issue's acceptance 2 with a
// real process: kill -9 while events stream in (the engine may be between
// receiving and applying messages, or between publishing deltas and storing
// state), restart on the same data directory, resend what was not
// acknowledged, and find on tw.audience exactly one add per profile and
// segment: none missing, none twice. The first kill comes right after the
// first acknowledged batch (that one found acknowledged-but-never-applied
// events: AckAll's trap, see segments/consume.go), the second mid-stream.
func TestSegmentsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process; skipped with -short")
	}
	bin := tagwayBinary(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "tagway.yaml")
	sum := sha256.Sum256([]byte("seg-key"))
	if err := os.WriteFile(cfgFile, []byte(`
sites: [{id: shop}]
sources: [{name: backend, key_sha256: "`+hex.EncodeToString(sum[:])+`", sites: [shop]}]
consent: {default_regime: none}
segments:
  ack_wait: 2s
  rules:
    - {name: carts, min_size: 1, include: {event: AddToCart, within: 7d}}
    - {name: visitors, min_size: 1, include: {event: PageView, within: 30d}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() (*exec.Cmd, endpoints) {
		return startProcessWith(t, bin, filepath.Join(dir, "data"), nil, "--config", cfgFile)
	}
	// Batches of 20 server events; profile k gets one AddToCart and one
	// PageView, so it belongs to both segments.
	const profiles, perBatch = 600, 20
	batches := make([]string, 0, profiles*2/perBatch)
	for b := 0; b < profiles*2/perBatch; b++ {
		var sb strings.Builder
		sb.WriteString(`{"site":"shop","data":[`)
		for i := 0; i < perBatch; i++ {
			n := b*perBatch + i
			name := []string{"AddToCart", "PageView"}[n%2]
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"event":%q,"event_id":"e%d","user":{"external_id":"u%d"}}`, name, n, n/2)
		}
		sb.WriteString(`]}`)
		batches = append(batches, sb.String())
	}
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(ep endpoints, body string) bool {
		req, _ := http.NewRequest("POST", ep.public+"/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer seg-key")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return false // the kill
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Errorf("status %d: %s", resp.StatusCode, b)
			return false
		}
		return true
	}

	acked := make([]atomic.Bool, len(batches))
	var ep endpoints
	// Two rounds that end in a kill (after 1, then 20 more acknowledged
	// batches), then one that sends the rest and is left running.
	for round, killAfter := range []int{1, 20, 0} {
		var cmd *exec.Cmd
		cmd, ep = start()
		next := make(chan int, len(batches))
		for i := range batches {
			if !acked[i].Load() {
				next <- i
			}
		}
		close(next)
		var n atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if !send(ep, batches[i]) {
						return
					}
					acked[i].Store(true)
					n.Add(1)
				}
			}()
		}
		if killAfter == 0 {
			wg.Wait()
			break
		}
		deadline := time.Now().Add(60 * time.Second)
		for n.Load() < int64(killAfter) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		wg.Wait()
		t.Logf("round %d: killed after %d acknowledged batches", round, n.Load())
	}
	for i := range acked {
		if !acked[i].Load() {
			t.Fatalf("batch %d never acknowledged", i)
		}
	}

	// Every profile is in both segments exactly once.
	want := 2 * profiles
	var ds []segments.Delta
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds = readDeltas(t, ep.nats)
		if len(ds) >= want {
			time.Sleep(3 * time.Second) // anything late (a redelivery) would show now
			if again := readDeltas(t, ep.nats); len(again) == len(ds) {
				break
			}
			continue
		}
		if time.Now().After(deadline) {
			diagnoseMissing(t, ep, ds)
			t.Fatalf("%d deltas, want %d", len(ds), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[string]int{}
	for _, d := range ds {
		if d.Op != "add" {
			t.Fatalf("unexpected %+v", d)
		}
		seen[d.Segment+"|"+d.Profile]++
	}
	dups := 0
	for k, n := range seen {
		if n > 1 {
			dups++
			t.Errorf("%s added %d times", k, n)
		}
	}
	if len(seen) != want || dups > 0 {
		t.Fatalf("%d distinct memberships (want %d), %d duplicated, %d deltas", len(seen), want, dups, len(ds))
	}
}

// diagnoseMissing says, for a failed run, which memberships are missing,
// whether TW_EVENTS holds their events, and what the engine counted.
func diagnoseMissing(t *testing.T, ep endpoints, ds []segments.Delta) {
	t.Helper()
	nc, err := nats.Connect(ep.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	have := map[string]bool{}
	for _, d := range ds {
		have[d.Segment+"|"+d.Profile] = true
	}
	n := 0
	for _, m := range bustest.ReadStream(t, js, "TW_EVENTS") {
		var env struct{ Event, Profile string }
		_ = json.Unmarshal(m.Data, &env)
		k := map[string]string{"AddToCart": "carts", "PageView": "visitors"}[env.Event] + "|" + env.Profile
		if !have[k] {
			if n++; n <= 10 {
				t.Logf("missing %s (its event is TW_EVENTS seq %d)", k, m.Seq)
			}
		}
	}
	t.Logf("%d memberships missing whose event is on TW_EVENTS", n)
	if resp, err := http.Get(ep.admin + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "tagway_segments_") && !strings.Contains(l, "_bucket") {
				t.Log(l)
			}
		}
	}
}
