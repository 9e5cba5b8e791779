package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/consent/audit"
	"github.com/tagway/tagway/forward"
	"github.com/tagway/tagway/gateway"
	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/dedup"
	"github.com/tagway/tagway/gateway/kv"
	"github.com/tagway/tagway/segments"
)

// serve runs the gateway until ctx ends (SIGINT/SIGTERM), then drains in this
// order: stop accepting and finish in-flight requests (each waits for its
// PubAcks) → stop segments (the batch in hand is stored and acknowledged)
// → stop the forwarder (requests in flight finish) → wait for any outstanding PubAcks → close NATS (and the embedded
// server) → stop the admin listener → stop audit pruning → close Badger.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg, err := loadServeConfig(args, stderr, getenv)
	if err != nil {
		return err
	}
	if cfg.checkOnly {
		fmt.Fprintf(stdout, "config ok (%s)\n", cfg)
		return nil
	}
	log := newLogger(cfg.Log, stderr)

	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	store, err := kv.Open(filepath.Join(cfg.Data, "badger"), cfg.Badger, log)
	if err != nil {
		return err
	}
	defer store.Close()

	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	b, err := bus.Open(startCtx, cfg.NATS, cfg.Data, log)
	cancel()
	if err != nil {
		return err
	}
	defer b.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := store.Register(reg); err != nil {
		return err
	}
	dd, err := dedup.New(cfg.Dedup, store.DB(), reg, nil, log)
	if err != nil {
		return err
	}
	if err := recoverDedup(ctx, dd, b, cfg, log); err != nil {
		// Serving matters more: only a late retry of an event stored just
		// before the crash could be accepted twice.
		log.Error("could not write the dedup records the last, unclean stop may have left unwritten; a late retry of an event stored just before it may be accepted twice", "err", err)
	}
	auditLog := audit.New(store.DB(), nil)
	if err := recordPolicy(auditLog, cfg); err != nil {
		return err
	}
	engine, err := consent.NewEngine(cfg.Consent, store.DB(), auditLog, dd, nil, log)
	if err != nil {
		return err
	}
	engine.Register(reg)
	pruneCtx, stopPruning := context.WithCancel(context.Background())
	pruned := make(chan struct{})
	go func() { // audit retention: at start-up, then daily; stopped before Badger closes
		defer close(pruned)
		pruneAudit(pruneCtx, auditLog, cfg.Consent.AuditRetention.D(), log)
	}()
	defer func() { stopPruning(); <-pruned }()
	var seg *segments.Engine
	if len(cfg.Segments.Rules) > 0 {
		js, err := b.Connect("segments")
		if err != nil {
			return err
		}
		seg, err = segments.New(cfg.Segments, cfg.segments, segments.Deps{DB: store.DB(), JS: js, Registry: reg, Logger: log})
		if err != nil {
			return err
		}
		// Start publishes what a crash left queued and applies a rule change
		// (which can take a while on a large store) before consuming.
		if err := seg.Start(ctx); err != nil {
			return err
		}
		defer seg.Stop() // before NATS and Badger close (defers run last first)
	}
	fwdJS, err := b.Connect("forward")
	if err != nil {
		return err
	}
	fwd, err := forward.New(cfg.Forward, cfg.Destinations, forward.Deps{DB: store.DB(), JS: fwdJS, Consent: engine, Registry: reg, Logger: log})
	if err != nil {
		return err
	}
	if err := fwd.Start(ctx); err != nil {
		return err
	}
	defer func() { // before NATS and Badger close (defers run last first)
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = fwd.Shutdown(sctx)
	}()
	deps := gateway.Deps{Publisher: b, Consent: engine, Dedup: gateway.DedupStore(dd), Logger: log, Registry: reg,
		DuplicateWindow: cfg.NATS.Events.DuplicateWindow.D(), PublishWait: cfg.NATS.PublishTimeout.D() + time.Second}
	if cfg.Consent.Geo.MMDB != "" {
		geoDB, err := consent.OpenGeoDB(cfg.Consent.Geo.MMDB)
		if err != nil {
			return err
		}
		defer geoDB.Close() // after the gateway has stopped (defers run last)
		deps.GeoDB = geoDB
	}
	gw, err := gateway.New(cfg.Gateway, deps)
	if err != nil {
		return err
	}
	var draining atomic.Bool
	admin, err := gateway.NewAdmin(cfg.Admin, reg, []gateway.Check{
		{Name: "serving", Check: func(context.Context) error {
			if draining.Load() {
				return errors.New("shutting down")
			}
			return nil
		}},
		{Name: "nats", Check: b.Ready},
		{Name: "badger", Check: func(context.Context) error { return store.Ready() }},
	}, log)
	if err != nil {
		return err
	}
	admin.Handle("GET /admin/consent/decode", gateway.ConsentDecodeHandler())
	var siteIDs []string
	for _, s := range cfg.Gateway.Sites {
		siteIDs = append(siteIDs, s.ID)
	}
	for pattern, h := range gateway.AuditHandlers(auditLog, siteIDs) {
		admin.Handle(pattern, h)
	}
	stores := []gateway.NamedStore{{Name: "consent", Store: engine}, {Name: "dedup", Store: dd}}
	if seg != nil {
		stores = append(stores, gateway.NamedStore{Name: "segments", Store: seg})
		for pattern, h := range seg.Handlers(siteIDs) {
			admin.Handle(pattern, h)
		}
	}
	for pattern, h := range fwd.Handlers() {
		admin.Handle(pattern, h)
	}
	for pattern, h := range gateway.UserHandlers(stores, auditLog, dd, siteIDs) {
		admin.Handle(pattern, h)
	}
	if err := admin.Start(); err != nil {
		return err
	}
	defer admin.Shutdown(context.Background())
	if err := gw.Start(); err != nil {
		return err
	}
	printBanner(stdout, cfg, gw.Addr(), admin.Addr(), b)
	log.Info("tagway serving", "version", version, "listen", gw.Addr().String(), "admin", admin.Addr().String(),
		"nats", natsDesc(b), "data", cfg.Data, "demo", cfg.demo)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout.D().String())
	case err := <-gw.Err():
		runErr = fmt.Errorf("public listener: %w", err)
	case err := <-admin.Err():
		runErr = fmt.Errorf("admin listener: %w", err)
	}
	draining.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	if err := gw.Shutdown(sctx); err != nil {
		log.Error("stopping the public listener", "err", err)
	} else if err := dd.Closed(); err != nil { // every stored event's record is written
		log.Error("marking the dedup store closed; the next start reads back the last events", "err", err)
	}
	log.Debug("public listener stopped; in-flight requests done")
	if seg != nil {
		seg.Stop() // finishes the batch in hand while NATS is still up
		log.Debug("segments stopped")
	}
	if err := fwd.Shutdown(sctx); err != nil { // requests in flight finish; the rest is redelivered after a restart
		log.Error("stopping the forwarder", "err", err)
	}
	log.Debug("forwarder stopped")
	if err := b.Shutdown(sctx); err != nil {
		log.Error("closing nats", "err", err)
	}
	log.Debug("nats closed")
	if err := admin.Shutdown(sctx); err != nil {
		log.Error("stopping the admin listener", "err", err)
	}
	log.Debug("admin listener stopped")
	stopPruning()
	<-pruned // before Badger closes under it
	if err := store.Close(); err != nil {
		log.Error("closing badger", "err", err)
	}
	log.Info("stopped")
	return runErr
}

