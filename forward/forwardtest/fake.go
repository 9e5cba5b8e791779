package forwardtest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sentinel errors found in Request.Err for requests the fake failed on
// purpose; validation failures are *APIError instead.
var (
	// ErrChaos wraps the error of a request failed by SetChaos.
	ErrChaos = errors.New("forwardtest: chaos")
	// ErrForced wraps the error of a request failed by RejectNext or
	// RejectEvents.
	ErrForced = errors.New("forwardtest: forced rejection")
)

// maxBody caps how much of a request body a fake reads. Neither API's
// documentation found states a byte limit (not confirmed); 16 MiB is far
// above 1,000 events and only protects the test process.
const maxBody = 16 << 20

// Request is one request a fake received, as it was answered.
type Request struct {
	Time     time.Time   // when it arrived (the fake's clock, see SetNow)
	Method   string      // HTTP method
	Path     string      // URL path
	Query    string      // raw query string (Meta may carry access_token here)
	Header   http.Header // request headers
	Body     []byte      // request body, gunzipped when the fake accepts gzip
	Status   int         // HTTP status answered; 0 when the connection was dropped
	Response []byte      // body answered; nil when the connection was dropped
	// Err is nil when the request was accepted (validated, events recorded).
	// Otherwise it is an *APIError for a validation or authentication
	// failure, or wraps ErrChaos or ErrForced.
	Err      error
	Chaos    ChaosKind // the chaos applied, "" if none
	Events   int       // number of events in data[] (0 if unparseable)
	EventIDs []string  // the event_id of each event in data[], "" when absent
}

// Accepted reports whether the request was accepted.
func (r Request) Accepted() bool { return r.Err == nil }

// APIError is a rejection answered in the API's own format.
type APIError struct {
	API     string // "tiktok" or "meta"
	Status  int    // HTTP status answered
	Code    int    // TikTok "code" / Graph API error.code
	Subcode int    // Graph API error.error_subcode, 0 if none
	Type    string // Graph API error.type ("OAuthException", …), "" for TikTok
	Title   string // Graph API error.error_user_title, "" if none
	// Message is TikTok's "message", or Graph API error.error_user_msg (or
	// error.message when there is no user message).
	Message string
	Field   string // offending field ("data.0.event_time", "data[0].user_data.em"), "" if request-level
	Index   int    // data[] index of the offending event, -1 if request-level
}

func (e *APIError) Error() string {
	sub := ""
	if e.Subcode != 0 {
		sub = "/" + strconv.Itoa(e.Subcode)
	}
	return fmt.Sprintf("forwardtest: %s rejected (HTTP %d, code %d%s): %s", e.API, e.Status, e.Code, sub, e.Message)
}

// ChaosKind is one way SetChaos fails a request.
type ChaosKind string

// The chaos kinds.
const (
	// Status500 answers HTTP 500 with the API's own "internal error" body.
	Status500 ChaosKind = "status_500"
	// Status429 answers HTTP 429 with a Retry-After header (whole seconds)
	// and the API's own rate-limit body.
	Status429 ChaosKind = "status_429"
	// Timeout holds the request for Chaos.Hold (or until the client gives
	// up), then closes the connection without answering.
	Timeout ChaosKind = "timeout"
	// DropConnection hijacks the connection and closes it without answering.
	DropConnection ChaosKind = "drop_connection"
)

// Chaos makes a fake fail a random fraction of requests. The zero value
// disables it.
type Chaos struct {
	Rate  float64     // fraction of requests to fail, 0..1
	Seed  uint64      // seed of the random choice; the same seed gives the same sequence
	Kinds []ChaosKind // kinds to choose from, uniformly; empty means Status500
	// RetryAfter is the Retry-After of Status429 answers, rounded up to
	// whole seconds; default 1s.
	RetryAfter time.Duration
	// Hold is how long a Timeout request is held before its connection is
	// dropped; default 2s. Give the client under test a shorter timeout.
	Hold time.Duration
}

// Option configures a fake.
type Option func(*config)

type config struct {
	gzip      bool
	maxAge    time.Duration
	maxFuture time.Duration
}

// WithGzip makes the fake accept request bodies sent with
// "Content-Encoding: gzip". Neither the TikTok Events API nor the Meta
// Conversions API documentation found says compressed request bodies are
// accepted (not confirmed), so by default a gzip body is refused the way an
// undecodable body is; enable this only to test a client's gzip path.
func WithGzip() Option { return func(c *config) { c.gzip = true } }

// WithMaxEventAge changes how old an event_time may be (default 7 days for
// both APIs; Meta's physical_store events keep their documented 62 days).
func WithMaxEventAge(d time.Duration) Option { return func(c *config) { c.maxAge = d } }

// WithMaxFutureSkew changes how far in the future an event_time may be
// (default: Meta one minute, TikTok five minutes).
func WithMaxFutureSkew(d time.Duration) Option { return func(c *config) { c.maxFuture = d } }

