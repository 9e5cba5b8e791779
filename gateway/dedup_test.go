package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/units"
)

// clock is a settable test clock shared by the gateway and the dedup store.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// startDedupGateway is startGateway with a settable clock.
func startDedupGateway(t *testing.T) (*testGW, *clock) {
	return startDedupGatewayOn(t, nil)
}

// startDedupGatewayOn is startDedupGateway publishing to b (nil: a default
// embedded bus).
func startDedupGatewayOn(t *testing.T, b *bus.Bus) (*testGW, *clock) {
	t.Helper()
	c := &clock{}
	c.ms.Store(testNow.UnixMilli())
	if b == nil {
		b = bustest.OpenEmbedded(t)
	}
	tg := startGatewayOn(t, b, nil)
	_ = tg.g.Shutdown(context.Background())
	reg := prometheus.NewRegistry()
	dd := newDedup(t, reg, c.now)
	g, err := New(tg.g.cfg, Deps{Publisher: tg.bus, Dedup: DedupStore(dd), Registry: reg, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	return &testGW{g: g, bus: tg.bus, url: "http://" + g.Addr().String(), reg: reg, dedup: dd}, c
}

func (tg *testGW) links(t *testing.T) []event.IdentityLink {
	t.Helper()
	msgs := bustest.ReadStream(t, tg.bus.JetStream(), bus.IdentityStream)
	out := make([]event.IdentityLink, len(msgs))
	for i, m := range msgs {
		if m.Subject != "tw.identity.shop" {
			t.Errorf("identity link on %s", m.Subject)
		}
		if err := json.Unmarshal(m.Data, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

const browserCookie = "0123456789abcdef0123456789abcdef"

func (tg *testGW) browserCopy(t *testing.T, id string) answer {
	t.Helper()
	_, a := tg.postBrowser(t, `{"site":"shop","data":[{"event":"CompletePayment","event_id":"`+id+`","user":{"ttclid":"tt-`+id+`"},"properties":{"value":10,"currency":"USD"}}]}`,
		map[string]string{"Cookie": CookieName + "=" + browserCookie})
	return a
}

func (tg *testGW) serverCopy(t *testing.T, id string) answer {
	t.Helper()
	_, a := tg.postServer(t, `{"site":"shop","data":[{"event":"CompletePayment","event_id":"`+id+`","user":{"email":"buyer@example.com","external_id":"c-1"},"properties":{"value":10,"currency":"USD"}}]}`)
	return a
}

func TestDedupBrowserThenServer(t *testing.T) {
	tg, _ := startDedupGateway(t)
	if a := tg.browserCopy(t, "o-1"); a.Accepted != 1 {
		t.Fatalf("browser copy: %+v", a)
	}
	if a := tg.serverCopy(t, "o-1"); a.Accepted != 0 || a.Duplicates != 1 {
		t.Fatalf("server copy: %+v", a)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 1 || envs[0].Source != event.SourceBrowser {
		t.Fatalf("%d events on tw.events.>, want the browser copy only", len(envs))
	}
	links := tg.links(t)
	if len(links) != 1 {
		t.Fatalf("%d identity links, want 1", len(links))
	}
	l := links[0]
	if l.Profile != "a:"+browserCookie || l.Aliases[event.AliasEmail] != sha("buyer@example.com") || l.Aliases[event.AliasExternalID] != sha("c-1") ||
		l.EventID != "o-1" || l.Event != "CompletePayment" || l.Site != "shop" || l.At != testNow.UnixMilli() {
		t.Fatalf("link: %+v", l)
	}
	if _, dup := l.Aliases[event.AliasTTCLID]; dup {
		t.Fatal("the link repeats an identifier the first copy had")
	}
	if p, err := tg.dedup.Profile("shop", event.AliasEmail, sha("buyer@example.com")); err != nil || p != "a:"+browserCookie {
		t.Fatalf("stored link: %q %v", p, err)
	}
	// A third copy adds nothing new: a duplicate, no second link.
	if a := tg.serverCopy(t, "o-1"); a.Duplicates != 1 {
		t.Fatalf("third copy: %+v", a)
	}
	if n := len(tg.links(t)); n != 1 {
		t.Fatalf("%d links after a copy that adds nothing", n)
	}
	if got := tg.counter(t, "tagway_dedup_duplicates_total", map[string]string{"pair": "browser_server"}); got != 2 {
		t.Errorf("browser_server duplicates = %v", got)
	}
}

func TestDedupServerThenBrowser(t *testing.T) {
	tg, _ := startDedupGateway(t)
	if a := tg.serverCopy(t, "o-2"); a.Accepted != 1 {
		t.Fatalf("server copy: %+v", a)
	}
	if a := tg.browserCopy(t, "o-2"); a.Accepted != 0 || a.Duplicates != 1 {
		t.Fatalf("browser copy: %+v", a)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 1 || envs[0].Source != event.SourceServer {
		t.Fatalf("%d events", len(envs))
	}
	links := tg.links(t)
	if len(links) != 1 || links[0].Profile != envs[0].Profile || links[0].Aliases[event.AliasAnonID] != browserCookie || links[0].Aliases[event.AliasTTCLID] != "tt-o-2" {
		t.Fatalf("links: %+v (first profile %s)", links, envs[0].Profile)
	}
	if got := tg.counter(t, "tagway_dedup_duplicates_total", map[string]string{"pair": "server_browser"}); got != 1 {
		t.Errorf("server_browser duplicates = %v", got)
	}
}

func TestDedupKeyParts(t *testing.T) {
	tg, _ := startDedupGateway(t)
	_, a := tg.postServer(t, `{"site":"shop","data":[
		{"event":"AddToCart","event_id":"k-1"},
		{"event":"AddToCart","event_id":"k-2"},
		{"event":"Lead","event_id":"k-1"},
		{"event":"AddToCart","event_id":"k-1"}]}`)
	if a.Accepted != 3 || a.Duplicates != 1 {
		t.Fatalf("same name/different ids and same id/different names are different events: %+v", a)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 3 {
		t.Fatalf("%d events", len(envs))
	}
	// Events without an event_id cannot be deduplicated: each is accepted.
	_, a = tg.postServer(t, `{"site":"shop","data":[{"event":"Lead"},{"event":"Lead"}]}`)
	if a.Accepted != 2 {
		t.Fatalf("unkeyed: %+v", a)
	}
}

func TestDedupWindows(t *testing.T) {
	// JetStream's own Nats-Msg-Id window runs on real time and the message id
	// is the dedup key, so this test shortens that window and waits it out
	// (real time) before the copy that the fake clock puts past 48 hours.
	const jsWindow = 300 * time.Millisecond
	tg, c := startDedupGatewayOn(t, bustest.OpenEmbeddedWith(t, bus.Config{Events: bus.StreamConfig{DuplicateWindow: units.Duration(jsWindow)}}))
	first := time.Now()
	tg.browserCopy(t, "w-1")
	c.advance(6 * time.Minute) // past merge_window (5m), inside window (48h)
	if a := tg.serverCopy(t, "w-1"); a.Duplicates != 1 {
		t.Fatalf("copy after the merge window: %+v", a)
	}
	if n := len(tg.links(t)); n != 0 {
		t.Fatalf("a copy after the merge window linked identifiers (%d links)", n)
	}
	c.advance(48 * time.Hour) // past the window
	time.Sleep(time.Until(first.Add(jsWindow + 100*time.Millisecond)))
	if a := tg.serverCopy(t, "w-1"); a.Accepted != 1 {
		t.Fatalf("copy after the window must be accepted again: %+v", a)
	}
	// That new first copy starts a new window.
	c.advance(time.Minute)
	if a := tg.browserCopy(t, "w-1"); a.Duplicates != 1 {
		t.Fatalf("copy in the new window: %+v", a)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 2 {
		t.Fatalf("%d events, want 2", len(envs))
	}
}

// TestDedupConcurrentCopies is acceptance 2: 64 goroutines post the same
// (site, event, id) at once over their own connections: exactly one wins.
func TestDedupConcurrentCopies(t *testing.T) {
	tg, _ := startDedupGateway(t)
	const n = 64
	var accepted, dups atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{}} // own connection
			body := fmt.Sprintf(`{"site":"shop","data":[{"event":"CompletePayment","event_id":"same","user":{"external_id":"u%d"}}]}`, i)
			req, _ := http.NewRequest("POST", tg.url+"/v1/events", stringsReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("Content-Type", "application/json")
			<-start
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			var a answer
			_ = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d %+v", resp.StatusCode, a)
			}
			accepted.Add(int64(a.Accepted))
			dups.Add(int64(a.Duplicates))
		}(i)
	}
	close(start)
	wg.Wait()
	if accepted.Load() != 1 || dups.Load() != n-1 {
		t.Fatalf("accepted %d, duplicates %d; want 1 and %d", accepted.Load(), dups.Load(), n-1)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 1 {
		t.Fatalf("%d events stored", len(envs))
	}
	// Tagway itself decided, not only JetStream's Nats-Msg-Id check behind it:
	// one miss, and every other copy a duplicate by Tagway's verdict.
	if miss := tg.counter(t, "tagway_dedup_lookups_total", map[string]string{"tier": "miss"}); miss != 1 {
		t.Fatalf("dedup misses = %v, want 1 (more means two copies were both taken as first)", miss)
	}
	if d := tg.counter(t, "tagway_dedup_duplicates_total", map[string]string{"pair": "same_source"}); d != n-1 {
		t.Fatalf("dedup duplicates = %v, want %d", d, n-1)
	}
	// Two copies in one batch: one accepted, one duplicate.
	_, a := tg.postServer(t, `{"site":"shop","data":[{"event":"Lead","event_id":"twin"},{"event":"Lead","event_id":"twin"}]}`)
	if a.Accepted != 1 || a.Duplicates != 1 {
		t.Fatalf("same batch: %+v", a)
	}
}
