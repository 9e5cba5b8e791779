package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentBatchesKeepTheirOwnData posts many batches at once, each
// event carrying its own id in properties, user and page, and checks every
// stored envelope still carries its own values. Buffers reused across
// requests (fasthttp's request bodies, the JSON decoder's pooled input) must
// never leak one request's bytes into another's events.
func TestConcurrentBatchesKeepTheirOwnData(t *testing.T) {
	tg := startGateway(t, func(c *Config) { c.Limits.IPRate = &Rate{} })
	const workers, batches, perBatch = 8, 15, 10
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				var sb strings.Builder
				sb.WriteString(`{"site":"shop","data":[`)
				for i := 0; i < perBatch; i++ {
					id := fmt.Sprintf("w%d-b%d-e%d", w, b, i)
					if i > 0 {
						sb.WriteByte(',')
					}
					pad := strings.Repeat("x", (w*7+b*3+i)%50) // vary lengths so buffers misalign
					fmt.Fprintf(&sb, `{"event":"Lead","event_id":%q,"user":{"external_id":%q},"page":{"url":"https://shop.example/%s"},"properties":{"order":%q,"pad":%q}}`, id, id, id, id, pad)
				}
				sb.WriteString(`]}`)
				post := tg.postServer // half the workers use each door
				if w%2 == 1 {
					post = func(t *testing.T, body string) (*http.Response, answer) { return tg.postBrowser(t, body, nil) }
				}
				resp, a := post(t, sb.String())
				if resp.StatusCode != 200 || a.Accepted != perBatch {
					t.Errorf("batch w%d b%d: %d %+v", w, b, resp.StatusCode, a)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	envs, _ := tg.envelopes(t)
	want := workers * batches * perBatch
	if len(envs) != want {
		t.Fatalf("%d envelopes stored, want %d", len(envs), want)
	}
	for _, e := range envs {
		id := e.EventID
		if !strings.Contains(string(e.Properties), `"order":"`+id+`"`) {
			t.Fatalf("event %s carries another event's properties: %s", id, e.Properties)
		}
		if e.Page.URL != "https://shop.example/"+id {
			t.Fatalf("event %s carries page %s", id, e.Page.URL)
		}
		if e.User.ExternalIDSHA256 != sha(id) {
			t.Fatalf("event %s carries another external id hash", id)
		}
	}
}
