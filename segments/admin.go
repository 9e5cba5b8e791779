package segments

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	json "github.com/goccy/go-json"
)

// Summary is one line of `tagway segments list`.
type Summary struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Condition   string `json:"condition"`
	Use         string `json:"use"`
	Members     int64  `json:"members"`
	HeldOut     int64  `json:"held_out"`
	MinSize     int    `json:"min_size"`
	Deliverable bool   `json:"deliverable"`
	TargetCap   int    `json:"target_cap,omitempty"`
	LastChange  string `json:"last_change,omitempty"`
}

// List summarises every segment.
func (e *Engine) List() []Summary {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Summary, 0, len(e.prog.Segments))
	for _, s := range e.prog.Segments {
		st := e.seg[s.Name]
		out = append(out, Summary{Name: s.Name, Description: s.Description, Condition: s.root.text, Use: s.Use,
			Members: st.Members, HeldOut: st.Held, MinSize: s.MinSize, Deliverable: st.Members >= int64(s.MinSize),
			TargetCap: s.TargetCap, LastChange: msTime(st.LastChange)})
	}
	return out
}

// Membership is a profile's standing in one segment, for explain.
type Membership struct {
	Segment string  `json:"segment"`
	Member  bool    `json:"member"`
	HeldOut bool    `json:"held_out,omitempty"`
	Why     string  `json:"why"`
	Tree    Explain `json:"conditions"`
}

// Explanation is `tagway segments explain`'s answer for one profile.
type Explanation struct {
	Site       string       `json:"site"`
	Profile    string       `json:"profile"`
	Asked      string       `json:"asked,omitempty"` // the id asked for, when merged into Profile
	Uses       []string     `json:"consented_uses"`
	Country    string       `json:"country,omitempty"`
	Has        []string     `json:"has,omitempty"`
	NextChange string       `json:"next_change,omitempty"`
	Segments   []Membership `json:"segments"`
}

// Alias kinds Explain accepts: what `tagway user` and the admin API call them.
var explainKinds = map[string]string{"profile": aliasProfile, "anon": aliasAnon, "email": aliasEmail, "phone": aliasPhone, "external_id": aliasExtID}

