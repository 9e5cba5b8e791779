package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/event"
)

// A deliverer consumes one destination's payloads from TW_FORWARD and posts
// them in batches, with Concurrency requests in flight at most.
//
// Outcomes, per request:
//   - accepted (TikTok: HTTP 200 with code 0; Meta and webhooks: 2xx): the
//     messages are acknowledged;
//   - retryable (no answer, a timeout, a dropped connection, HTTP 5xx or
//     429, TikTok's rate-limit and server codes, Meta's throttling codes):
//     the messages are put back with NakWithDelay, exponential backoff with
//     full jitter between min_backoff and max_backoff, or the Retry-After the
//     API gave. JetStream keeps them: at-least-once, always with event_id so
//     the platform deduplicates;
//   - rejected (any other 4xx or error code): a batch is split in halves and
//     each half sent again, so one bad event does not sink its batch; a
//     single rejected event goes to tw.forward.dead.<destination> with the
//     answer. An authentication error dead-letters the whole batch at once
//     (every event would fail alike); `tagway forward replay` sends dead
//     letters again after the fix.
type deliverer struct {
	f       *Forwarder
	d       *Destination
	http    *http.Client
	consent ConsentChecker
	m       *destMetrics
	cons    jetstream.Consumer
	use     string // "forward:<name>", the consent use it needs
}

func newDeliverer(f *Forwarder, d *Destination, hc *http.Client, cc ConsentChecker) *deliverer {
	return &deliverer{f: f, d: d, http: hc, consent: cc, m: f.m.forDest(d.Name), use: "forward:" + d.Name}
}

// payload builds the destination's message for an envelope.
func (d *deliverer) payload(env *event.Envelope) (*nats.Msg, error) {
	name, _ := MapEvent(d.d.Type, env.Event, d.d.EventMap)
	var data []byte
	var err error
	switch d.d.Type {
	case KindTikTok:
		// TikTok hashes phones in E.164 with the "+" (tiktok-events/v2).
		data, err = TikTokEvent(env, name, Hashed{Phone: env.User.PhoneE164SHA256})
	case KindMeta:
		data, err = MetaEvent(env, name, Hashed{})
	default:
		data, err = WebhookBody(env)
	}
	if err != nil && !errors.Is(err, ErrDropped) {
		return nil, err
	}
	if err != nil { // built without the fields named (names, never values): counted, and logged at debug
		d.m.dropped.Inc()
		d.f.log.Debug("payload built without unusable fields", "destination", d.d.Name, "event", env.Event, "fields", err.Error())
	}
	return forwardMsg(d.d.Name, env, data), nil
}

// start starts the workers: they fetch until ctx ends and send with reqs,
// which ends only when Shutdown gives up waiting for them.
func (d *deliverer) start(ctx, reqs context.Context) error {
	cons, err := d.f.js.CreateOrUpdateConsumer(ctx, ForwardStream, jetstream.ConsumerConfig{
		Durable: DeliverConsumerPrefix + d.d.Name, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: Subject(d.d.Name, "*"), AckWait: 2*d.d.Timeout.D() + 30*time.Second, MaxAckPending: d.f.cfg.MaxPending,
		Description: "Tagway forward: delivery to " + d.d.Name,
	})
	if err != nil {
		return fmt.Errorf("forward: consumer %s%s: %w", DeliverConsumerPrefix, d.d.Name, err)
	}
	d.cons = cons
	for range d.d.Concurrency {
		d.f.wg.Add(1)
		go d.worker(ctx, reqs)
	}
	return nil
}

