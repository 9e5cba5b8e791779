// Package bus connects Tagway to NATS JetStream: it starts the embedded
// nats-server (the default) or dials an external cluster, creates the streams
// Tagway needs, and publishes batches durably, waiting for every PubAck.
//
// Streams: TW_EVENTS holds tw.events.<site>.<event>, TW_IDENTITY holds
// tw.identity.<site> (DESIGN.md). With no URL
// configured the embedded server keeps JetStream under <data>/nats and also
// listens on Config.Listen so other programs can subscribe.
//
// A *Bus is safe for concurrent use. Logs go to the logger given to Open with
// component=bus; it publishes no metrics of its own (callers time PublishBatch).
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/units"
)

// Stream and subject names (a contract: DESIGN.md).
const (
	EventsStream     = "TW_EVENTS"
	EventsSubjects   = "tw.events.>"
	IdentityStream   = "TW_IDENTITY"
	IdentitySubjects = "tw.identity.>"
	ConsentStream    = "TW_CONSENT"
	ConsentSubjects  = "tw.consent.>"
)

// Sentinel errors.
var (
	// ErrUnavailable means NATS is not connected or did not acknowledge in
	// time: nothing can be stored now, try again later.
	ErrUnavailable = errors.New("bus: nats unavailable")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("bus: closed")
)

// Config says how to reach NATS. The zero value runs an embedded server that
// does not listen on TCP; cmd/tagway sets Listen to 127.0.0.1:4222.
type Config struct {
	// URL of an external NATS cluster (comma-separated for several seeds).
	// Empty: start an embedded server. Default "".
	URL string `yaml:"url"`
	// Listen is where the embedded server accepts clients, host:port; port 0
	// picks a free one; "" or "off" accepts in-process connections only.
	// Default 127.0.0.1:4222 (set by cmd/tagway).
	Listen string `yaml:"listen"`
	// CredsFile is a NATS credentials file for an external cluster. Default "".
	CredsFile string `yaml:"creds_file"`
	// PublishTimeout bounds the wait for a batch's PubAcks. Default 5s.
	PublishTimeout units.Duration `yaml:"publish_timeout"`
	// MaxPending caps unacknowledged async publishes; past it a publish waits
	// briefly then fails with ErrUnavailable. Default 8192.
	MaxPending int `yaml:"max_pending"`
	// SyncAlways makes the embedded server fsync every write (survives power
	// loss, not only process crashes; slower). Default false.
	SyncAlways bool `yaml:"sync_always"`
	// Events configures the TW_EVENTS stream.
	Events StreamConfig `yaml:"events"`
	// Identity configures TW_IDENTITY (tw.identity.<site>): identity links
	// learned from duplicate copies. Default max_age 30d.
	Identity StreamConfig `yaml:"identity"`
	// Consent configures TW_CONSENT (tw.consent.<site>): consent state
	// changes. Default max_age 30d (the audit log is the record of truth).
	Consent StreamConfig `yaml:"consent"`
}

// StreamConfig is what can be tuned on a stream.
type StreamConfig struct {
	// MaxAge is how long messages are kept. Default 7 days.
	MaxAge units.Duration `yaml:"max_age"`
	// MaxBytes caps the stream's size; the oldest messages go first. 0 means
	// unlimited. Default 0.
	MaxBytes int64 `yaml:"max_bytes"`
	// Replicas is the stream's replication factor (3 on a cluster). Default 1.
	Replicas int `yaml:"replicas"`
	// DuplicateWindow is JetStream's own Nats-Msg-Id window: a guard against
	// publish retries, not the 48 h dedup horizon. Default 15s. The broker
	// keeps ~180 bytes of memory per message inside it, and every GC cycle
	// marks them: at the edge's peak, 15 s instead of 30 s took 10–20 % off
	// the server's CPU per event (two interleaved 30 s runs).
	DuplicateWindow units.Duration `yaml:"duplicate_window"`
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.PublishTimeout == 0 {
		c.PublishTimeout = units.Duration(5 * time.Second)
	}
	if c.MaxPending == 0 {
		c.MaxPending = 8192
	}
	c.Events.setDefaults(7 * 24 * time.Hour)
	c.Identity.setDefaults(30 * 24 * time.Hour)
	c.Consent.setDefaults(30 * 24 * time.Hour)
}

func (s *StreamConfig) setDefaults(maxAge time.Duration) {
	if s.MaxAge == 0 {
		s.MaxAge = units.Duration(maxAge)
	}
	if s.Replicas == 0 {
		s.Replicas = 1
	}
	if s.DuplicateWindow == 0 {
		s.DuplicateWindow = units.Duration(15 * time.Second)
	}
}

// Validate reports the first bad value, naming its config key.
func (c *Config) Validate() error {
	if c.URL == "" && c.Listen != "" && c.Listen != "off" {
		if _, _, err := splitHostPort(c.Listen); err != nil {
			return fmt.Errorf("nats.listen: %w", err)
		}
	}
	switch {
	case c.PublishTimeout < 0:
		return errors.New("nats.publish_timeout: must be positive")
	case c.MaxPending < 0:
		return errors.New("nats.max_pending: must be positive")
	}
	if err := c.Events.validate("nats.events"); err != nil {
		return err
	}
	if err := c.Identity.validate("nats.identity"); err != nil {
		return err
	}
	return c.Consent.validate("nats.consent")
}

