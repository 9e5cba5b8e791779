package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Listen is host:port. Default "127.0.0.1:8081".
	Listen string `yaml:"listen"`
	// TokenEnv names the environment variable holding the bearer token.
	// Default "TAGWAY_ADMIN_TOKEN".
	TokenEnv string `yaml:"token_env"`
	// Token is the bearer token itself (filled by cmd/tagway from TokenEnv;
	// never put it in the YAML file).
	Token string `yaml:"-"`
}

// ErrAdminToken is returned when the admin listener would be reachable from
// other hosts without a token.
var ErrAdminToken = errors.New("admin.listen: a non-loopback admin listener needs a bearer token (set the variable named by admin.token_env, default TAGWAY_ADMIN_TOKEN)")

// SetDefaults fills zero fields.
func (c *AdminConfig) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8081"
	}
	if c.TokenEnv == "" {
		c.TokenEnv = "TAGWAY_ADMIN_TOKEN"
	}
}

// Validate refuses a non-loopback listener without a token.
func (c *AdminConfig) Validate() error {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	if c.Token == "" && !isLoopback(host) {
		return ErrAdminToken
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Check is one readiness check: nil when ready.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Admin serves /healthz, /readyz, /metrics and /debug/pprof/ (net/http: it is
// not on the hot path, and pprof and promhttp are net/http handlers). /healthz
// and /readyz answer without a token (for probes); everything else needs
// "Authorization: Bearer <token>" when a token is set.
type Admin struct {
	cfg    AdminConfig
	log    *slog.Logger
	srv    *http.Server
	ln     net.Listener
	checks []Check
	mux    *http.ServeMux
	once   sync.Once
	err    chan error
}

// NewAdmin builds the admin server. gatherer is what /metrics exposes.
func NewAdmin(cfg AdminConfig, gatherer prometheus.Gatherer, checks []Check, log *slog.Logger) (*Admin, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Admin{cfg: cfg, log: log.With("component", "admin"), checks: checks, mux: http.NewServeMux(), err: make(chan error, 1)}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.Handle("GET /metrics", a.auth(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slogPrinter{a.log}})))
	a.mux.Handle("/debug/pprof/", a.auth(http.HandlerFunc(pprof.Index)))
	a.mux.Handle("/debug/pprof/cmdline", a.auth(http.HandlerFunc(pprof.Cmdline)))
	a.mux.Handle("/debug/pprof/profile", a.auth(http.HandlerFunc(pprof.Profile)))
	a.mux.Handle("/debug/pprof/symbol", a.auth(http.HandlerFunc(pprof.Symbol)))
	a.mux.Handle("/debug/pprof/trace", a.auth(http.HandlerFunc(pprof.Trace)))
	a.srv = &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second}
	return a, nil
}

// Handle adds a route (for the /admin/ API that later packages add); it is
// always behind the token.
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, a.auth(h)) }

// Start listens and serves in the background.
func (a *Admin) Start() error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", a.cfg.Listen, err)
	}
	a.ln = ln
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.err <- err
		}
	}()
	return nil
}

// Addr is the listening address (after Start).
func (a *Admin) Addr() net.Addr {
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// Err yields an error if serving stops unexpectedly.
func (a *Admin) Err() <-chan error { return a.err }

// Shutdown stops the admin server. Safe to call twice.
func (a *Admin) Shutdown(ctx context.Context) error {
	var err error
	a.once.Do(func() { err = a.srv.Shutdown(ctx) })
	return err
}

func (a *Admin) auth(h http.Handler) http.Handler {
	if a.cfg.Token == "" {
		return h
	}
	want := []byte("Bearer " + a.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tagway-admin"`)
			http.Error(w, "unauthorized: Authorization: Bearer <admin token> required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *Admin) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var b strings.Builder
	status := http.StatusOK
	for _, c := range a.checks {
		if err := c.Check(ctx); err != nil {
			status = http.StatusServiceUnavailable
			fmt.Fprintf(&b, "%s: %v\n", c.Name, err)
		} else {
			fmt.Fprintf(&b, "%s: ok\n", c.Name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

type slogPrinter struct{ l *slog.Logger }

func (s slogPrinter) Println(v ...any) { s.l.Error(fmt.Sprint(v...)) }
