package kv

import (
	"expvar"

	"github.com/prometheus/client_golang/prometheus"
)

// Badger counts what it writes in process-wide expvars (badger_*), one set
// for every store the process opens: tagway serve opens one. The collector
// exports them with the store's size:
//
//	tagway_badger_written_bytes_total{stage="user"}        entries Tagway wrote (keys, values, metadata)
//	tagway_badger_written_bytes_total{stage="compaction"}  tables compactions wrote, all levels
//	tagway_badger_entries_written_total                   entries Tagway wrote (a transaction adds one of its own)
//	tagway_badger_gets_total                              point reads that reached Badger
//	tagway_badger_size_bytes{part="lsm"|"vlog"}            on disk, as Badger last measured it
//
// compaction / user is the LSM's write amplification beyond the write-ahead
// log and the level-0 table each entry is also written to.
var (
	writtenDesc = prometheus.NewDesc("tagway_badger_written_bytes_total",
		"Bytes Badger wrote: user (entries written by Tagway) and compaction (tables written by compactions).", []string{"stage"}, nil)
	entriesDesc = prometheus.NewDesc("tagway_badger_entries_written_total",
		"Entries written to Badger (sets and deletes; a transaction of several adds one entry of its own).", nil, nil)
	getsDesc = prometheus.NewDesc("tagway_badger_gets_total",
		"Point reads that reached Badger (the Bloom filters in front of it answer most reads of new keys).", nil, nil)
	sizeDesc = prometheus.NewDesc("tagway_badger_size_bytes",
		"Badger's size on disk: lsm (tables) and vlog (value log).", []string{"part"}, nil)
)

type collector struct{ s *Store }

// Register adds the store's metrics to reg.
func (s *Store) Register(reg prometheus.Registerer) error { return reg.Register(collector{s}) }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- writtenDesc
	ch <- entriesDesc
	ch <- getsDesc
	ch <- sizeDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	user, compaction := bytesWritten()
	ch <- prometheus.MustNewConstMetric(writtenDesc, prometheus.CounterValue, float64(user), "user")
	ch <- prometheus.MustNewConstMetric(writtenDesc, prometheus.CounterValue, float64(compaction), "compaction")
	ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.CounterValue, float64(expvarInt("badger_put_num_user")))
	ch <- prometheus.MustNewConstMetric(getsDesc, prometheus.CounterValue, float64(expvarInt("badger_get_num_user")))
	if c.s.closed.Load() {
		return
	}
	lsm, vlog := c.s.db.Size()
	ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(lsm), "lsm")
	ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(vlog), "vlog")
}

// bytesWritten is what Badger's counters say the process's stores wrote:
// entries written by their users, and tables written by compactions.
func bytesWritten() (user, compaction int64) {
	user = expvarInt("badger_write_bytes_user")
	if m, ok := expvar.Get("badger_write_bytes_compaction").(*expvar.Map); ok {
		m.Do(func(kv expvar.KeyValue) {
			if v, ok := kv.Value.(*expvar.Int); ok {
				compaction += v.Value()
			}
		})
	}
	return user, compaction
}

func expvarInt(name string) int64 {
	if v, ok := expvar.Get(name).(*expvar.Int); ok {
		return v.Value()
	}
	return 0
}