func (d *deliverer) worker(ctx, reqs context.Context) {
	defer d.f.wg.Done()
	wait := max(d.d.Linger.D(), 100*time.Millisecond)
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		batch, err := d.cons.Fetch(d.d.BatchSize, jetstream.FetchMaxWait(wait))
		if err != nil {
			if ctx.Err() == nil {
				d.f.log.Warn("fetching from TW_FORWARD", "destination", d.d.Name, "err", err)
			}
			sleep(ctx, pause)
			pause = min(2*pause, 5*time.Second)
			continue
		}
		pause = 100 * time.Millisecond
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) > 0 && ctx.Err() != nil {
			// Fetched as Shutdown began: left to the next start.
			for _, m := range msgs {
				_ = m.Nak()
			}
			return
		}
		if len(msgs) > 0 {
			d.handle(reqs, msgs)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle drops expired conversions and those whose consent was withdrawn
// since, and sends the rest.
func (d *deliverer) handle(ctx context.Context, msgs []jetstream.Msg) {
	now := d.f.now()
	send := msgs[:0:0]
	for _, m := range msgs {
		h := m.Headers()
		if et, _ := strconv.ParseInt(h.Get(HeaderEventTime), 10, 64); et > 0 && now.Sub(time.UnixMilli(et)) > d.d.MaxAge.D() {
			d.dead(m, 0, "expired: the event is older than max_age ("+d.d.MaxAge.String()+")")
			d.m.deadExpired.Inc()
			continue
		}
		if d.consent != nil {
			site, profile := h.Get(HeaderSite), h.Get(HeaderProfile)
			denied, err := d.withdrawn(site, profile, h.Get(HeaderProfiles))
			if err != nil {
				d.f.log.Error("reading consent state; the conversion is retried", "destination", d.d.Name, "err", err)
				_ = m.NakWithDelay(d.d.MinBackoff.D())
				continue
			}
			if denied != "" {
				if err := d.consent.RecordForwardSkip(site, denied, d.d.Name, h.Get(HeaderEventID)); err != nil {
					d.f.log.Error("auditing a skipped conversion; it is retried", "destination", d.d.Name, "err", err)
					_ = m.NakWithDelay(d.d.MinBackoff.D())
					continue
				}
				d.m.skipped.Inc()
				_ = m.Ack()
				continue
			}
		}
		send = append(send, m)
	}
	d.send(ctx, send)
}

// withdrawn returns the first of the conversion's profiles (its own, then
// those of its other identifiers: a server copy's profile is keyed by the
// email, the browser's withdrawal by the cookie) whose current consent
// state no longer allows this destination, or "".
func (d *deliverer) withdrawn(site, profile, others string) (string, error) {
	use := "forward:" + d.d.Name
	for i, p := range append([]string{profile}, strings.Split(others, ",")...) {
		if p == "" || (i > 0 && p == profile) {
			continue
		}
		allowed, known, err := d.consent.CurrentUse(site, p, use)
		if err != nil {
			return "", err
		}
		if known && !allowed {
			return p, nil
		}
	}
	return "", nil
}

// outcome of one request.
type outcome struct {
	ok, retry, whole bool // whole: a rejection that applies to every event (auth)
	retryAfter       time.Duration
	status           int
	body             string
}

func (d *deliverer) send(ctx context.Context, msgs []jetstream.Msg) {
	if len(msgs) == 0 {
		return
	}
	o := d.post(ctx, msgs)
	switch {
	case o.ok:
		d.m.reqOK.Inc()
		now := d.f.now()
		for _, m := range msgs {
			_ = m.Ack()
			d.m.delivered.Inc()
			if ra, err := strconv.ParseInt(m.Headers().Get(HeaderReceivedAt), 10, 64); err == nil && ra > 0 {
				d.m.latency.Observe(now.Sub(time.UnixMilli(ra)).Seconds())
			}
		}
	case o.retry:
		d.m.reqRetry.Inc()
		for _, m := range msgs {
			n := uint64(1)
			if md, err := m.Metadata(); err == nil {
				n = md.NumDelivered
			}
			_ = m.NakWithDelay(d.backoff(n, o.retryAfter))
			d.m.retried.Inc()
		}
	default:
		d.m.reqRejected.Inc()
		if len(msgs) > 1 && !o.whole {
			half := len(msgs) / 2
			d.send(ctx, msgs[:half])
			d.send(ctx, msgs[half:])
			return
		}
		for _, m := range msgs {
			d.dead(m, o.status, o.body)
			d.m.deadRejected.Inc()
		}
	}
}

// backoff is the delay before attempt n+1: the API's Retry-After when it
// gave one, capped at max_backoff; else a random delay (full jitter)
// between min_backoff and min_backoff·2^(n-1), capped at max_backoff.
func (d *deliverer) backoff(n uint64, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, d.d.MaxBackoff.D())
	}
	lo, hi := d.d.MinBackoff.D(), d.d.MaxBackoff.D()
	b := lo
	for i := uint64(1); i < n && b < hi; i++ {
		b *= 2
	}
	b = min(b, hi)
	return lo + rand.N(b-lo+1)
}

