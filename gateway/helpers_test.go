package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/dedup"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

// testNow is the fixed clock of gateway tests (2025-11-22T08:26:40Z).
var testNow = time.Unix(1763800000, 0)

const testKey = "test-key-0123456789"

type testGW struct {
	g     *Gateway
	bus   *bus.Bus
	url   string
	reg   *prometheus.Registry
	dedup *dedup.Store
}

// startGateway runs a gateway on a random loopback port against a real
// embedded JetStream, with site "shop" and source "backend" (key testKey).
func startGateway(t *testing.T, mutate func(*Config)) *testGW {
	t.Helper()
	return startGatewayOn(t, bustest.OpenEmbedded(t), mutate)
}

// startGatewayOn is startGateway publishing to b.
func startGatewayOn(t *testing.T, b *bus.Bus, mutate func(*Config)) *testGW {
	t.Helper()
	sum := sha256.Sum256([]byte(testKey))
	cfg := Config{
		Listen:  "127.0.0.1:0",
		Sites:   []Site{{ID: "shop", Origins: []string{"https://shop.example"}, CookieDomain: "shop.example"}, {ID: "other"}},
		Sources: []Source{{Name: "backend", KeySHA256: hex.EncodeToString(sum[:]), Sites: []string{"shop"}}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	dd := newDedup(t, reg, func() time.Time { return testNow })
	g, err := New(cfg, Deps{Publisher: b, Dedup: DedupStore(dd), Registry: reg, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return &testGW{g: g, bus: b, url: "http://" + g.Addr().String(), reg: reg, dedup: dd}
}

// newDedup opens a dedup store on a Badger in a temp dir.
func newDedup(t testing.TB, reg prometheus.Registerer, now func() time.Time) *dedup.Store {
	t.Helper()
	store, err := kv.Open(t.TempDir(), kv.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	dd, err := dedup.New(dedup.Config{}, store.DB(), reg, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return dd
}

type answer struct {
	Accepted     int `json:"accepted"`
	Duplicates   int `json:"duplicates"`
	NotConsented int `json:"not_consented"`
	Errors       []struct {
		Index   *int   `json:"index"`
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
	Warnings []struct {
		Index *int   `json:"index"`
		Field string `json:"field"`
	} `json:"warnings"`
	RequestID string `json:"request_id"`
	Error     *struct {
		Code    string `json:"code"`
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"error"`
}

func (tg *testGW) do(t *testing.T, req *http.Request) (*http.Response, answer) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var a answer
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("answer is not JSON: %v: %s", err, body)
		}
	}
	return resp, a
}

func (tg *testGW) postServer(t *testing.T, body string) (*http.Response, answer) {
	t.Helper()
	req, _ := http.NewRequest("POST", tg.url+"/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	return tg.do(t, req)
}

func (tg *testGW) postBrowser(t *testing.T, body string, hdr map[string]string) (*http.Response, answer) {
	t.Helper()
	req, _ := http.NewRequest("POST", tg.url+"/e", strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return tg.do(t, req)
}

// envelopes reads every envelope stored in TW_EVENTS.
func (tg *testGW) envelopes(t *testing.T) ([]event.Envelope, []bustest.Msg) {
	t.Helper()
	msgs := bustest.ReadStream(t, tg.bus.JetStream(), bus.EventsStream)
	envs := make([]event.Envelope, len(msgs))
	for i, m := range msgs {
		if err := json.Unmarshal(m.Data, &envs[i]); err != nil {
			t.Fatalf("envelope %d: %v", i, err)
		}
	}
	return envs, msgs
}

// counter reads a counter's value from the registry.
func (tg *testGW) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := tg.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
		}
	}
	return 0
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func gzipped(t *testing.T, s string) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	zw := newGzipWriter(&buf)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return &buf
}

// startGatewayB is startGateway for benchmarks (real clock, no rate limit).
func startGatewayB(b *testing.B) *testGW {
	b.Helper()
	sum := sha256.Sum256([]byte(testKey))
	cfg := Config{
		Listen:  "127.0.0.1:0",
		Sites:   []Site{{ID: "shop"}},
		Sources: []Source{{Name: "backend", KeySHA256: hex.EncodeToString(sum[:]), Sites: []string{"shop"}}},
	}
	bb := bustest.OpenEmbedded(b)
	reg := prometheus.NewRegistry()
	g, err := New(cfg, Deps{Publisher: bb, Dedup: DedupStore(newDedup(b, reg, nil)), Registry: reg, Now: func() time.Time { return testNow }})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	return &testGW{g: g, bus: bb, url: "http://" + g.Addr().String(), reg: reg}
}

func nextSeq(p *int64) int64 { return atomic.AddInt64(p, 1) }

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