// Explain reports, for each segment, each condition's counts, sums and
// times and why the profile is in or out. kind is profile, anon, email,
// phone or external_id (the last three as SHA-256 hex). It returns nil when
// segments hold nothing for the profile in that site.
func (e *Engine) Explain(site, kind, key string) (*Explanation, error) {
	ak, ok := explainKinds[kind]
	if !ok {
		return nil, fmt.Errorf("kind: %q must be profile, anon, email, phone or external_id", kind)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id, err := e.lookupAlias(site, ak, key)
	if err != nil || id == "" {
		return nil, err
	}
	s, err := e.load(site, id)
	if err != nil || s == nil || s.merged != "" {
		return nil, err
	}
	profile := key
	if kind != "profile" {
		profile = ""
	}
	now := e.now()
	x := &Explanation{Site: site, Profile: s.id, Uses: slices.Clone(s.uses), Country: s.country, NextChange: msTime(s.due)}
	if x.Uses == nil {
		x.Uses = []string{}
	}
	if profile != "" && s.id != profile {
		x.Asked = profile
	}
	for _, h := range []struct{ name, v string }{{"email", s.email}, {"phone", s.phone}, {"external_id", s.extID}} {
		if h.v != "" {
			x.Has = append(x.Has, h.name)
		}
	}
	ec := &evalCtx{now: now.UnixMilli(), threshold: e.threshold}
	for _, sg := range e.prog.Segments {
		ec.seg = sg.Name
		tree := sg.root.explain(s, ec)
		m := Membership{Segment: sg.Name, Member: slices.Contains(s.members, sg.Name), HeldOut: slices.Contains(s.held, sg.Name), Tree: tree}
		switch {
		case !s.allows(sg.Use):
			m.Why = "out: no consent for use " + sg.Use
		case m.HeldOut:
			m.Why = fmt.Sprintf("held out: matches, in the %g%% control group", sg.ControlGroup)
		case tree.Holds:
			m.Why = "in: the conditions hold"
		default:
			m.Why = "out: the conditions do not hold"
		}
		x.Segments = append(x.Segments, m)
	}
	return x, nil
}

// Show is what segments hold about a profile (the access request).
func (e *Engine) Show(site, profile string) (any, error) {
	x, err := e.Explain(site, "profile", profile)
	if err != nil || x == nil {
		return nil, err
	}
	return x, nil
}

// Erase removes everything segments hold about the profile (and whatever
// was merged into it): state, aliases, index entries. Its memberships are
// removed on tw.audience first (reason "erased"). It returns the number of
// stored keys deleted.
func (e *Engine) Erase(site, profile string) (int, error) {
	// Events accepted before the request must not re-create the profile
	// after it: wait until they are applied, then erase.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.CatchUp(ctx); err != nil {
		return 0, fmt.Errorf("%w; nothing was erased, try again", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s, err := e.resolveOnly(site, profile)
	if err != nil || s == nil {
		return 0, err
	}
	now := e.now()
	s.uses = nil // nothing may be used any more: every membership is removed
	e.evaluate(s, now, "erased", 0, true, nil)
	n := 1
	for _, a := range s.aliases {
		e.idx = append(e.idx, idxOp{key: aliasKey(site, a[:1], a[1:]), del: true})
		e.aliasMem[string(aliasKey(site, a[:1], a[1:]))] = ""
		n++
	}
	for seg := range e.hist {
		if v := s.metrics[seg]; v != 0 {
			e.hist[seg].add(v, -1)
		}
	}
	if s.due != 0 {
		e.idx = append(e.idx, idxOp{key: dueKey(s.due, site, s.id), del: true})
		n++
	}
	// Publish the removes (with their hashed identifiers), then delete.
	k := string(stateKey(site, s.id))
	*s = state{site: site, id: s.id, pending: s.pending, merged: "erased"}
	e.dirty[k] = s
	if err := e.commit(); err != nil {
		return 0, fmt.Errorf("segments: erasing: %w", err)
	}
	return n, nil
}

// Export streams a segment's members: "tiktok-csv" writes TikTok's
// customer-file layout (header Email_SHA256,Phone_SHA256, one member per
// row; members with neither id are skipped), "jsonl" one JSON object per
// member with every hashed id. Members come in stable-hash order and stop at
// target_cap. progress is called every 10000 members. Held-out members are
// never exported.
func (e *Engine) Export(ctx context.Context, name, format string, w io.Writer, progress func(done int)) (int, error) {
	sg := e.prog.byName[name]
	if sg == nil {
		return 0, fmt.Errorf("segment %q: no such segment", name)
	}
	if format != "tiktok-csv" && format != "jsonl" {
		return 0, fmt.Errorf("format: %q must be tiktok-csv or jsonl", format)
	}
	// Members are read from Badger: store what is applied first.
	e.mu.Lock()
	err := e.commit()
	e.mu.Unlock()
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := csv.NewWriter(bw)
	if format == "tiktok-csv" {
		_ = cw.Write([]string{"Email_SHA256", "Phone_SHA256"})
	}
	n := 0
	prefix := []byte("gm" + name + "\x00")
	err = e.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if sg.TargetCap > 0 && n >= sg.TargetCap {
				break
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()[len(prefix):]
			if len(k) < 9 {
				continue
			}
			site, id, ok := splitSiteID(k[8:])
			if !ok {
				continue
			}
			item, err := txn.Get(stateKey(site, id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var s *state
			if err := item.Value(func(v []byte) error {
				var err error
				s, err = decodeState(site, id, v)
				return err
			}); err != nil {
				return err
			}
			switch format {
			case "tiktok-csv":
				if s.email == "" && s.phone == "" {
					continue
				}
				if err := cw.Write([]string{s.email, s.phone}); err != nil {
					return err
				}
			default:
				line, _ := json.Marshal(map[string]string{"site": site, "profile": id, "email_sha256": s.email,
					"phone_sha256": s.phone, "external_id_sha256": s.extID})
				bw.Write(line)
				bw.WriteByte('\n')
			}
			n++
			if progress != nil && n%10000 == 0 {
				cw.Flush()
				progress(n)
			}
		}
		return nil
	})
	cw.Flush()
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return n, err
}

// Handlers serves the segments admin API:
//
//	GET /admin/segments                              the list
//	GET /admin/segments/{name}/export?format=F       streamed export
//	GET /admin/segments/explain?key=K&kind=K&site=S  explain (every site when S is empty)
func (e *Engine) Handlers(sites []string) map[string]http.Handler {
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false) // conditions read "count >= 1", not "\u003e="
		_ = enc.Encode(v)
	}
	return map[string]http.Handler{
		"GET /admin/segments": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, e.List())
		}),
		"GET /admin/segments/{name}/export": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name, format := r.PathValue("name"), r.URL.Query().Get("format")
			if format == "" {
				format = "tiktok-csv"
			}
			if e.prog.byName[name] == nil {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "segment " + strconv.Quote(name) + ": no such segment"})
				return
			}
			if format != "tiktok-csv" && format != "jsonl" {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "format: must be tiktok-csv or jsonl"})
				return
			}
			if format == "jsonl" {
				w.Header().Set("Content-Type", "application/x-ndjson")
			} else {
				w.Header().Set("Content-Type", "text/csv")
			}
			w.Header().Set("Trailer", "Tagway-Exported, Tagway-Error")
			fl, _ := w.(http.Flusher)
			n, err := e.Export(r.Context(), name, format, w, func(int) {
				if fl != nil {
					fl.Flush()
				}
			})
			w.Header().Set("Tagway-Exported", strconv.Itoa(n))
			if err != nil {
				w.Header().Set("Tagway-Error", err.Error())
			}
		}),
		"GET /admin/segments/explain": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			key, kind := q.Get("key"), q.Get("kind")
			if key == "" {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "key: required"})
				return
			}
			if kind == "" {
				kind = "profile"
			}
			search := sites
			if s := q.Get("site"); s != "" {
				search = []string{s}
			}
			out := []*Explanation{}
			for _, site := range search {
				x, err := e.Explain(site, kind, key)
				if err != nil {
					status := http.StatusInternalServerError
					if strings.HasPrefix(err.Error(), "kind:") {
						status = http.StatusBadRequest
					}
					writeJSON(w, status, map[string]string{"error": err.Error()})
					return
				}
				if x != nil {
					out = append(out, x)
				}
			}
			if len(out) == 0 {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "key: segments hold nothing for this " + kind})
				return
			}
			writeJSON(w, http.StatusOK, out)
		}),
	}
}
