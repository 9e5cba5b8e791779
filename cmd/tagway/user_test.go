package main

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/consent/audit"
	"github.com/tagway/tagway/gateway/event"
	"github.com/tagway/tagway/gateway/kv"
)

func userRun(t *testing.T, admin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(t.Context(), append([]string{"user"}, args...), &out, io.Discard, envFunc(map[string]string{"TAGWAY_ADMIN_URL": admin}))
	return out.String(), err
}

// TestUserShowAndErase is the consent issue's acceptance 5: after
// `tagway user erase`, a scan of every Badger key and value finds nothing
// tied to the profile except the (unlinkable) erasure record.
func TestUserShowAndErase(t *testing.T) {
	dir := t.TempDir()
	ep, stop, _ := startServe(t, dir, map[string]string{"TAGWAY_DEMO_KEY": "k"})
	const cookie = "0123456789abcdef0123456789abcdef"
	// Browser copy with consent signals, then the server copy with the email:
	// dedup record, identity links, consent state, audit records.
	resp, ans := post(t, ep.public+"/e", `{"site":"demo","consent":{"usp":"1YNN"},"data":[{"event":"CompletePayment","event_id":"order-9"}]}`,
		map[string]string{"Content-Type": "text/plain", "Cookie": "_tw_id=" + cookie})
	if resp.StatusCode != 200 || ans["accepted"] != 1.0 {
		t.Fatalf("browser copy: %v", ans)
	}
	resp, ans = post(t, ep.public+"/v1/events", `{"site":"demo","data":[{"event":"CompletePayment","event_id":"order-9","user":{"email":"Erase.Me@Example.com"}}]}`,
		map[string]string{"Authorization": "Bearer k", "Content-Type": "application/json"})
	if resp.StatusCode != 200 || ans["duplicates"] != 1.0 {
		t.Fatalf("server copy: %v", ans)
	}
	emailHash, _ := event.HashEmail("erase.me@example.com")

	// Access: by the email (hashed by the CLI), which the link resolves.
	out, err := userRun(t, ep.admin, "show", "Erase.Me@Example.com")
	if err != nil {
		t.Fatal(err)
	}
	var shown []map[string]any
	_ = json.Unmarshal([]byte(out), &shown)
	if len(shown) != 1 || shown[0]["profile"] != "a:"+cookie || shown[0]["consent"] == nil ||
		!strings.Contains(out, `"order-9"`) || !strings.Contains(out, emailHash) || !strings.Contains(out, `"kind": "consent"`) {
		t.Fatalf("show: %s", out)
	}
	if strings.Contains(strings.ToLower(out), "erase.me@") {
		t.Fatal("the raw email travelled to the admin API or back")
	}

	out, err = userRun(t, ep.admin, "erase", cookie, "--site", "demo")
	if err != nil || !strings.Contains(out, `"audit": true`) || !strings.Contains(out, `"consent": 1`) || !strings.Contains(out, `"dedup": 2`) {
		t.Fatalf("erase: %q %v", out, err) // dedup: the record and the email link
	}
	out, _ = userRun(t, ep.admin, "show", "a:"+cookie, "--site", "demo")
	if !strings.Contains(out, `"events": []`) || !strings.Contains(out, `"consent": null`) || !strings.Contains(out, `"audit": []`) {
		t.Fatalf("show after erase: %s", out)
	}
	if out, err := auditRun(t, ep.admin, "verify"); err != nil {
		t.Fatalf("chain after erase: %q %v", out, err)
	}
	stop()

	st, err := kv.Open(filepath.Join(dir, "badger"), kv.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	erasures := 0
	_ = st.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			v, _ := it.Item().ValueCopy(nil)
			for _, needle := range []string{cookie, emailHash, "order-9"} {
				if bytes.Contains(k, []byte(needle)) || bytes.Contains(v, []byte(needle)) {
					t.Errorf("key %q still holds %s: %.200s", k, needle, v)
				}
			}
		}
		return nil
	})
	err = audit.New(st.DB(), nil).Scan(time.Time{}, time.Time{}, func(r *audit.Record) error {
		if r.Kind == audit.KindErasure {
			erasures++
		}
		return nil
	})
	if err != nil || erasures != 1 {
		t.Fatalf("%d erasure records, want 1 (%v)", erasures, err)
	}
}

func TestUserKey(t *testing.T) {
	em, _ := event.HashEmail("jane@example.com")
	ph, _ := event.HashPhone("+1 555 123 4567")
	for _, tc := range []struct{ in, kind, wantKey, wantKind string }{
		{"Jane@Example.com", "", em, "email"},
		{"a:0123456789abcdef0123456789abcdef", "", "a:0123456789abcdef0123456789abcdef", "profile"},
		{"0123456789abcdef0123456789abcdef", "", "0123456789abcdef0123456789abcdef", "anon"},
		{"+1 555 123 4567", "", ph, "phone"},
		{em, "", em, "email"},
		{em, "phone", em, "phone"}, // already hashed: kept
	} {
		k, kind, err := userKey(tc.in, tc.kind)
		if err != nil || k != tc.wantKey || kind != tc.wantKind {
			t.Errorf("userKey(%q, %q) = %q %q %v", tc.in, tc.kind, k, kind, err)
		}
	}
	if _, _, err := userKey("not an email@", "email"); err == nil {
		t.Error("bad email accepted")
	}
	if _, _, err := userKey("x", "cookie"); err == nil {
		t.Error("bad kind accepted")
	}
}