func (s *StreamConfig) validate(key string) error {
	switch {
	case s.MaxAge < 0:
		return errors.New(key + ".max_age: must be positive")
	case s.MaxBytes < 0:
		return errors.New(key + ".max_bytes: must be 0 (unlimited) or positive")
	case s.Replicas < 0 || s.Replicas > 5:
		return errors.New(key + ".replicas: must be 1 to 5")
	case s.DuplicateWindow < 0 || (s.MaxAge > 0 && s.DuplicateWindow > s.MaxAge):
		return errors.New(key + ".duplicate_window: must be positive and at most max_age")
	}
	return nil
}

func splitHostPort(s string) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return host, port, nil
}

// Bus is a live NATS connection with JetStream, and the embedded server when
// there is one.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	ns     *server.Server // nil with an external URL
	nc     *nats.Conn
	js     jetstream.JetStream
	pub    *Publisher // PublishBatch's, on nc
	closed atomic.Bool

	ensureMu sync.Mutex // serialises stream creation (start-up and reconnects)
	wg       sync.WaitGroup

	// opts dial the extra connections (Connect); extra are those open.
	opts    []nats.Option
	extraMu sync.Mutex
	extra   []*nats.Conn
}

// Open starts or dials NATS and creates the streams. dataDir is where the
// embedded server keeps JetStream (dataDir/nats).
func Open(ctx context.Context, cfg Config, dataDir string, log *slog.Logger) (*Bus, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{cfg: cfg, log: log.With("component", "bus")}

	opts := []nats.Option{
		nats.Name("tagway"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// No reconnect buffer: while disconnected a publish fails at once and
		// the client is told 503, instead of waiting for an ack that may
		// never come.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.closed.Load() {
				return // our own Close
			}
			b.log.Warn("nats disconnected; publishing answers 503 until it reconnects", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			// A restarted server may have lost its streams (memory or a new
			// store): create them again.
			if b.closed.Load() {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := b.EnsureStreams(ctx); err != nil && !b.closed.Load() {
					b.log.Error("re-creating streams after reconnect", "err", err)
				}
			}()
		}),
	}
	if cfg.URL == "" {
		ns, err := startEmbedded(cfg, filepath.Join(dataDir, "nats"))
		if err != nil {
			return nil, err
		}
		b.ns = ns
		// In process, with a write buffer in front of the pipe: see
		// bufferedPipe. (Over the loopback listener, tried first, the
		// requests no longer queued on the connection's lock either, but
		// every flush was a system call: socket reads and writes took
		// ~1-1.5 % of the CPU in full-pipeline profiles.)
		opts = append(opts, nats.InProcessServer(inProcess{ns}))
	} else {
		if cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		}
	}
	b.opts = opts
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("bus: connecting to nats %s: %w", redact(cfg.URL), err)
	}
	b.nc = nc
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout.D()),
	)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	b.js = js
	if b.pub, err = NewPublisher(nc, cfg.PublishTimeout.D(), cfg.MaxPending); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.EnsureStreams(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func redact(url string) string {
	if url == "" {
		return "(embedded)"
	}
	return url
}

// startEmbedded starts the in-process server.
//
// NoSublistCache: nats-server caches each subject's match in a map per
// account, filled under the account sublist's write lock and swept in a
// goroutine of its own once it passes 1 024 subjects. Tagway's traffic is
// mostly subjects seen once: every PubAck's reply inbox and every
// JetStream ack subject ($JS.ACK.<stream>.<consumer>.<seqs>…) is unique,
// so nearly every match missed, took the write lock to insert, and
// triggered sweeps, and every other match (the publishes' own subjects)
// queued behind them: in the open loop's execution trace the broker's
// goroutines waited on that lock most while Badger's compactions took the
// CPU from whoever held it. With tens of subscriptions a match without the
// cache is a walk of a few trie levels under the read lock.
func startEmbedded(cfg Config, storeDir string) (*server.Server, error) {
	o := &server.Options{
		ServerName:             "tagway",
		JetStream:              true,
		StoreDir:               storeDir,
		SyncAlways:             cfg.SyncAlways,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
		MaxPayload:             8 << 20,
		NoSublistCache:         true,
	}
	if cfg.Listen == "" || cfg.Listen == "off" {
		o.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats.listen: %w", err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		o.Host, o.Port = host, port
	}
	ns, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("bus: embedded nats did not start (is %s in use?)", cfg.Listen)
	}
	return ns, nil
}

