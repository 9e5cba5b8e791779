package segments

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/prometheus/client_golang/prometheus"
)

// deltaCount is how many deltas the engine decided (benchmarks report it).
func (e *Engine) deltaCount() float64 { return float64(e.m.deltaN.Load()) }

type metrics struct {
	deltaN        atomic.Int64 // deltas decided, for benchmarks
	recorded      prometheus.Counter
	skipped       *prometheus.CounterVec
	deltas        *prometheus.CounterVec
	deltaAdd      prometheus.Counter // deltas{op="add"}
	deltaRemove   prometheus.Counter // deltas{op="remove"}
	merges        prometheus.Counter
	profiles      prometheus.Counter
	swept         prometheus.Counter
	errors        prometheus.Counter
	publishErrors prometheus.Counter
	// republishSkipped counts deltas not published again after a restart
	// because TW_AUDIENCE already had them.
	republishSkipped prometheus.Counter
	batchSeconds     prometheus.Histogram
	// alias lookups by where they were answered
	aliasFiltered, aliasCached, aliasStore prometheus.Counter
	// profile state loads by where they were answered
	loadMem, loadCache, loadStore, loadAbsent prometheus.Counter
}

// segCollector reports each segment's members and held-out counts; it reads
// the engine's counters under its lock at scrape time.
type segCollector struct {
	e             *Engine
	members, held *prometheus.Desc
}

func (c *segCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.members; ch <- c.held }

func (c *segCollector) Collect(ch chan<- prometheus.Metric) {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	for name, st := range c.e.seg {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(st.Members), name)
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(st.Held), name)
	}
}

func newMetrics(reg prometheus.Registerer, e *Engine) *metrics {
	m := &metrics{
		recorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "tagway_segments_events_recorded_total",
			Help: "Events recorded into a profile's segment state (one per matching stream)."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tagway_segments_skipped_total",
			Help: "Messages the segments consumer did not apply, by reason."}, []string{"reason"}),
		deltas: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tagway_segments_deltas_total",
			Help: "Membership changes decided (published on tw.audience.<segment>), by op."}, []string{"op"}),
		merges: prometheus.NewCounter(prometheus.CounterOpts{Name: "tagway_segments_merges_total",
			Help: "Profiles merged into another by identity stitching."}),
		profiles: prometheus.NewCounter(prometheus.CounterOpts{Name: "tagway_segments_profiles_created_total",
			Help: "Profiles created in segment state."}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: "tagway_segments_swept_total",
			Help: "Profiles re-evaluated because a window moved (the expiry index)."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "tagway_segments_batch_errors_total",
			Help: "Batches that failed to apply and were left for redelivery."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "tagway_segments_publish_errors_total",
			Help: "Profiles whose deltas failed to publish and stay in the outbox for the next try."}),
		republishSkipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "tagway_segments_republish_skipped_total",
			Help: "Deltas recomputed after a crash or a dropped batch that TW_AUDIENCE already held (read back at start), so not published again."}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tagway_segments_batch_seconds",
			Help: "Time to apply one batch (and to store it when a commit falls due); its deltas are published without waiting for their PubAcks, which the next batch or commit awaits.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tagway_segments_alias_lookups_total",
		Help: "Identifier → profile lookups, by where they were answered: filter (certainly new, no read), cache, or badger."}, []string{"answer"})
	m.aliasFiltered, m.aliasCached, m.aliasStore = lookups.WithLabelValues("filter"), lookups.WithLabelValues("cache"), lookups.WithLabelValues("badger")
	loads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tagway_segments_profile_loads_total",
		Help: "Profile state lookups, by where they were answered: memory (touched since the last commit), cache, badger, or absent (no such profile)."}, []string{"answer"})
	m.loadMem, m.loadCache, m.loadStore, m.loadAbsent = loads.WithLabelValues("memory"), loads.WithLabelValues("cache"), loads.WithLabelValues("badger"), loads.WithLabelValues("absent")
	cacheStat := func(f func(*fastcache.Stats) uint64) func() float64 {
		return func() float64 {
			var st fastcache.Stats
			e.cache.UpdateStats(&st)
			return float64(f(&st))
		}
	}
	if reg != nil {
		reg.MustRegister(lookups, loads,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tagway_segments_cache_bytes",
				Help: "Bytes held by the cache of stored profile states and identifiers (segments.cache_size bounds it)."},
				cacheStat(func(s *fastcache.Stats) uint64 { return s.BytesSize })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tagway_segments_cache_entries",
				Help: "Profile states and identifiers in the cache (an upper bound: fastcache still counts entries whose space was reused until they are looked up or set again)."},
				cacheStat(func(s *fastcache.Stats) uint64 { return s.EntriesCount })))
		reg.MustRegister(m.recorded, m.skipped, m.deltas, m.merges, m.profiles, m.swept, m.errors, m.publishErrors, m.republishSkipped, m.batchSeconds,
			&segCollector{e: e,
				members: prometheus.NewDesc("tagway_segment_members", "Profiles in the segment (published, not held out).", []string{"segment"}, nil),
				held:    prometheus.NewDesc("tagway_segment_held_out", "Profiles matching the segment but held out as its control group.", []string{"segment"}, nil),
			})
	}
	m.deltaAdd, m.deltaRemove = m.deltas.WithLabelValues("add"), m.deltas.WithLabelValues("remove")
	return m
}
