package gateway

import (
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/valyala/fasthttp"

	"github.com/tagway/tagway/gateway/event"
)

// demoLog keeps, in demo mode only, the last events accepted for each
// browser (by its _tw_id), so the demo page can show them without the admin
// API. Bounded: 1000 browsers × 20 events. Safe for concurrent use.
type demoLog struct {
	mu    sync.Mutex
	cache *lru.Cache[string, []demoEvent]
}

type demoEvent struct {
	Event   string   `json:"event"`
	EventID string   `json:"event_id"`
	At      int64    `json:"at"`
	Allowed []string `json:"allowed"`
	Profile string   `json:"profile"`
}

func newDemoLog() *demoLog {
	c, _ := lru.New[string, []demoEvent](1000)
	return &demoLog{cache: c}
}

func (d *demoLog) add(env *event.Envelope) {
	if d == nil || env.Source != event.SourceBrowser || env.User.AnonID == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	evs, _ := d.cache.Get(env.User.AnonID)
	evs = append(evs, demoEvent{Event: env.Event, EventID: env.EventID, At: env.ReceivedAt, Allowed: env.Consent.Allowed, Profile: env.Profile})
	if len(evs) > 20 {
		evs = evs[len(evs)-20:]
	}
	d.cache.Add(env.User.AnonID, evs)
}

// serveDemoEvents answers GET /demo/events with the caller's own events.
func (g *Gateway) serveDemoEvents(ctx *fasthttp.RequestCtx) {
	id := string(ctx.Request.Header.Cookie(CookieName))
	evs := []demoEvent{}
	if event.IsAnonID(id) {
		g.demo.mu.Lock()
		if got, ok := g.demo.cache.Get(id); ok {
			evs = append(evs, got...)
		}
		g.demo.mu.Unlock()
	}
	writeJSON(ctx, 200, map[string]any{"events": evs})
}
