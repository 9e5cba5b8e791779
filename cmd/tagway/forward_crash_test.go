package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagway/tagway/forward/forwardtest"
)

// TestForwardSurvivesSIGKILL is the forward issue's acceptance 5 with a real
// process: conversions stream in while the fake TikTok API answers slowly
// and fails a third of its requests; the process is killed (-9) twice in
// the middle of delivering, restarted on the same data directory, and the
// fake's log must end up holding every accepted conversion's event_id.
func TestForwardSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process; skipped with -short")
	}
	tt := forwardtest.NewTikTok(t, "tok", "CPIX3")
	tt.SetChaos(forwardtest.Chaos{Rate: 0.3, Seed: 7, Kinds: []forwardtest.ChaosKind{forwardtest.Status500, forwardtest.Status429},
		RetryAfter: time.Second})
	bin := tagwayBinary(t)
	dir := t.TempDir()
	sum := sha256.Sum256([]byte("fw-key"))
	cfgFile := filepath.Join(dir, "tagway.yaml")
	if err := os.WriteFile(cfgFile, []byte(`
sites: [{id: shop}]
sources: [{name: backend, key_sha256: "`+hex.EncodeToString(sum[:])+`", sites: [shop]}]
consent: {default_regime: none}
dedup: {merge_window: 1s}
destinations:
  - {name: tiktok, type: tiktok, base_url: "`+tt.URL()+`", pixel_code: CPIX3, access_token_env: TT_TOKEN,
     hold: 500ms, batch_size: 50, concurrency: 2, linger: 20ms, min_backoff: 100ms, max_backoff: 1s, timeout: 1s}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() (*exec.Cmd, endpoints) {
		return startProcessWith(t, bin, filepath.Join(dir, "data"), []string{"TT_TOKEN=tok"}, "--config", cfgFile)
	}
	const batches, perBatch = 40, 20
	body := func(b int) string {
		var sb strings.Builder
		sb.WriteString(`{"site":"shop","data":[`)
		for i := 0; i < perBatch; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"event":"CompletePayment","event_id":"o%d","user":{"external_id":"u%d"},"properties":{"value":1,"currency":"EUR"}}`, b*perBatch+i, b*perBatch+i)
		}
		return sb.String() + `]}`
	}
	client := &http.Client{Timeout: 10 * time.Second}
	acked := make([]atomic.Bool, batches)
	for round, killAfter := range []time.Duration{900 * time.Millisecond, 900 * time.Millisecond, 0} {
		cmd, ep := start()
		var wg sync.WaitGroup
		next := make(chan int, batches)
		for i := range batches {
			if !acked[i].Load() {
				next <- i
			}
		}
		close(next)
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					req, _ := http.NewRequest("POST", ep.public+"/v1/events", strings.NewReader(body(i)))
					req.Header.Set("Authorization", "Bearer fw-key")
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						return // the kill
					}
					resp.Body.Close()
					if resp.StatusCode == 200 {
						acked[i].Store(true)
					}
					time.Sleep(80 * time.Millisecond) // a stream, not a burst
				}
			}()
		}
		if killAfter == 0 {
			wg.Wait()
			break
		}
		time.Sleep(killAfter)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		wg.Wait()
		t.Logf("round %d: killed with %d distinct conversions at the fake", round, len(tt.EventIDs()))
	}
	for i := range acked {
		if !acked[i].Load() {
			t.Fatalf("batch %d never accepted", i)
		}
	}
	// Messages a killed process had fetched but not answered are redelivered
	// only when their AckWait ends (the deliverer's is 2 × timeout + 30 s,
	// the router's 30 s): late, not lost. Wait past that.
	want := batches * perBatch
	waited := time.Now()
	if !tt.WaitEventIDs(want, 100*time.Second) {
		ids := tt.EventIDs()
		var missing []string
		for i := 0; i < want && len(missing) < 10; i++ {
			if ids[fmt.Sprintf("o%d", i)] == 0 {
				missing = append(missing, fmt.Sprintf("o%d", i))
			}
		}
		t.Fatalf("the fake has %d of %d conversions; missing e.g. %v", len(ids), want, missing)
	}
	dups := 0
	for _, n := range tt.EventIDs() {
		dups += n - 1
	}
	t.Logf("%d conversions delivered (the last %s after the final round), %d wire duplicates (TikTok deduplicates them by event_id)",
		want, time.Since(waited).Round(time.Second), dups)
}
