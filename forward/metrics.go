package forward

import "github.com/prometheus/client_golang/prometheus"

// metrics are the forwarder's; labels come from a fixed set: the
// destination names in config, the consumer names, and the outcomes below.
type metrics struct {
	routed    *prometheus.CounterVec // outcome: published, held, no_consent, undecided, bad_envelope, unbuildable
	enriched  prometheus.Counter
	published *prometheus.CounterVec // destination
	// republished: payloads TW_FORWARD already held (read back at start),
	// not published again.
	republished *prometheus.CounterVec // destination
	delivered   *prometheus.CounterVec // destination
	retried     *prometheus.CounterVec // destination
	dead        *prometheus.CounterVec // destination, reason: rejected, expired
	skipped     *prometheus.CounterVec // destination, reason: consent_withdrawn
	requests    *prometheus.CounterVec // destination, outcome: ok, retry, rejected
	dropped     *prometheus.CounterVec // destination
	latency     *prometheus.HistogramVec
	lag         *prometheus.GaugeVec // consumer
}

// destMetrics are one destination's children.
type destMetrics struct {
	published, republished, delivered, retried, deadRejected, deadExpired, skipped, dropped prometheus.Counter
	reqOK, reqRetry, reqRejected                                                            prometheus.Counter
	latency                                                                                 prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	dv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"destination"}, labels...))
	}
	m := &metrics{
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tagway_forward_routed_total",
			Help: "Conversions the router handled, by outcome (held counts each conversion's first hold)."}, []string{"outcome"}),
		enriched: prometheus.NewCounter(prometheus.CounterOpts{Name: "tagway_forward_enriched_identifiers_total",
			Help: "Identifiers a held conversion gained from the other copy (tw.identity)."}),
		published:   dv("tagway_forward_published_total", "Payloads published on tw.forward.<destination>.<event>."),
		republished: dv("tagway_forward_republish_skipped_total", "Payloads recomputed after a restart that TW_FORWARD already held (read back at start), so not published again."),
		delivered:   dv("tagway_forward_delivered_total", "Conversions the destination's API accepted."),
		retried:     dv("tagway_forward_retried_total", "Conversions put back for a retry (timeouts, 5xx, 429)."),
		dead:        dv("tagway_forward_dead_lettered_total", "Conversions moved to tw.forward.dead.<destination>, by reason.", "reason"),
		skipped:     dv("tagway_forward_skipped_total", "Conversions not delivered, by reason (consent withdrawn after acceptance).", "reason"),
		requests:    dv("tagway_forward_requests_total", "Requests to the destination's API, by outcome.", "outcome"),
		dropped:     dv("tagway_forward_payloads_with_dropped_fields_total", "Payloads built without property values that could not be sent (named in the debug log)."),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tagway_forward_delivery_seconds",
			Help:    "From the event's receipt to the API's acceptance (includes the hold).",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16)}, []string{"destination"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tagway_forward_consumer_lag",
			Help: "Messages waiting for a forward consumer (pending + unacknowledged), sampled every 5s."}, []string{"consumer"}),
	}
	if reg != nil {
		reg.MustRegister(m.routed, m.enriched, m.dropped, m.published, m.republished, m.delivered, m.retried, m.dead, m.skipped, m.requests, m.latency, m.lag)
	}
	return m
}

func (m *metrics) forDest(name string) *destMetrics {
	return &destMetrics{
		published: m.published.WithLabelValues(name), republished: m.republished.WithLabelValues(name), delivered: m.delivered.WithLabelValues(name),
		retried: m.retried.WithLabelValues(name), deadRejected: m.dead.WithLabelValues(name, "rejected"),
		deadExpired: m.dead.WithLabelValues(name, "expired"), dropped: m.dropped.WithLabelValues(name), skipped: m.skipped.WithLabelValues(name, "consent_withdrawn"),
		reqOK: m.requests.WithLabelValues(name, "ok"), reqRetry: m.requests.WithLabelValues(name, "retry"),
		reqRejected: m.requests.WithLabelValues(name, "rejected"), latency: m.latency.WithLabelValues(name),
	}
}
