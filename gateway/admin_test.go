package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAdminRefusesOpenListenerWithoutToken(t *testing.T) {
	for _, l := range []string{"0.0.0.0:8081", ":8081", "10.1.2.3:8081", "[::]:8081"} {
		if _, err := NewAdmin(AdminConfig{Listen: l}, prometheus.NewRegistry(), nil, nil); !errors.Is(err, ErrAdminToken) {
			t.Errorf("%s without token: err = %v, want ErrAdminToken", l, err)
		}
	}
	for _, l := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		if _, err := NewAdmin(AdminConfig{Listen: l}, prometheus.NewRegistry(), nil, nil); err != nil {
			t.Errorf("%s: %v", l, err)
		}
	}
	if _, err := NewAdmin(AdminConfig{Listen: "0.0.0.0:0", Token: "s3cret"}, prometheus.NewRegistry(), nil, nil); err != nil {
		t.Errorf("non-loopback with a token: %v", err)
	}
}

func TestAdminTokenAndRoutes(t *testing.T) {
	tg := startGateway(t, nil)
	tg.postServer(t, `{"site":"shop","data":[`+goodEvent+`]}`)
	a, err := NewAdmin(AdminConfig{Listen: "127.0.0.1:0", Token: "s3cret"}, tg.reg, []Check{
		{Name: "nats", Check: tg.bus.Ready},
		{Name: "broken", Check: func(context.Context) error { return errors.New("disk on fire") }},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	base := "http://" + a.Addr().String()
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz", ""); code != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	if code, body := get("/readyz", ""); code != 503 || !strings.Contains(body, "nats: ok") || !strings.Contains(body, "broken: disk on fire") {
		t.Fatalf("readyz: %d %q", code, body)
	}
	for _, p := range []string{"/metrics", "/debug/pprof/"} {
		if code, _ := get(p, ""); code != 401 {
			t.Errorf("%s without token: %d", p, code)
		}
		if code, _ := get(p, "wrong"); code != 401 {
			t.Errorf("%s with a wrong token: %d", p, code)
		}
	}
	code, body := get("/metrics", "s3cret")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`tagway_http_requests_total{code="200",route="v1_events"} 1`,
		`tagway_events_total{disposition="accepted",source="server"} 1`,
		`tagway_http_request_duration_seconds_bucket{route="v1_events"`,
		`tagway_publish_duration_seconds_count 1`,
		`tagway_http_in_flight_requests 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if code, _ := get("/debug/pprof/", "s3cret"); code != 200 {
		t.Errorf("pprof index: %d", code)
	}
}

// A connection that sends nothing (a browser's preconnect) or sits idle
// after a request must not hold a shutdown: fasthttp alone would wait 5 s for
// the first and the read timeout for the second.
func TestShutdownClosesUnbusyConnections(t *testing.T) {
	tg := startGateway(t, nil)
	silent, err := net.Dial("tcp", tg.g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	kept, err := net.Dial("tcp", tg.g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	_, _ = io.WriteString(kept, "GET /t.js HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 1024)
	if _, err := kept.Read(buf); err != nil { // answered; now idle
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tg.g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v with an idle and a silent connection", d)
	}
}
