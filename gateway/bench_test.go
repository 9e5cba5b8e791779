package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/tagway/tagway/gateway/event"
)

// benchBatch is a realistic 20-event server batch.
func benchBatch(n int, prefix string) string {
	var sb strings.Builder
	sb.WriteString(`{"site":"shop","data":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"event":"CompletePayment","event_time":1763800000,"event_id":"%s-%d",`+
			`"user":{"email":"buyer%d@example.com","phone":"+1 555 010 %04d","external_id":"cust-%d","ip":"203.0.113.%d","user_agent":"Mozilla/5.0 (X11; Linux x86_64)","ttclid":"E.C.P.abc%d"},`+
			`"properties":{"currency":"USD","value":%d.5,"contents":[{"content_id":"sku-%d","quantity":1,"price":%d.5}]},`+
			`"page":{"url":"https://shop.example/checkout","referrer":"https://shop.example/cart"},`+
			`"consent":{"tcf":"CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA","usp":"1YNN"}}`, prefix, i, i, i, i, i%250, i, i, i, i)
	}
	sb.WriteString(`]}`)
	return sb.String()
}

// BenchmarkParseValidate: batch parse, per-event decode, validation, hashing
// and envelope encoding for a 20-event server batch (no network).
func BenchmarkParseValidate(b *testing.B) {
	body := []byte(benchBatch(20, "e"))
	var cfg Config
	cfg.SetDefaults()
	g := &Gateway{cfg: cfg}
	lim := eventLimits{maxAge: 7 * 24 * time.Hour, maxFuture: 10 * time.Minute}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var batch batchIn
		if rerr := parseBatch(body, &batch); rerr != nil {
			b.Fatal(rerr)
		}
		ri := &reqInfo{source: event.SourceServer, site: "shop", now: testNow}
		dec := g.rawDecoder(batch.Data)
		var is issues
		for i := range batch.Data {
			var ev eventIn
			if _, m, _ := dec(i, &ev); m != "" {
				b.Fatal(m)
			}
			var env event.Envelope
			if !buildEnvelope(&ev, ri, lim, i, &is, &env) {
				b.Fatal(is.errors)
			}
			if _, err := json.Marshal(&env); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*20)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkServerRequest is the whole request path over loopback HTTP:
// fasthttp → parse → validate → publish to a real embedded JetStream → wait
// for every PubAck → answer. Each request is a 20-event batch with fresh ids.
func BenchmarkServerRequest(b *testing.B) {
	tg := startGatewayB(b)
	c := &fasthttp.Client{MaxConnsPerHost: 64}
	url := tg.url + "/v1/events"
	var seq int64
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			n := nextSeq(&seq)
			req.Reset()
			req.SetRequestURI(url)
			req.Header.SetMethod("POST")
			req.Header.SetContentType("application/json")
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.SetBodyString(benchBatch(20, fmt.Sprintf("r%d", n)))
			if err := c.Do(req, resp); err != nil {
				b.Fatal(err)
			}
			if resp.StatusCode() != 200 {
				b.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
			}
		}
	})
	b.ReportMetric(float64(b.N*20)/b.Elapsed().Seconds(), "events/s")
}
