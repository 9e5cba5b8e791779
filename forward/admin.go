package forward

import (
	"context"
	"errors"
	"net/http"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
)

// maxListed bounds one dead-letter listing.
const maxListed = 10000

var errEnough = errors.New("enough")

// Handlers serves the forward admin API:
//
//	GET  /admin/forward                           the destinations
//	GET  /admin/forward/dead?dest=NAME&since=T    dead letters (at most 10000)
//	POST /admin/forward/replay?dest=NAME&since=T  re-send dead letters
//
// since is RFC 3339 or a unix time in milliseconds; empty means all.
func (f *Forwarder) Handlers() map[string]http.Handler {
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
	}
	fail := func(w http.ResponseWriter, err error) {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrUnknownDestination) {
			status = http.StatusNotFound
		}
		writeJSON(w, status, map[string]string{"error": err.Error()})
	}
	args := func(w http.ResponseWriter, r *http.Request) (string, time.Time, bool) {
		q := r.URL.Query()
		dest := q.Get("dest")
		if dest == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "dest: required"})
			return "", time.Time{}, false
		}
		since, err := parseSince(q.Get("since"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "since: " + err.Error()})
			return "", time.Time{}, false
		}
		return dest, since, true
	}
	return map[string]http.Handler{
		"GET /admin/forward": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			type row struct {
				Name   string   `json:"name"`
				Type   Kind     `json:"type"`
				Events []string `json:"events"`
				Hold   string   `json:"hold"`
			}
			out := []row{}
			for _, d := range f.dests {
				out = append(out, row{d.d.Name, d.d.Type, d.d.Events, d.d.Hold.String()})
			}
			writeJSON(w, http.StatusOK, out)
		}),
		"GET /admin/forward/dead": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			dest, since, ok := args(w, r)
			if !ok {
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
			defer cancel()
			out := []DeadLetter{}
			err := f.DeadLetters(ctx, dest, since, func(dl DeadLetter, _ jetstream.Msg) error {
				out = append(out, dl)
				if len(out) >= maxListed {
					return errEnough
				}
				return nil
			})
			if err != nil && !errors.Is(err, errEnough) {
				fail(w, err)
				return
			}
			writeJSON(w, http.StatusOK, out)
		}),
		"POST /admin/forward/replay": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			dest, since, ok := args(w, r)
			if !ok {
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
			defer cancel()
			n, err := f.Replay(ctx, dest, since)
			if err != nil {
				fail(w, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"destination": dest, "replayed": n})
		}),
	}
}

// parseSince reads RFC 3339 or unix milliseconds; "" is the zero time.
func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	var ms int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return time.Time{}, errors.New("must be RFC 3339 (2026-12-01T10:00:00Z) or unix milliseconds")
		}
		ms = ms*10 + int64(c-'0')
	}
	return time.UnixMilli(ms), nil
}
