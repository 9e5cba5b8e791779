package gateway

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/gateway/event"
)

// Routes are the fixed values of the "route" metric label.
const (
	routeBrowser = "e"
	routePixel   = "p.gif"
	routeServer  = "v1_events"
	routeProxy   = "proxy"
	routeTag     = "t.js"
	routeOther   = "other"
)

// Event dispositions, the fixed values of the "disposition" label.
const (
	dispAccepted    = "accepted"
	dispDuplicate   = "duplicate"
	dispInvalid     = "invalid"
	dispUnavailable = "unavailable"
	dispNoConsent   = "no_consent"
)

// metrics are the gateway's Prometheus series. Labels come only from the
// fixed sets above and the reason table, never from input.
type metrics struct {
	requests   *prometheus.CounterVec   // route, code
	duration   *prometheus.HistogramVec // route
	inFlight   prometheus.Gauge
	events     *prometheus.CounterVec // source, disposition
	rejected   *prometheus.CounterVec // route, reason (requests and events refused)
	warnings   prometheus.Counter
	noEventID  prometheus.Counter
	publish    prometheus.Histogram
	noConsent  *prometheus.CounterVec   // reason
	batchSizes *prometheus.HistogramVec // source
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagway_http_requests_total", Help: "Public HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tagway_http_request_duration_seconds", Help: "Public request latency, PubAck wait included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tagway_http_in_flight_requests", Help: "Public requests being served now.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagway_events_total", Help: "Events received, by source and disposition (accepted, duplicate, invalid, unavailable, no_consent).",
		}, []string{"source", "disposition"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagway_rejections_total", Help: "Refused requests and refused events, by route and reason.",
		}, []string{"route", "reason"}),
		warnings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tagway_event_field_warnings_total", Help: "Identifiers dropped from accepted events (malformed email, phone, ip…).",
		}),
		noEventID: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tagway_server_events_without_event_id_total", Help: "Accepted server events that carried no event_id and so cannot be deduplicated.",
		}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tagway_publish_duration_seconds", Help: "Time from publishing a batch to its last PubAck.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		batchSizes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tagway_batch_events", Help: "Events per received batch.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 250, 500, 1000},
		}, []string{"source"}),
	}
	m.noConsent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tagway_events_not_consented_total", Help: "Valid events not stored because consent gives no basis for measurement, by reason.",
	}, []string{"reason"})
	reg.MustRegister(m.noConsent)
	for _, r := range []string{"no_signal", "first_party_refused", "malformed_signal", "tcf_invalid", "tcf_purpose_or_vendor", "opted_out", "other"} {
		m.noConsent.WithLabelValues(r)
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight, m.events, m.rejected, m.warnings, m.noEventID, m.publish, m.batchSizes)
	// Create the series up front so dashboards see zeros, not gaps.
	for _, s := range []event.Source{event.SourceBrowser, event.SourceServer} {
		for _, d := range []string{dispAccepted, dispDuplicate, dispInvalid, dispUnavailable, dispNoConsent} {
			m.events.WithLabelValues(string(s), d)
		}
	}
	return m
}

func (m *metrics) request(route string, status int, seconds float64) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(seconds)
}