// env is what a validation needs from the fake at the time of a request.
type env struct {
	now    time.Time
	cfg    config
	reject func(eventID string) bool // RejectEvents predicate, nil if none
}

// answer is an API's verdict on a request.
type answer struct {
	status   int
	body     []byte
	header   http.Header // extra headers, may be nil
	err      error       // nil when accepted
	events   int
	eventIDs []string
}

// api is what differs between the TikTok and Meta fakes.
type api interface {
	// serve validates a request whose body was already read. bodyErr is set
	// when the body could not be read or decoded.
	serve(r *http.Request, body []byte, bodyErr error, e env) answer
	// errorBody is the API's own body for a failure answered with the given
	// HTTP status (forced rejections and chaos).
	errorBody(status int) (body []byte, code int)
}

// core is the machinery the TikTok and Meta fakes share: the server, the
// log, the counters, chaos and forced rejections. Lock order: only mu.
type core struct {
	srv  *httptest.Server
	api  api
	cfg  config
	done chan struct{} // closed at cleanup, releases held requests

	mu        sync.Mutex
	now       func() time.Time
	requests  int
	accepted  int
	events    int
	eventIDs  map[string]int
	log       []Request
	chaos     Chaos
	rng       *rand.Rand
	rejectN   int
	rejectSt  int
	rejectBdy string
	rejectFn  func(string) bool
	changed   chan struct{} // closed and replaced on every accepted request
}

func newCore(t testing.TB, a api, opts []Option) *core {
	t.Helper()
	c := &core{
		api:      a,
		done:     make(chan struct{}),
		now:      time.Now,
		eventIDs: map[string]int{},
		changed:  make(chan struct{}),
	}
	for _, o := range opts {
		o(&c.cfg)
	}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serveHTTP))
	t.Cleanup(func() {
		close(c.done)
		c.srv.Close()
	})
	return c
}

// URL is the base URL to configure the destination with (scheme and
// host, no path), e.g. "http://127.0.0.1:41234".
func (c *core) URL() string { return c.srv.URL }

// Client returns a new HTTP client for the fake, with a 10 s timeout; all
// share one transport.
func (c *core) Client() *http.Client {
	cl := *c.srv.Client()
	cl.Timeout = 10 * time.Second
	return &cl
}

// EventIDs returns every event_id the fake accepted, with how many times it
// was accepted (2 or more means a wire duplicate). Events without an
// event_id are counted by Events only.
func (c *core) EventIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.eventIDs))
	for k, v := range c.eventIDs {
		m[k] = v
	}
	return m
}

// Events returns the number of events in accepted requests.
func (c *core) Events() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events
}

// Requests returns the number of requests received.
func (c *core) Requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests
}

// Accepted returns the number of requests accepted.
func (c *core) Accepted() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accepted
}

// Rejected returns the number of requests not accepted, for any reason
// (validation, authentication, forced, chaos): Requests() - Accepted().
func (c *core) Rejected() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests - c.accepted
}

// Log returns every request handled so far, oldest first. A request still
// being handled (held by chaos) is not in it yet.
func (c *core) Log() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.log...)
}

// SetChaos replaces the chaos settings; Chaos{} turns chaos off. The random
// sequence restarts from ch.Seed.
func (c *core) SetChaos(ch Chaos) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.chaos = ch
	c.rng = rand.New(rand.NewPCG(ch.Seed, ch.Seed^0x9e3779b97f4a7c15))
}

// RejectNext answers the next n requests with the given HTTP status and
// body, without validating them. An empty body means the API's own error
// body for that status (TikTok: 429 → code 40100, 5xx → 50000, 401/403 →
// 40105, else 40002; Meta: 429 → code 4, 5xx → code 2, 401/403 → 190, else
// 100). A later call replaces an earlier one; n <= 0 cancels.
func (c *core) RejectNext(n, status int, body string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejectN, c.rejectSt, c.rejectBdy = max(n, 0), status, body
}

// RejectEvents rejects, after validation, every request carrying an event
// whose event_id satisfies pred, with the API's own parameter error naming
// that event (TikTok: code 40002; Meta: HTTP 400, code 100). Nil stops it.
func (c *core) RejectEvents(pred func(eventID string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejectFn = pred
}

// Accept cancels RejectNext and RejectEvents: the fake is "told to accept"
// again. Chaos is left as it is (SetChaos(Chaos{}) turns it off).
func (c *core) Accept() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejectN, c.rejectFn = 0, nil
}

// SetNow sets the clock used for the event_time checks and the log; nil
// restores time.Now.
func (c *core) SetNow(now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now == nil {
		now = time.Now
	}
	c.now = now
}

