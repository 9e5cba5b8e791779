package gateway

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tagway/tagway/consent/audit"
)

// AuditHandlers serves the audit log on the admin listener:
//
//	GET /admin/audit/verify                       200 {"ok":true,"records":N} or 409 {"ok":false,"seq":N,"reason":…}
//	GET /admin/audit/query?profile=P[&site=S][&since=T][&until=T][&format=jsonl|csv]
//	GET /admin/audit/export[?since=T][&until=T][&format=jsonl|csv]
//
// Times are RFC 3339 or unix seconds; query without site searches every
// configured site. Results stream (JSON lines or CSV with a header row).
func AuditHandlers(log *audit.Log, sites []string) map[string]http.Handler {
	return map[string]http.Handler{
		"GET /admin/audit/verify": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, err := log.Verify()
			var be *audit.BrokenError
			switch {
			case errors.As(err, &be):
				writeAdminJSON(w, http.StatusConflict, map[string]any{"ok": false, "seq": be.Seq, "reason": be.Reason})
			case err != nil:
				writeAdminJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "error": err.Error()})
			default:
				writeAdminJSON(w, http.StatusOK, map[string]any{"ok": true, "records": n})
			}
		}),
		"GET /admin/audit/query": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			profile := q.Get("profile")
			if profile == "" {
				writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "profile: required"})
				return
			}
			since, until, format, ok := auditParams(w, r)
			if !ok {
				return
			}
			search := sites
			if s := q.Get("site"); s != "" {
				search = []string{s}
			}
			out := newAuditWriter(w, format)
			for _, site := range search {
				if err := log.Query(site, profile, since, until, out.write); err != nil {
					out.fail(err)
					return
				}
			}
			out.flush()
		}),
		"GET /admin/audit/export": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			since, until, format, ok := auditParams(w, r)
			if !ok {
				return
			}
			out := newAuditWriter(w, format)
			if err := log.Scan(since, until, out.write); err != nil {
				out.fail(err)
				return
			}
			out.flush()
		}),
	}
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// parseTime reads RFC 3339 or unix seconds; "" is the zero time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	return time.Parse(time.RFC3339, s)
}

func auditParams(w http.ResponseWriter, r *http.Request) (since, until time.Time, format string, ok bool) {
	q := r.URL.Query()
	var err error
	if since, err = parseTime(q.Get("since")); err != nil {
		writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "since: not RFC 3339 or unix seconds"})
		return
	}
	if until, err = parseTime(q.Get("until")); err != nil {
		writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "until: not RFC 3339 or unix seconds"})
		return
	}
	format = q.Get("format")
	if format == "" {
		format = "jsonl"
	}
	if format != "jsonl" && format != "csv" {
		writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "format: jsonl or csv"})
		return
	}
	return since, until, format, true
}

// auditWriter streams records as JSON lines or CSV.
type auditWriter struct {
	w       http.ResponseWriter
	csv     *csv.Writer
	enc     *json.Encoder
	started bool
}

// CSVHeader is the column order of CSV exports.
var CSVHeader = []string{"seq", "at", "kind", "site", "profile", "profile_ref", "jurisdiction", "source", "data", "prev", "hash"}

func newAuditWriter(w http.ResponseWriter, format string) *auditWriter {
	a := &auditWriter{w: w}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		a.csv = csv.NewWriter(w)
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
		a.enc = json.NewEncoder(w)
	}
	return a
}

func (a *auditWriter) write(r *audit.Record) error {
	if !a.started && a.csv != nil {
		_ = a.csv.Write(CSVHeader)
	}
	a.started = true
	if a.csv != nil {
		return a.csv.Write([]string{strconv.FormatUint(r.Seq, 10), time.UnixMilli(r.At).UTC().Format(time.RFC3339Nano), r.Kind, r.Site,
			r.Profile, r.ProfileRef, r.Jurisdiction, r.Source, string(r.Data), r.Prev, r.Hash})
	}
	return a.enc.Encode(r)
}

func (a *auditWriter) flush() {
	if a.csv != nil {
		if !a.started {
			_ = a.csv.Write(CSVHeader)
		}
		a.csv.Flush()
	}
}

// fail reports an error: as a JSON error before anything was streamed, or
// as a final line the client sees (a stream cannot change its status).
func (a *auditWriter) fail(err error) {
	if !a.started {
		writeAdminJSON(a.w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	a.flush()
	_, _ = a.w.Write([]byte("\nerror: " + err.Error() + "\n"))
}
