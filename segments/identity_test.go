package segments

import (
	"testing"
	"time"
)

// A profile merged away while its deltas wait unsent in the outbox (made
// in the batch that merges it, or moved to it by an earlier merge of that
// batch) hands them to the profile it joins, and leaves the outbox: left
// there with nothing pending it was never sent nor settled, and every
// commit refused ("deltas not published yet") until a failure dropped the
// uncommitted work and the replay made the same merge again.
func TestMergedProfileLeavesTheOutbox(t *testing.T) {
	r := newRig(t, `
rules:
  - {name: visitors_30d, min_size: 1, include: {event: PageView, within: 30d}}
`)
	a := r.clk.Now()
	r.send(ev{name: "ViewContent", anon: "old"})
	r.clk.Add(time.Minute)
	r.send(ev{name: "ViewContent", anon: "mid"}, ev{name: "ViewContent", anon: "new"})
	r.expect() // ViewContent is in no segment: nothing is pending

	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	load := func(id string) *state {
		t.Helper()
		s, err := r.e.load("shop", id)
		if err != nil || s == nil {
			t.Fatalf("load %s: %v %v", id, s, err)
		}
		return s
	}
	oldest, mid, newest := load("a:old"), load("a:mid"), load("a:new")
	if oldest.firstSeen != a.UnixMilli() {
		t.Fatalf("a:old first seen %d, want %d", oldest.firstSeen, a.UnixMilli())
	}
	// newest has a delta queued and not sent; it merges into mid, which
	// then merges into the oldest, all before the outbox goes out.
	r.e.queue(newest, "visitors_30d", "add", a.UnixMilli(), 0, "event PageView")
	r.e.merge(mid, newest)
	r.e.merge(oldest, mid)
	for _, s := range []*state{newest, mid} {
		if r.e.outbox[s.key()] != nil {
			t.Fatalf("%s, merged away, is still in the outbox", s.id)
		}
	}
	if r.e.outbox[oldest.key()] != oldest || len(oldest.pending) != 1 {
		t.Fatalf("the oldest profile holds %d pending deltas (in outbox: %v), want the merged one", len(oldest.pending), r.e.outbox[oldest.key()] != nil)
	}
	if err := r.e.commit(); err != nil {
		t.Fatalf("commit after the merges: %v", err)
	}
	ds := r.newDeltas()
	if len(ds) != 1 || ds[0].Op != "add" || ds[0].Profile != "a:new" {
		t.Fatalf("published %s, want the one add made for a:new", fmtDeltas(ds))
	}
}