// pruneAudit deletes audit records older than retention at start and then
// daily, until ctx ends. retention 0 keeps everything.
func pruneAudit(ctx context.Context, l *audit.Log, retention time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(24 * time.Hour)
	defer t.Stop()
	for {
		if n, err := l.Prune(time.Now().Add(-retention)); err != nil {
			log.Error("pruning the audit log", "err", err)
		} else if n > 0 {
			log.Info("audit log pruned", "records", n, "retention", retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recordPolicy writes the consent policy in force to the audit log when it
// differs from the last one recorded, so the log shows under which policy
// every later decision was made.
func recordPolicy(l *audit.Log, cfg *serveConfig) error {
	data, err := json.Marshal(map[string]any{"default_regime": cfg.Consent.DefaultRegime, "policy": cfg.Consent.Policy})
	if err != nil {
		return err
	}
	last, err := l.Last(audit.KindPolicy)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if last != nil && bytes.Equal(last.Data, data) {
		return nil
	}
	if err := l.Append(&audit.Record{Kind: audit.KindPolicy, Source: "admin", Data: data}); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

func newLogger(c logConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level)) // validated in finish
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func natsDesc(b *bus.Bus) string {
	if b.Embedded() {
		if u := b.ClientURL(); u != "" {
			return "embedded " + u
		}
		return "embedded (in-process only)"
	}
	return b.ClientURL()
}

// httpURL turns a listening address into a URL a person can open.
func httpURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// printBanner tells a new user what is being served, once, on stdout.
func printBanner(w io.Writer, cfg *serveConfig, pub, adm net.Addr, b *bus.Bus) {
	u := httpURL(pub)
	fmt.Fprintf(w, "Tagway %s\n", version)
	if cfg.demo {
		fmt.Fprintf(w, "  demo mode (no --config): site \"demo\", server source \"demo\"\n")
		fmt.Fprintf(w, "  demo API key     %s\n", cfg.demoKey)
	}
	if cfg.demo {
		fmt.Fprintf(w, "  demo page        %s/demo\n", u)
	}
	fmt.Fprintf(w, "  tag              %s/t.js\n", u)
	fmt.Fprintf(w, "  browser events   POST %s/e\n", u)
	fmt.Fprintf(w, "  pixel            GET  %s/p.gif?site=…&event=PageView\n", u)
	fmt.Fprintf(w, "  server events    POST %s/v1/events  (Authorization: Bearer <key>)\n", u)
	fmt.Fprintf(w, "  admin            %s/metrics  /readyz  /healthz\n", httpURL(adm))
	fmt.Fprintf(w, "  NATS             %s  (stream %s, subjects %s)\n", natsDesc(b), bus.EventsStream, bus.EventsSubjects)
	fmt.Fprintf(w, "  data             %s\n", cfg.Data)
}

// recoverDedup marks the dedup store in use and, if the process before
// did not stop cleanly, writes the records of events it may have stored
// without them (a kill between a PubAck and the record's write): the last
// events of TW_EVENTS, over the resolver's window, one publish wait and a
// margin for a slow write.
func recoverDedup(ctx context.Context, dd *dedup.Store, b *bus.Bus, cfg *serveConfig, log *slog.Logger) error {
	unclean, err := dd.Opened()
	if err != nil || !unclean {
		return err
	}
	log.Info("the last stop was not clean: reading back the last events for dedup records left unwritten")
	span := cfg.NATS.Events.DuplicateWindow.D() + cfg.NATS.PublishTimeout.D() + 15*time.Second
	t0 := time.Now()
	n, written, err := dd.Recover(func(fn func([]byte) error) (int, error) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return bus.ReadLast(rctx, b.JetStream(), bus.EventsStream, span, fn)
	})
	if err != nil {
		return fmt.Errorf("after an unclean stop: %w", err)
	}
	log.Info("read back the last events and wrote their missing dedup records",
		"span", span.String(), "events", n, "records_written", written, "took", time.Since(t0).Round(time.Millisecond).String())
	return nil
}