// EnsureStreams creates the streams or updates their settings; calling it
// again is harmless.
func (b *Bus) EnsureStreams(ctx context.Context) error {
	b.ensureMu.Lock()
	defer b.ensureMu.Unlock()
	for _, st := range []struct {
		name, subjects, desc string
		cfg                  StreamConfig
	}{
		{EventsStream, EventsSubjects, "Tagway accepted events (tw.events.<site>.<event>)", b.cfg.Events},
		{IdentityStream, IdentitySubjects, "Tagway identity links (tw.identity.<site>)", b.cfg.Identity},
		{ConsentStream, ConsentSubjects, "Tagway consent state changes (tw.consent.<site>)", b.cfg.Consent},
	} {
		sc := jetstream.StreamConfig{
			Name:        st.name,
			Description: st.desc,
			Subjects:    []string{st.subjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      st.cfg.MaxAge.D(),
			MaxBytes:    st.cfg.MaxBytes,
			Replicas:    st.cfg.Replicas,
			Duplicates:  st.cfg.DuplicateWindow.D(),
		}
		if sc.MaxBytes == 0 {
			sc.MaxBytes = -1
		}
		if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("bus: creating stream %s: %w", st.name, err)
		}
	}
	return nil
}

// Msg is one message to publish durably.
type Msg struct {
	Subject string
	// MsgID goes in the Nats-Msg-Id header (JetStream's duplicate window).
	MsgID string
	Data  []byte
	// Header holds headers of the caller's own, or is nil. Publishing adds
	// Nats-Msg-Id to it for the call's duration.
	Header nats.Header
}

// Ack is the outcome of publishing one Msg.
type Ack struct {
	// Err is nil when the stream stored the message.
	Err error
	// Duplicate is true when the stream already held a message with the same
	// MsgID within its duplicate window (stored once, not twice).
	Duplicate bool
	Seq       uint64
	// Unsure, with Err: the message was sent but no answer came (a PubAck
	// timeout, a dropped connection), so the stream may have stored it.
	// Publishing it again with the same MsgID within the stream's duplicate
	// window finds out. Without Unsure, an Err means it was not stored.
	Unsure bool
}

// PublishBatch publishes msgs asynchronously and waits until every one is
// acknowledged, failed, or ctx / the publish timeout ends. acks[i] is msgs[i]'s
// outcome. It never reports success for a message the stream did not confirm.
func (b *Bus) PublishBatch(ctx context.Context, msgs []Msg, acks []Ack) {
	if b.closed.Load() {
		for i := range acks {
			acks[i] = Ack{Err: ErrClosed}
		}
		return
	}
	if !b.nc.IsConnected() {
		for i := range acks {
			acks[i] = Ack{Err: ErrUnavailable}
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout.D()+time.Second)
	defer cancel()
	b.pub.PublishWait(ctx, msgs, acks)
}

// Connected reports whether the NATS connection is up.
func (b *Bus) Connected() bool { return !b.closed.Load() && b.nc.IsConnected() }

// Ready checks that NATS is connected and the streams exist.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.Connected() {
		return ErrUnavailable
	}
	for _, name := range []string{EventsStream, IdentityStream, ConsentStream} {
		if _, err := b.js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return nil
}

// Conn returns the NATS connection (for consumers in other packages).
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream returns the JetStream context.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Connect opens another connection to the same NATS, named
// "tagway-<name>", for a consumer: one connection is one reader and one
// writer on each side, and one lock in the client. Shared, the edge's
// PubAcks queued behind the consumers' deliveries and acks (a load run's
// goroutine dump had 26 routes waiting on the connection's lock). Shutdown
// closes it, before the embedded server stops.
func (b *Bus) Connect(name string) (jetstream.JetStream, error) {
	if b.closed.Load() {
		return nil, ErrUnavailable
	}
	opts := append(slices.Clone(b.opts), nats.Name("tagway-"+name))
	nc, err := nats.Connect(b.cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connecting to nats %s for %s: %w", redact(b.cfg.URL), name, err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(b.cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(b.cfg.PublishTimeout.D()),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: jetstream for %s: %w", name, err)
	}
	b.extraMu.Lock()
	b.extra = append(b.extra, nc)
	b.extraMu.Unlock()
	return js, nil
}

// ClientURL is where other programs reach NATS: the embedded server's TCP
// address, or the configured URL. "" when the embedded server does not listen.
func (b *Bus) ClientURL() string {
	if b.ns == nil {
		return b.cfg.URL
	}
	if a, ok := b.ns.Addr().(*net.TCPAddr); ok && a != nil {
		return fmt.Sprintf("nats://%s", net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port)))
	}
	return ""
}

// Embedded reports whether Tagway runs its own NATS server.
func (b *Bus) Embedded() bool { return b.ns != nil }

// Close waits for outstanding PubAcks (bounded by ctx), drains and closes the
// connection, then shuts the embedded server down. Safe to call twice.
func (b *Bus) Close() error { return b.Shutdown(context.Background()) }

// Shutdown is Close bounded by ctx.
func (b *Bus) Shutdown(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	var err error
	if b.pub != nil {
		err = b.pub.Close(ctx)
	}
	b.extraMu.Lock()
	for _, nc := range b.extra {
		nc.Close()
	}
	b.extra = nil
	b.extraMu.Unlock()
	if b.nc != nil {
		b.nc.Close()
	}
	b.wg.Wait()
	b.shutdownServer()
	return err
}

func (b *Bus) shutdownServer() {
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
}
