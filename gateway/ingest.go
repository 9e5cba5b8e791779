package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/gateway/bus"
	"github.com/tagway/tagway/gateway/dedup"
	"github.com/tagway/tagway/gateway/event"
)

// Note: fasthttp's RequestCtx implements context.Context but is reused after
// the handler returns; the pipeline gets context.Background() instead, and
// bounds its waits itself (bus.Config.PublishTimeout).

// decodeFunc fills ev with event i of a request, or returns why it cannot.
type decodeFunc func(i int, ev *eventIn) (field, msg string, r reason)

// process runs events 0..n-1 of a request through validate → identify →
// consent → dedup → publish, and waits for every PubAck before it returns.
// The answer's status is 503 when any valid event could not be stored (the
// sender retries the batch; event ids make that safe), 200 when at least one
// event was accepted or was a duplicate, 400 when none was valid.
func (g *Gateway) process(ctx context.Context, route string, ri *reqInfo, n int, decode decodeFunc) (batchAnswer, int) {
	lim := eventLimits{maxAge: g.cfg.Limits.MaxAge.D(), maxFuture: g.cfg.Limits.MaxFuture.D()}
	var is issues
	envs := make([]event.Envelope, n)
	msgs := make([]bus.Msg, 0, n)
	// outs[k] says what msgs[k] is: event i's envelope, or the identity link
	// its duplicate copy taught us.
	type out struct {
		i       int
		v       *dedup.Verdict
		link    bool
		consent *consent.Outcome // a tw.consent message
	}
	outs := make([]out, 0, n)
	dd := g.dedup.Begin()
	defer func() {
		if err := dd.Finish(); err != nil {
			g.log.Error("dedup state not written; a later copy of these events may be accepted again", "err", err)
		}
	}()
	var ans batchAnswer
	var stepErr error
	unavailable := func(i int, msg string, err error) {
		stepErr = err
		is.fail(i, "", msg, reasonUnavailable)
	}
	// Validate and decide consent for every event first, then deduplicate
	// them together (the dedup store claims keys in a fixed order), then
	// publish the first copies and the identity links in one async batch.
	valid := make([]*event.Envelope, n)
	for i := 0; i < n; i++ {
		var ev eventIn
		if field, msg, r := decode(i, &ev); msg != "" {
			is.fail(i, field, msg, r)
			continue
		}
		env := &envs[i]
		if !buildEnvelope(&ev, ri, lim, i, &is, env) {
			continue
		}
		geo := ri.geo
		if geo.Country == "" && g.geoDB != nil && ri.source == event.SourceServer && env.User.IP != "" {
			// A server event says where its customer is by user.ip
			// (already truncated: /24 is enough for country and state).
			if a, err := netip.ParseAddr(env.User.IP); err == nil {
				if found, err := g.geoDB.Lookup(a); err == nil {
					geo = found
				}
			}
		}
		o, err := g.consent.Decide(env, geo)
		if err != nil {
			unavailable(i, "not stored: consent state unavailable; retry the batch", err)
			continue
		}
		if o != nil && o.Publish != nil { // the profile's consent changed
			msgs = append(msgs, bus.Msg{Subject: consent.ConsentSubject(env.Site), MsgID: "consent|" + o.AuditID, Data: o.Publish})
			outs = append(outs, out{i: i, consent: o})
		}
		if o != nil && !o.Decision.Allows(consent.UseMeasurement) {
			// No basis to store the event at all (opt-in regime): it is
			// counted, not stored, not published; the consent change (a
			// withdrawal, say) still is.
			ans.NotConsented++
			g.m.noConsent.WithLabelValues(reasonLabel(o.Decision.Denied[consent.UseMeasurement])).Inc()
			continue
		}
		valid[i] = env
	}
	verdicts, errs := dd.CheckAll(ctx, valid)
	for i, env := range valid {
		if env == nil {
			continue
		}
		if errs[i] != nil {
			unavailable(i, "not stored: dedup state unavailable; retry the batch", errs[i])
			continue
		}
		v := verdicts[i]
		if v.Kind == dedup.Duplicate {
			if v.Link == nil {
				ans.Duplicates++
				continue
			}
			data, err := json.Marshal(v.Link)
			if err != nil {
				unavailable(i, "not stored: encoding failed", err)
				continue
			}
			msgs = append(msgs, bus.Msg{Subject: event.IdentitySubject(env.Site), MsgID: linkMsgID(v.Link), Data: data})
			outs = append(outs, out{i: i, v: v, link: true})
			continue
		}
		data, err := json.Marshal(env)
		if err != nil { // cannot happen for our own types; never drop silently
			unavailable(i, "not stored: encoding failed", err)
			continue
		}
		msgs = append(msgs, bus.Msg{Subject: event.Subject(env.Site, env.Event), MsgID: event.DedupKey(env.Site, env.Event, env.EventID), Data: data})
		outs = append(outs, out{i: i, v: v})
	}

	if len(msgs) > 0 {
		acks := make([]bus.Ack, len(msgs))
		t0 := time.Now()
		g.pub.PublishBatch(ctx, msgs, acks)
		g.m.publish.Observe(time.Since(t0).Seconds())
		for k, a := range acks {
			o := outs[k]
			if o.consent != nil {
				if a.Err != nil {
					g.log.Warn("consent change not published; it is sent again with the profile's next event", "err", a.Err)
				}
				if err := g.consent.Published(o.consent, a.Err == nil); err != nil {
					g.log.Error("consent state not updated", "err", err)
				}
				continue
			}
			if a.Err != nil && a.Unsure && !o.link && g.unsure != nil {
				// It may be stored: keep the claim while the resolver finds
				// out (unsure.go), so the retry is neither stored twice nor lost.
				if p := dd.Detach(o.v); p != nil {
					g.unsure.add(msgs[k], p, t0)
					unavailable(o.i, "not stored yet: the event store did not confirm in time; retry the batch (event_id makes the retry safe)", a.Err)
					continue
				}
			}
			dd.Settle(o.v, a.Err == nil)
			switch {
			case a.Err != nil && o.link:
				unavailable(o.i, "not stored: the identity this copy adds could not be stored; retry the batch", a.Err)
			case a.Err != nil:
				unavailable(o.i, "not stored: the event store is unavailable; retry the batch (event_id makes the retry safe)", a.Err)
			case o.link || a.Duplicate:
				ans.Duplicates++
			default:
				ans.Accepted++
				g.demo.add(&envs[o.i])
				if ri.source == event.SourceServer && envs[o.i].EventIDAssigned {
					g.m.noEventID.Inc() // accepted, but cannot be deduplicated
				}
			}
		}
	}

	// Count every event exactly once.
	src := string(ri.source)
	nUnavailable := 0
	for _, e := range is.errors {
		if e.reason == reasonUnavailable {
			nUnavailable++
		}
		g.m.rejected.WithLabelValues(route, e.reason.String()).Inc()
	}
	g.m.events.WithLabelValues(src, dispAccepted).Add(float64(ans.Accepted))
	g.m.events.WithLabelValues(src, dispDuplicate).Add(float64(ans.Duplicates))
	g.m.events.WithLabelValues(src, dispInvalid).Add(float64(len(is.errors) - nUnavailable))
	g.m.events.WithLabelValues(src, dispUnavailable).Add(float64(nUnavailable))
	g.m.events.WithLabelValues(src, dispNoConsent).Add(float64(ans.NotConsented))
	g.m.warnings.Add(float64(len(is.warnings)))
	g.m.batchSizes.WithLabelValues(src).Observe(float64(n))

	ans.Errors = is.errors
	if ans.Errors == nil {
		ans.Errors = []fieldError{}
	}
	ans.Warnings = is.warnings
	status := 200
	switch {
	case nUnavailable > 0:
		status = 503
		g.log.Warn("events not stored", "route", route, "events", nUnavailable, "err", stepErr)
	case ans.Accepted+ans.Duplicates+ans.NotConsented == 0:
		status = 400
	}
	return ans, status
}

