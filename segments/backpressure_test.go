package segments

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A backlog far larger than MaxAckPending flows without pausing. The engine
// commits (and so acknowledges) only every MaxUncommitted messages or every
// Commit, so its consumers' MaxAckPending must leave room for everything it
// holds unacknowledged — or delivery stops until the next commit tick (here
// a minute). (This does not reproduce the 25 s stalls a load run saw, which
// ended when a pull request expired; the 5 s PullExpiry bounds those.)
func TestBacklogBeyondMaxAckPendingDoesNotStall(t *testing.T) {
	r := newRig(t, `batch: 16
max_uncommitted: 64
commit: 1m
linger: 1ms
rules:
  - {name: viewers, include: {event: PageView, within: 7d}}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	var last uint64
	for i := range 3000 {
		last = r.publishEvent(ctx, ev{name: "PageView", anon: fmt.Sprintf("%032x", i)})
	}
	deadline := time.Now().Add(15 * time.Second)
	for r.e.Applied() < last {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d after %s: delivery stalled", r.e.Applied(), last, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("3000 events in %s", time.Since(start).Round(time.Millisecond))
}