// WaitEventIDs waits until at least n distinct event_ids have been
// accepted, or timeout passes; it reports whether they were. Use it to poll
// instead of sleeping.
func (c *core) WaitEventIDs(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		got, ch := len(c.eventIDs), c.changed
		c.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		case <-c.done:
			return false
		}
	}
}

func (c *core) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, bodyErr := readBody(r, c.cfg.gzip)

	c.mu.Lock()
	c.requests++
	now := c.now()
	var kind ChaosKind
	forced, fStatus, fBody := false, 0, ""
	if c.rejectN > 0 {
		c.rejectN--
		forced, fStatus, fBody = true, c.rejectSt, c.rejectBdy
	} else if c.chaos.Rate > 0 && c.rng != nil && c.rng.Float64() < c.chaos.Rate {
		kind = Status500
		if k := c.chaos.Kinds; len(k) > 0 {
			kind = k[c.rng.IntN(len(k))]
		}
	}
	ch, e := c.chaos, env{now: now, cfg: c.cfg, reject: c.rejectFn}
	c.mu.Unlock()

	req := Request{Time: now, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}

	switch {
	case forced:
		a := answer{status: fStatus, body: []byte(fBody)}
		if a.status == 0 {
			a.status = http.StatusBadRequest
		}
		code := 0
		if fBody == "" {
			a.body, code = c.api.errorBody(a.status)
		}
		a.err = fmt.Errorf("%w: RejectNext (HTTP %d, code %d)", ErrForced, a.status, code)
		c.write(w, &req, a)
	case kind != "":
		req.Chaos = kind
		c.chaosAct(w, r, &req, kind, ch)
	default:
		c.write(w, &req, c.api.serve(r, body, bodyErr, e))
	}
}

// write answers a and records the request.
func (c *core) write(w http.ResponseWriter, req *Request, a answer) {
	for k, vs := range a.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if w.Header().Get("Content-Type") == "" && len(a.body) > 0 {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
	req.Status, req.Response, req.Err = a.status, a.body, a.err
	req.Events, req.EventIDs = a.events, a.eventIDs
	c.record(*req)
}

func (c *core) record(req Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, req)
	if req.Err != nil {
		return
	}
	c.accepted++
	c.events += req.Events
	for _, id := range req.EventIDs {
		if id != "" {
			c.eventIDs[id]++
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *core) chaosAct(w http.ResponseWriter, r *http.Request, req *Request, kind ChaosKind, ch Chaos) {
	switch kind {
	case Status429:
		ra := ch.RetryAfter
		if ra <= 0 {
			ra = time.Second
		}
		secs := int((ra + time.Second - 1) / time.Second)
		body, _ := c.api.errorBody(http.StatusTooManyRequests)
		c.write(w, req, answer{
			status: http.StatusTooManyRequests, body: body,
			header: http.Header{"Retry-After": {strconv.Itoa(secs)}},
			err:    fmt.Errorf("%w: %s (Retry-After %d)", ErrChaos, kind, secs),
		})
	case Timeout:
		hold := ch.Hold
		if hold <= 0 {
			hold = 2 * time.Second
		}
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-r.Context().Done():
		case <-c.done:
		}
		t.Stop()
		c.drop(w, req, fmt.Errorf("%w: %s (held %s)", ErrChaos, kind, hold))
	case DropConnection:
		c.drop(w, req, fmt.Errorf("%w: %s", ErrChaos, kind))
	default: // Status500 and unknown kinds
		body, _ := c.api.errorBody(http.StatusInternalServerError)
		c.write(w, req, answer{status: http.StatusInternalServerError, body: body, err: fmt.Errorf("%w: %s", ErrChaos, Status500)})
	}
}

// drop records the request, then closes its connection without answering.
func (c *core) drop(w http.ResponseWriter, req *Request, err error) {
	req.Err = err
	c.record(*req)
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, herr := hj.Hijack(); herr == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // closes the connection, not logged by net/http
}

// errUndecodedGzip is the body error of a gzip body when WithGzip is off.
var errUndecodedGzip = errors.New("forwardtest: Content-Encoding gzip is not documented by the API; use WithGzip to accept it")

// readBody reads the request body, gunzipping it when allowed.
func readBody(r *http.Request, allowGzip bool) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return raw, fmt.Errorf("forwardtest: reading body: %w", err)
	}
	if len(raw) > maxBody {
		return raw[:maxBody], fmt.Errorf("forwardtest: body larger than %d bytes", maxBody)
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
		return raw, nil
	case "gzip":
		if !allowGzip {
			return raw, errUndecodedGzip
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return raw, fmt.Errorf("forwardtest: gzip body: %w", err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, maxBody+1))
		if err != nil {
			return raw, fmt.Errorf("forwardtest: gzip body: %w", err)
		}
		return out, nil
	default:
		return raw, fmt.Errorf("forwardtest: unsupported Content-Encoding %q", enc)
	}
}
