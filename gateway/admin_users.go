package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tagway/tagway/consent/audit"
	"github.com/tagway/tagway/gateway/dedup"
	"github.com/tagway/tagway/gateway/event"
)

// ProfileStore is anything that holds data about profiles. Access requests
// show what each holds; erasure requests erase from each. The segments store
// implements it when it lands.
type ProfileStore interface {
	Show(site, profile string) (any, error)
	Erase(site, profile string) (int, error)
}

// NamedStore is a ProfileStore with the name its data is shown under.
type NamedStore struct {
	Name  string
	Store ProfileStore
}

// UserHandlers serves access and erasure requests on the admin listener:
//
//	GET  /admin/users/{key}?kind=K[&site=S]        everything held about the profile
//	POST /admin/users/{key}/erase?kind=K[&site=S]  erase it; one erasure record stays in the audit log
//
// kind is profile (an id such as a:…), anon (a _tw_id value), or email,
// phone, external_id (SHA-256 hex: the CLI hashes before sending, so raw PII
// never travels); without site every configured site is searched.
func UserHandlers(stores []NamedStore, log *audit.Log, links *dedup.Store, sites []string) map[string]http.Handler {
	resolve := func(w http.ResponseWriter, r *http.Request) (key, kind string, search []string, ok bool) {
		key, kind = r.PathValue("key"), r.URL.Query().Get("kind")
		if kind == "" {
			kind = "profile"
		}
		switch kind {
		case "profile", "anon":
		case "email", "phone", "external_id":
			if !event.IsSHA256Hex(key) {
				writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "key: " + kind + " must be sent as its SHA-256 hex (tagway user hashes it)"})
				return
			}
			key = strings.ToLower(key)
		default:
			writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "kind: profile, anon, email, phone or external_id"})
			return
		}
		search = sites
		if s := r.URL.Query().Get("site"); s != "" {
			search = []string{s}
		}
		return key, kind, search, true
	}
	profileOf := func(site, key, kind string) (string, error) {
		switch kind {
		case "profile":
			return key, nil
		case "anon":
			return "a:" + key, nil
		}
		alias := map[string]string{"email": event.AliasEmail, "phone": event.AliasPhone, "external_id": event.AliasExternalID}[kind]
		if links != nil {
			if p, err := links.Profile(site, alias, key); err != nil || p != "" {
				return p, err
			}
		}
		u := event.User{}
		switch kind {
		case "email":
			u.EmailSHA256 = key
		case "phone":
			u.PhoneSHA256 = key
		default:
			u.ExternalIDSHA256 = key
		}
		return event.ProfileID(&u), nil
	}
	// perSite resolves the key in every searched site and answers 200 with
	// one entry per site, or 500 naming the store that failed.
	perSite := func(w http.ResponseWriter, r *http.Request, entry func(site, profile string) (map[string]any, error)) {
		key, kind, search, ok := resolve(w, r)
		if !ok {
			return
		}
		var out []map[string]any
		for _, site := range search {
			profile, err := profileOf(site, key, kind)
			if err == nil {
				var e map[string]any
				if e, err = entry(site, profile); err == nil {
					out = append(out, e)
					continue
				}
			}
			writeAdminJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeAdminJSON(w, http.StatusOK, out)
	}
	return map[string]http.Handler{
		"GET /admin/users/{key}": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			perSite(w, r, func(site, profile string) (map[string]any, error) {
				entry := map[string]any{"site": site, "profile": profile}
				for _, ns := range stores {
					v, err := ns.Store.Show(site, profile)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", ns.Name, err)
					}
					entry[ns.Name] = v
				}
				recs := []audit.Record{}
				if err := log.Query(site, profile, time.Time{}, time.Time{}, func(rec *audit.Record) error {
					recs = append(recs, *rec)
					return nil
				}); err != nil {
					return nil, fmt.Errorf("audit: %w", err)
				}
				entry["audit"] = recs
				return entry, nil
			})
		}),
		"POST /admin/users/{key}/erase": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			perSite(w, r, func(site, profile string) (map[string]any, error) {
				erased := map[string]any{}
				for _, ns := range stores {
					n, err := ns.Store.Erase(site, profile)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", ns.Name, err)
					}
					erased[ns.Name] = n
				}
				// Last: the audit log, which keeps one erasure record.
				had, err := log.Erase(site, profile)
				if err != nil {
					return nil, fmt.Errorf("audit: %w", err)
				}
				if !had && hasAny(erased) {
					// Data but no audit trail yet: still leave the erasure on record.
					err = log.Append(&audit.Record{Kind: audit.KindErasure, Site: site, Source: "admin"})
					had = err == nil
				}
				erased["audit"] = had
				return map[string]any{"site": site, "profile": profile, "erased": erased}, nil
			})
		}),
	}
}

func hasAny(m map[string]any) bool {
	for _, v := range m {
		if n, ok := v.(int); ok && n > 0 {
			return true
		}
	}
	return false
}
