package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/tagway/tagway/consent"
)

// ConsentDecodeHandler serves GET /admin/consent/decode?s=STRING[&kind=tcf|gpp|usp]:
// the same JSON as `tagway consent decode`, or 400 {"error":"…"} naming what
// is wrong with the string.
func ConsentDecodeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		q := r.URL.Query()
		s := q.Get("s")
		if s == "" {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "s: the consent string is required"})
			return
		}
		d, err := consent.Decode(q.Get("kind"), s)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(d)
	})
}
