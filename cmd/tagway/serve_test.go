package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/event"
)

// endpoints are what the start-up banner tells a user.
type endpoints struct {
	public, admin, nats, key string
}

var (
	bannerPublic = regexp.MustCompile(`browser events\s+POST (http://\S+)/e`)
	bannerAdmin  = regexp.MustCompile(`admin\s+(http://\S+)/metrics`)
	bannerNATS   = regexp.MustCompile(`NATS\s+embedded (nats://\S+)`)
	bannerKey    = regexp.MustCompile(`demo API key\s+(\S+)`)
)

// readBanner reads stdout lines until the banner's last line ("data").
func readBanner(t *testing.T, r io.Reader) endpoints {
	t.Helper()
	var ep endpoints
	sc := bufio.NewScanner(r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sc.Scan() {
			line := sc.Text()
			for _, m := range []struct {
				re  *regexp.Regexp
				dst *string
			}{{bannerPublic, &ep.public}, {bannerAdmin, &ep.admin}, {bannerNATS, &ep.nats}, {bannerKey, &ep.key}} {
				if s := m.re.FindStringSubmatch(line); s != nil {
					*m.dst = s[1]
				}
			}
			if strings.HasPrefix(strings.TrimSpace(line), "data ") {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("no start-up banner within 60s")
	}
	go io.Copy(io.Discard, r) // keep draining
	if ep.public == "" || ep.admin == "" {
		t.Fatalf("banner incomplete: %+v", ep)
	}
	return ep
}

func envFunc(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// lockedBuffer is a goroutine-safe stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// startServe runs `tagway serve` in process on random loopback ports.
func startServe(t *testing.T, dataDir string, env map[string]string, extra ...string) (endpoints, func() error, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &lockedBuffer{}
	args := append([]string{"serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--log-format", "text"}, extra...)
	errc := make(chan error, 1)
	go func() {
		err := run(ctx, args, pw, stderr, envFunc(env))
		pw.Close()
		errc <- err
	}()
	var stopped bool
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case stopErr = <-errc:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("serve did not stop within 30s")
			}
		}
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return readBanner(t, pr), stop, stderr
}

func post(t *testing.T, url, body string, hdr map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp, out
}

func readEvents(t *testing.T, natsURL string) []bustest.Msg {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	return bustest.ReadStream(t, js, bus.EventsStream)
}

// TestServeEndToEnd is acceptance 2: the whole server on random ports with an
// embedded NATS and a temp Badger, browser and server batches in, envelopes
// read back from tw.events.> over NATS's TCP port, and a restart on the same
// data directory that keeps them.
func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ep, stop, stderr := startServe(t, dir, map[string]string{"TAGWAY_DEMO_KEY": "e2e-key"})
	if ep.key != "e2e-key" || ep.nats == "" {
		t.Fatalf("banner: %+v", ep)
	}
	// A live subscriber sees events as they are published.
	nc, err := nats.Connect(ep.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	live, err := nc.SubscribeSync("tw.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}

	resp, ans := post(t, ep.public+"/e", `{"site":"demo","user":{"email":"Browser.User@Example.com"},"data":[{"event":"PageView","page":{"url":"https://demo.example/"}},{"event":"AddToCart","event_id":"cart-1","properties":{"value":10,"currency":"USD"}}]}`,
		map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://demo.example"})
	if resp.StatusCode != 200 || ans["accepted"] != 2.0 {
		t.Fatalf("browser batch: %d %v", resp.StatusCode, ans)
	}
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "_tw_id" && c.HttpOnly && c.SameSite == http.SameSiteLaxMode {
			cookie = c.Value
		}
	}
	if !event.IsAnonID(cookie) {
		t.Fatalf("no _tw_id cookie: %v", resp.Header.Values("Set-Cookie"))
	}
	resp, ans = post(t, ep.public+"/v1/events", `{"site":"demo","data":[{"event":"CompletePayment","event_time":`+fmt.Sprint(time.Now().Unix())+`,"event_id":"order-1001","user":{"email":"Server.Buyer@Example.com","phone":"+44 20 7946 0958","ip":"203.0.113.50"},"properties":{"currency":"USD","value":99.5}}]}`,
		map[string]string{"Authorization": "Bearer e2e-key", "Content-Type": "application/json"})
	if resp.StatusCode != 200 || ans["accepted"] != 1.0 {
		t.Fatalf("server batch: %d %v", resp.StatusCode, ans)
	}

	wantSubjects := map[string]bool{"tw.events.demo.PageView": true, "tw.events.demo.AddToCart": true, "tw.events.demo.CompletePayment": true}
	for range 3 {
		m, err := live.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !wantSubjects[m.Subject] {
			t.Errorf("unexpected subject %s", m.Subject)
		}
		delete(wantSubjects, m.Subject)
		checkNoRawPII(t, m.Data)
		var env event.Envelope
		if err := json.Unmarshal(m.Data, &env); err != nil {
			t.Fatal(err)
		}
		switch env.Source {
		case event.SourceBrowser:
			if env.User.AnonID != cookie || len(env.User.EmailSHA256) != 64 {
				t.Errorf("browser envelope identity: %+v", env.User)
			}
		case event.SourceServer:
			if !event.IsSHA256Hex(env.User.EmailSHA256) || !event.IsSHA256Hex(env.User.PhoneSHA256) || env.User.IP != "203.0.113.0" || env.EventID != "order-1001" {
				t.Errorf("server envelope: %+v", env)
			}
		}
	}
	// `tagway tail`, as the README shows it, prints the last events as JSON lines.
	var tailOut bytes.Buffer
	if err := run(t.Context(), []string{"tail", "--nats", ep.nats, "--last", "2"}, &tailOut, io.Discard, envFunc(nil)); err != nil {
		t.Fatalf("tail: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(tailOut.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("tail --last 2 printed %d lines:\n%s", len(lines), tailOut.String())
	}
	var line struct {
		Seq     uint64
		Subject string
		Data    event.Envelope
	}
	if err := json.Unmarshal([]byte(lines[1]), &line); err != nil || line.Seq != 3 || line.Subject != "tw.events.demo.CompletePayment" || line.Data.EventID != "order-1001" {
		t.Fatalf("tail line %q: %v", lines[1], err)
	}

	if logs := stderr.String(); strings.Contains(strings.ToLower(logs), "example.com") || strings.Contains(logs, "7946") {
		t.Errorf("raw personal data in the logs:\n%s", logs)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve returned %v", err)
	}

	// Restart on the same data directory: every accepted event is still there.
	ep, stop, _ = startServe(t, dir, map[string]string{"TAGWAY_DEMO_KEY": "e2e-key"})
	msgs := readEvents(t, ep.nats)
	if len(msgs) != 3 {
		t.Fatalf("after restart the stream holds %d events, want 3", len(msgs))
	}
	for _, m := range msgs {
		checkNoRawPII(t, m.Data)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func checkNoRawPII(t *testing.T, data []byte) {
	t.Helper()
	low := strings.ToLower(string(data))
	for _, raw := range []string{"example.com", "browser.user", "server.buyer", "7946", "203.0.113.50"} {
		if strings.Contains(low, raw) {
			t.Errorf("envelope carries raw %q: %s", raw, data)
		}
	}
}

// TestDedupAcrossRestart is the dedup issue's acceptance 3: the server copy,
// a restart on the same data directory, then the browser copy: one event in
// the stream, the browser's identifiers linked to it.
func TestDedupAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"TAGWAY_DEMO_KEY": "k"}
	ep, stop, _ := startServe(t, dir, env)
	resp, ans := post(t, ep.public+"/v1/events", `{"site":"demo","data":[{"event":"CompletePayment","event_id":"order-77","user":{"email":"a@b.example"}}]}`,
		map[string]string{"Authorization": "Bearer k", "Content-Type": "application/json"})
	if resp.StatusCode != 200 || ans["accepted"] != 1.0 {
		t.Fatalf("server copy: %d %v", resp.StatusCode, ans)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ep, stop, _ = startServe(t, dir, env)
	defer stop()
	resp, ans = post(t, ep.public+"/e", `{"site":"demo","data":[{"event":"CompletePayment","event_id":"order-77"}]}`,
		map[string]string{"Content-Type": "text/plain", "Cookie": "_tw_id=0123456789abcdef0123456789abcdef"})
	if resp.StatusCode != 200 || ans["accepted"] != 0.0 || ans["duplicates"] != 1.0 {
		t.Fatalf("browser copy after restart: %d %v", resp.StatusCode, ans)
	}
	if n := len(readEvents(t, ep.nats)); n != 1 {
		t.Fatalf("%d events in the stream, want 1", n)
	}
	nc, err := nats.Connect(ep.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	links := bustest.ReadStream(t, js, bus.IdentityStream)
	if len(links) != 1 || !strings.Contains(string(links[0].Data), `"anon_id":"0123456789abcdef0123456789abcdef"`) {
		t.Fatalf("identity links: %d %+v", len(links), links)
	}
}