// reasonLabel maps a denial reason to a small fixed set of metric labels.
func reasonLabel(reason string) string {
	switch {
	case strings.HasPrefix(reason, "no consent signal"):
		return "no_signal"
	case strings.HasPrefix(reason, "first-party category"):
		return "first_party_refused"
	case strings.Contains(reason, "malformed"):
		return "malformed_signal"
	case strings.Contains(reason, "TCF 2.2"):
		return "tcf_invalid"
	case strings.HasPrefix(reason, "tcf:"):
		return "tcf_purpose_or_vendor"
	case strings.HasPrefix(reason, "opted out"):
		return "opted_out"
	}
	return "other"
}

// linkMsgID is the Nats-Msg-Id of an identity link: the event key and the
// alias kinds it adds, so a retried link is stored once.
func linkMsgID(l *event.IdentityLink) string {
	kinds := slices.Sorted(maps.Keys(l.Aliases))
	return "link|" + event.DedupKey(l.Site, l.Event, l.EventID) + "|" + strings.Join(kinds, ",")
}

// ---- POST /v1/events -------------------------------------------------------

func (g *Gateway) serveServer(ctx *fasthttp.RequestCtx, rid string) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		g.refuse(ctx, routeServer, rid, reqErr(reasonMethodNotAllowed, "", "use POST"))
		return
	}
	src := g.authenticate(ctx)
	if src == nil {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="tagway"`)
		g.refuse(ctx, routeServer, rid, reqErr(reasonUnauthorized, "Authorization", "missing or unknown API key (Authorization: Bearer <key>)"))
		return
	}
	if !mediaType(ctx, "application/json") {
		g.refuse(ctx, routeServer, rid, reqErr(reasonUnsupportedMedia, "Content-Type", "Content-Type must be application/json"))
		return
	}
	rate := src.RateLimit
	if rate.RPS == 0 {
		rate = g.cfg.Limits.KeyRate
	}
	now := g.now()
	if !g.keyLim.allow(src.Name, rate, now) {
		g.refuse(ctx, routeServer, rid, reqErr(reasonRateLimited, "", "too many requests for this API key"))
		return
	}
	body, rerr := g.body(ctx, int(g.cfg.Limits.ServerBody), true)
	if rerr != nil {
		g.refuse(ctx, routeServer, rid, rerr)
		return
	}
	var b batchIn
	if rerr := parseBatch(body, &b); rerr != nil {
		g.refuse(ctx, routeServer, rid, rerr)
		return
	}
	if b.Site == "" {
		g.refuse(ctx, routeServer, rid, reqErr(reasonInvalidField, "site", "site: required"))
		return
	}
	if !slices.Contains(src.Sites, b.Site) {
		g.refuse(ctx, routeServer, rid, reqErr(reasonSiteNotAllowed, "site", "site: this API key may not send events for this site"))
		return
	}
	if rerr := g.checkCount(len(b.Data), g.cfg.Limits.ServerEvents); rerr != nil {
		g.refuse(ctx, routeServer, rid, rerr)
		return
	}
	if f, m := checkBatchConsent(b.Consent); f != "" {
		g.refuse(ctx, routeServer, rid, reqErr(reasonInvalidField, f, f+": "+m))
		return
	}
	ri := &reqInfo{source: event.SourceServer, sourceName: src.Name, site: b.Site, now: now, user: b.User, consent: b.Consent}
	ans, status := g.process(context.Background(), routeServer, ri, len(b.Data), g.rawDecoder(b.Data))
	ans.RequestID = rid
	if status == 503 {
		ctx.Response.Header.Set("Retry-After", "2")
	}
	writeJSON(ctx, status, &ans)
}

func (g *Gateway) rawDecoder(data []json.RawMessage) decodeFunc {
	limit := int(g.cfg.Limits.EventBytes)
	return func(i int, ev *eventIn) (string, string, reason) {
		if len(data[i]) > limit {
			return "", "event is larger than " + itoa(limit) + " bytes", reasonEventTooLarge
		}
		f, m := parseEvent(data[i], ev)
		return f, m, reasonInvalidField
	}
}

// authenticate finds the source whose key hash matches the bearer key,
// comparing in constant time against every source.
func (g *Gateway) authenticate(ctx *fasthttp.RequestCtx) *Source {
	h := ctx.Request.Header.Peek("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
		return nil
	}
	return matchKey(g.cfg.Sources, bytes.TrimSpace(h[len(prefix):]))
}

func (g *Gateway) checkCount(n, max int) *requestError {
	if n == 0 {
		return reqErr(reasonEmptyBatch, "data", "data: must hold at least one event")
	}
	if n > max {
		return reqErr(reasonBatchTooLarge, "data", "data: at most "+itoa(max)+" events per batch")
	}
	return nil
}

// body returns the request body, refusing one over limit. Server requests may
// be gzip-compressed; the limit applies to the uncompressed size.
func (g *Gateway) body(ctx *fasthttp.RequestCtx, limit int, allowGzip bool) ([]byte, *requestError) {
	tooLarge := reqErr(reasonBodyTooLarge, "", "body is larger than "+itoa(limit)+" bytes")
	body := ctx.PostBody()
	enc := ctx.Request.Header.ContentEncoding()
	switch {
	case len(enc) == 0 || bytes.EqualFold(enc, []byte("identity")):
		if len(body) > limit {
			return nil, tooLarge
		}
		return body, nil
	case allowGzip && bytes.EqualFold(enc, []byte("gzip")):
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, reqErr(reasonInvalidJSON, "Content-Encoding", "body is not valid gzip")
		}
		out, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
		if err != nil {
			return nil, reqErr(reasonInvalidJSON, "Content-Encoding", "body is not valid gzip")
		}
		if len(out) > limit {
			return nil, tooLarge
		}
		return out, nil
	default:
		return nil, reqErr(reasonUnsupportedMedia, "Content-Encoding", "Content-Encoding must be gzip or absent")
	}
}

// mediaType reports whether the request's Content-Type is one of types
// (parameters such as charset ignored). An empty list entry accepts a missing
// header.
func mediaType(ctx *fasthttp.RequestCtx, types ...string) bool {
	ct := ctx.Request.Header.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	for _, t := range types {
		if bytes.EqualFold(ct, []byte(t)) {
			return true
		}
	}
	return false
}

// checkBatchConsent checks batch-level signals: a malformed one refuses the
// whole batch, because dropping it could turn a refusal into a permission.
func checkBatchConsent(c *consentIn) (string, string) {
	if c == nil {
		return "", ""
	}
	if f, m := checkConsent(c); f != "" {
		return "consent." + f, m
	}
	return "", ""
}

func itoa(n int) string { return strconv.Itoa(n) }
