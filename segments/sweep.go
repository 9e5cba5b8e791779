package segments

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"
	json "github.com/goccy/go-json"
	"github.com/tagway/tagway/gateway/kv"
)

func splitSiteID(b []byte) (site, id string, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", "", false
	}
	return string(b[:i]), string(b[i+1:]), true
}

// Sweep applies every change that time alone has made due: profiles whose
// expiry-index time has passed are re-evaluated, their deltas published. It
// also re-ranks top_percent segments when their interval has passed. It
// returns how many profiles were re-evaluated.
func (e *Engine) Sweep() (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.crashed {
		return 0, errCrashed
	}
	// The expiry index is read from Badger: store what is applied first.
	if err := e.commit(); err != nil {
		return 0, err
	}
	now := e.now()
	total := 0
	for {
		type due struct {
			at       int64
			site, id string
			key      []byte
		}
		var batch []due
		err := e.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("gx")})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(batch) < e.cfg.Batch; it.Next() {
				k := it.Item().KeyCopy(nil)
				if len(k) < 10 {
					continue
				}
				at := int64(binary.BigEndian.Uint64(k[2:10]))
				if at > now.UnixMilli() {
					break
				}
				site, id, ok := splitSiteID(k[10:])
				if !ok {
					continue
				}
				batch = append(batch, due{at, site, id, k})
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		if len(batch) == 0 {
			break
		}
		for _, d := range batch {
			s, err := e.load(d.site, d.id)
			if err != nil {
				return total, err
			}
			if s == nil || s.due != d.at {
				e.idx = append(e.idx, idxOp{key: d.key, del: true}) // stale entry
				continue
			}
			e.evaluate(s, now, "window", d.at, true, nil)
			if s.due == d.at { // cannot happen (next > now); never loop on it
				e.idx = append(e.idx, idxOp{key: d.key, del: true})
				s.due = 0
			}
			total++
		}
		if err := e.commit(); err != nil {
			return total, err
		}
	}
	e.m.swept.Add(float64(total))
	if len(e.hist) > 0 && now.Sub(e.lastRank) >= e.cfg.Rank.D() {
		n, err := e.each(now, "rank", func(s *state) bool { return len(s.metrics) > 0 || len(s.members) > 0 || len(s.held) > 0 })
		if err != nil {
			return total, err
		}
		e.lastRank = now
		total += n
	}
	return total, nil
}