// dead moves a message to tw.forward.dead.<destination> with the answer,
// then acknowledges it. If the dead letter cannot be stored the message is
// put back instead: nothing is dropped.
func (d *deliverer) dead(m jetstream.Msg, status int, reason string) {
	dm := nats.NewMsg(DeadSubject(d.d.Name))
	dm.Data = m.Data()
	for k, v := range m.Headers() {
		if strings.HasPrefix(k, "Tw-") {
			dm.Header[k] = v
		}
	}
	if len(reason) > 4096 {
		reason = reason[:4096] + "…"
	}
	dm.Header.Set(HeaderDeadSubject, m.Subject())
	dm.Header.Set(HeaderDeadStatus, strconv.Itoa(status))
	dm.Header.Set(HeaderDeadReason, strings.ToValidUTF8(strings.ReplaceAll(reason, "\n", " "), "?"))
	dm.Header.Set(HeaderDeadAt, strconv.FormatInt(d.f.now().UnixMilli(), 10))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := "dead|" + d.d.Name + "|" + m.Headers().Get(HeaderSite) + "|" + m.Headers().Get(HeaderEvent) + "|" + m.Headers().Get(HeaderEventID)
	if md, err := m.Metadata(); err == nil {
		id += "|" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	if _, err := d.f.js.PublishMsg(ctx, dm, jetstream.WithMsgID(id)); err != nil {
		d.f.log.Error("storing a dead letter; the conversion is retried", "destination", d.d.Name, "err", err)
		_ = m.NakWithDelay(d.d.MinBackoff.D())
		return
	}
	d.f.log.Warn("conversion dead-lettered", "destination", d.d.Name, "status", status, "subject", DeadSubject(d.d.Name))
	_ = m.Ack()
}

// post sends one request for msgs and classifies the answer.
func (d *deliverer) post(ctx context.Context, msgs []jetstream.Msg) outcome {
	data := make([][]byte, len(msgs))
	for i, m := range msgs {
		data[i] = m.Data()
	}
	var (
		u    string
		body []byte
		hdr  = http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Tagway"}}
	)
	switch d.d.Type {
	case KindTikTok:
		// https://business-api.tiktok.com/open_api/v1.3/event/track/ with
		// the Access-Token header (Events API 2.0).
		u = strings.TrimRight(d.d.BaseURL, "/") + "/open_api/v1.3/event/track/"
		body = TikTokRequest("web", d.d.PixelCode, d.d.TestEventCode, data)
		hdr.Set("Access-Token", d.d.token.Reveal())
	case KindMeta:
		// POST /{api_version}/{pixel_id}/events, access_token in the body
		// (as Meta's SDKs send it), so it never sits in a URL or a log.
		u = strings.TrimRight(d.d.BaseURL, "/") + "/" + d.d.APIVersion + "/" + d.d.PixelID + "/events"
		body = withAccessToken(MetaRequest(data, d.d.TestEventCode), d.d.token.Reveal())
	default:
		u, body = d.d.URL, data[0]
		for k, v := range d.d.Headers {
			hdr.Set(k, v)
		}
		hdr.Set(d.d.SignatureHeader, SignWebhook([]byte(d.d.secret.Reveal()), d.f.now(), body))
		hdr.Set("Tagway-Event-Id", msgs[0].Headers().Get(HeaderEventID))
	}
	rctx, cancel := context.WithTimeout(ctx, d.d.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return outcome{status: 0, body: "building the request: " + err.Error()}
	}
	req.Header = hdr
	resp, err := d.http.Do(req)
	if err != nil {
		return outcome{retry: true, body: err.Error()}
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return outcome{retry: true, status: resp.StatusCode, body: "reading the answer: " + err.Error()}
	}
	o := outcome{status: resp.StatusCode, body: string(rb), retryAfter: retryAfter(resp.Header.Get("Retry-After"), d.f.now())}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		o.retry = true
		return o
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		o.whole = true
		return o
	}
	switch d.d.Type {
	case KindTikTok:
		return classifyTikTok(o, rb)
	case KindMeta:
		return classifyMeta(o, rb)
	}
	o.ok = resp.StatusCode/100 == 2
	return o
}

// classifyTikTok reads TikTok's answer, which is HTTP 200 with a code
// whatever happened (0 is success): 40100 is "too many requests" and 5xxxx
// are TikTok's server errors (retried); 40001 (no permission for the
// pixel), 40104/40105 (access token missing or wrong) reject every event
// alike; other codes reject the request's content. The codes are those
// forwardtest's fake records with its sources (TikTok's published sample
// answers and rudder-transformer's recorded TikTok responses).
func classifyTikTok(o outcome, body []byte) outcome {
	if o.status/100 != 2 {
		return o
	}
	var a struct {
		Code *int `json:"code"`
	}
	if json.Unmarshal(body, &a) != nil || a.Code == nil {
		o.retry = true // not TikTok's answer (a proxy's page?): try again later
		return o
	}
	switch c := *a.Code; {
	case c == 0:
		o.ok = true
	case c == 40100 || c >= 50000:
		o.retry = true
	case c == 40001 || c == 40104 || c == 40105:
		o.whole = true
	}
	return o
}

// classifyMeta reads the Graph API's error: codes 1 and 2 (temporary), 4,
// 17, 32, 613 and 80004 (throttling) are retried, as is anything marked
// is_transient; 190 and 104 (the access token) reject every event alike.
// https://developers.facebook.com/docs/graph-api/guides/error-handling
func classifyMeta(o outcome, body []byte) outcome {
	if o.status/100 == 2 {
		o.ok = true
		return o
	}
	var a struct {
		Error struct {
			Code        int  `json:"code"`
			IsTransient bool `json:"is_transient"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &a)
	switch a.Error.Code {
	case 1, 2, 4, 17, 32, 613, 80004:
		o.retry = true
	case 190, 104:
		o.whole = true
	default:
		o.retry = a.Error.IsTransient
	}
	return o
}

// retryAfter parses a Retry-After header: seconds or an HTTP date. A
// number of seconds too large for a Duration is the longest Duration.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); (err == nil || errors.Is(err, strconv.ErrRange)) && s >= 0 {
		if s > int64(math.MaxInt64/time.Second) {
			return math.MaxInt64
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// withAccessToken adds "access_token" to a JSON object body.
func withAccessToken(body []byte, token string) []byte {
	if b := bytes.TrimSpace(body); len(b) == 0 || b[0] != '{' {
		body = []byte("{}")
	}
	tok, _ := json.Marshal(token)
	out := make([]byte, 0, len(body)+len(tok)+20)
	out = append(out, `{"access_token":`...)
	out = append(out, tok...)
	if rest := bytes.TrimSpace(body[1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, body[1:]...)
}
