package gateway

import (
	"net/http"

	"github.com/tagway/tagway/consent"
)

// ConsentDecodeHandler serves GET /admin/consent/decode?s=STRING[&kind=tcf|gpp|usp]:
// the same JSON as `tagway consent decode`, or 400 {"error":"…"} naming what
// is wrong with the string.
func ConsentDecodeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		s := q.Get("s")
		if s == "" {
			writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "s: the consent string is required"})
			return
		}
		d, err := consent.Decode(q.Get("kind"), s)
		if err != nil {
			writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeAdminJSON(w, http.StatusOK, d)
	})
}