// each evaluates every stored profile that want accepts (all segments),
// flushing as it goes; progress is logged for large stores.
func (e *Engine) each(now time.Time, reason string, want func(*state) bool) (int, error) {
	n, seen := 0, 0
	var site, id []string
	start := time.Now()
	err := e.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("gs")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			s, i, ok := splitSiteID(it.Item().Key()[2:])
			if ok {
				site, id = append(site, s), append(id, i)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for i := range site {
		s, err := e.load(site[i], id[i])
		if err != nil {
			return n, err
		}
		seen++
		if s == nil || s.merged != "" || !want(s) {
			continue
		}
		e.evaluate(s, now, reason, 0, true, nil)
		n++
		if len(e.dirty) >= e.cfg.Batch {
			if err := e.commit(); err != nil {
				return n, err
			}
		}
		if seen%100000 == 0 {
			e.log.Info("re-evaluating profiles", "reason", reason, "done", seen, "of", len(site), "elapsed", time.Since(start).Round(time.Second).String())
		}
	}
	return n, e.commit()
}

type ruleRecord struct {
	Segments map[string]string `json:"segments"`
	Streams  map[string]string `json:"streams"`
}

// recover runs before consuming: it counts members, rebuilds percentile
// histograms, re-publishes what a crash left in outboxes, and applies a rule
// change by re-evaluating every profile.
func (e *Engine) recover(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.db.View(func(txn *badger.Txn) error {
		for _, p := range []string{"gm", "gh"} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(p)})
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()[2:]
				i := bytes.IndexByte(k, 0)
				if i < 0 {
					continue
				}
				if st := e.seg[string(k[:i])]; st != nil {
					if p == "gm" {
						st.Members++
					} else {
						st.Held++
					}
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("segments: reading state: %w", err)
	}
	cur := ruleRecord{Segments: map[string]string{}, Streams: map[string]string{}}
	for _, s := range e.prog.Segments {
		cur.Segments[s.Name] = s.hash
	}
	for _, st := range e.prog.streams {
		cur.Streams[fmt.Sprint(st.id)] = st.key + "|" + st.window.String()
	}
	var prev ruleRecord
	err = e.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(rulesKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &prev) })
	})
	if err != nil {
		return fmt.Errorf("segments: reading the stored rules: %w", err)
	}
	changed := len(prev.Segments) != len(cur.Segments)
	for k, v := range cur.Segments {
		if prev.Segments[k] != v {
			changed = true
		}
	}
	for k := range prev.Segments {
		if _, ok := cur.Segments[k]; !ok {
			changed = true
		}
	}
	now := e.now()
	if len(e.hist) > 0 { // the histograms from the stored metrics
		if _, err := e.each(now, "", func(s *state) bool {
			for seg, v := range s.metrics {
				if h := e.hist[seg]; h != nil {
					h.add(v, 1)
				}
			}
			return false
		}); err != nil {
			return err
		}
	}
	if changed || len(e.hist) > 0 {
		reason := "rule change"
		if !changed {
			reason = "rank"
		}
		if changed && prev.Segments != nil {
			e.log.Info("segment rules changed: re-evaluating every profile", "segments", len(cur.Segments))
		}
		n, err := e.each(now, reason, func(*state) bool { return true })
		if err != nil {
			return err
		}
		if changed && prev.Segments != nil {
			e.log.Info("segment rules applied", "profiles", n)
		}
		e.lastRank = now
		data, _ := json.Marshal(cur)
		if err := kv.Update(e.db, func(txn *badger.Txn) error { return txn.Set(rulesKey, data) }); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// ---- top_percent ---------------------------------------------------------------

// histogram counts profiles by metric value in buckets 2 % wide, from which
// the top-P % threshold is read: exact to within one bucket.
type histogram struct {
	counts map[int]int64
	total  int64
	cached float64
	valid  bool
}

const bucketBase = 1.02

func bucketOf(v float64) int { return int(math.Floor(math.Log(v) / math.Log(bucketBase))) }

func (h *histogram) add(v float64, d int64) {
	if v <= 0 {
		return
	}
	if h.counts == nil {
		h.counts = map[int]int64{}
	}
	b := bucketOf(v)
	h.counts[b] += d
	if h.counts[b] <= 0 {
		delete(h.counts, b)
	}
	h.total += d
	h.valid = false
}

// threshold is the lower bound of the bucket holding the k-th largest value,
// k = ceil(P % of the profiles with a value).
func (h *histogram) threshold(p float64) float64 {
	if h.valid {
		return h.cached
	}
	h.valid, h.cached = true, 0
	if h.total <= 0 {
		return 0
	}
	k := int64(math.Ceil(p / 100 * float64(h.total)))
	bs := make([]int, 0, len(h.counts))
	for b := range h.counts {
		bs = append(bs, b)
	}
	// largest bucket first
	for i := 1; i < len(bs); i++ {
		for j := i; j > 0 && bs[j] > bs[j-1]; j-- {
			bs[j], bs[j-1] = bs[j-1], bs[j]
		}
	}
	var acc int64
	for _, b := range bs {
		acc += h.counts[b]
		if acc >= k {
			h.cached = math.Pow(bucketBase, float64(b))
			break
		}
	}
	return h.cached
}

func (e *Engine) threshold(seg string) float64 {
	h := e.hist[seg]
	sg := e.prog.byName[seg]
	if h == nil || sg == nil || len(sg.tops) == 0 {
		return 0
	}
	return h.threshold(sg.tops[0].top)
}

// rank updates the profile's metric for a top_percent segment in its
// histogram before the segment is evaluated.
func (e *Engine) rank(sg *Segment, s *state, now int64) {
	h := e.hist[sg.Name]
	if h == nil {
		return
	}
	v := 0.0
	if s.merged == "" && s.allows(sg.Use) {
		v = sg.tops[0].metricValue(s, now)
	}
	old := s.metrics[sg.Name]
	if old == v {
		return
	}
	h.add(old, -1)
	h.add(v, 1)
	if v == 0 {
		delete(s.metrics, sg.Name)
	} else {
		if s.metrics == nil {
			s.metrics = map[string]float64{}
		}
		s.metrics[sg.Name] = v
	}
}
