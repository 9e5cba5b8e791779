package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/bus/bustest"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestNATSOutage: with an external NATS that goes away, requests get 503 with
// Retry-After and nothing is reported accepted; /readyz fails; when NATS
// returns, requests succeed again without restarting the gateway, and every
// event reported accepted is in the stream.
func TestNATSOutage(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	ns := bustest.RunServer(t, port, dir)
	url := ns.ClientURL()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{URL: url, PublishTimeout: 2e9}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tg := startGatewayOn(t, b, nil)
	reg := prometheus.NewRegistry()
	admin, err := NewAdmin(AdminConfig{Listen: "127.0.0.1:0"}, reg, []Check{{Name: "nats", Check: b.Ready}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Start(); err != nil {
		t.Fatal(err)
	}
	defer admin.Shutdown(context.Background())
	readyz := func() int {
		resp, err := http.Get("http://" + admin.Addr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	accepted, refused := 0, 0
	post := func(id string) (*http.Response, answer) {
		resp, a := tg.postServer(t, `{"site":"shop","data":[{"event":"Lead","event_id":"`+id+`"}]}`)
		accepted += a.Accepted
		if resp.StatusCode == 503 {
			refused++
		}
		return resp, a
	}
	if resp, a := post("before"); resp.StatusCode != 200 || a.Accepted != 1 {
		t.Fatalf("before the outage: %d %+v", resp.StatusCode, a)
	}
	if readyz() != 200 {
		t.Fatal("not ready before the outage")
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	for i := 0; i < 5; i++ {
		resp, a := post("during-" + string(rune('a'+i)))
		if resp.StatusCode != 503 || a.Accepted != 0 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("during the outage: %d %+v (Retry-After %q)", resp.StatusCode, a, resp.Header.Get("Retry-After"))
		}
		if len(a.Errors) != 1 || !strings.Contains(a.Errors[0].Message, "retry") {
			t.Fatalf("503 answer should say the event was not stored: %+v", a.Errors)
		}
	}
	resp, _ := tg.postBrowser(t, `{"site":"shop","data":[{"event":"PageView"}]}`, nil)
	if resp.StatusCode != 503 {
		t.Fatalf("browser batch during the outage: %d", resp.StatusCode)
	}
	if readyz() != 503 {
		t.Fatal("/readyz still ok while NATS is down")
	}

	bustest.RunServer(t, port, dir) // same port, same store: NATS is back
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, a := post("after")
		if resp.StatusCode == 200 && a.Accepted == 1 {
			break
		}
		if resp.StatusCode != 503 {
			t.Fatalf("while reconnecting: %d %+v", resp.StatusCode, a)
		}
		if time.Now().After(deadline) {
			t.Fatal("requests still fail 20s after NATS came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if readyz() != 200 {
		t.Fatal("not ready after NATS came back")
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != accepted || accepted != 2 {
		t.Fatalf("stream holds %d events, %d were reported accepted (want 2)", len(envs), accepted)
	}
	if got := tg.counter(t, "tagway_events_total", map[string]string{"source": "server", "disposition": "unavailable"}); got != float64(refused) || refused < 5 {
		t.Errorf("unavailable events counted %v, want %d (at least 5)", got, refused)
	}
}
