package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tagway/tagway/consent/audit"
	"github.com/tagway/tagway/gateway/kv"
)

func auditRun(t *testing.T, admin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(t.Context(), append([]string{"audit"}, args...), &out, io.Discard, envFunc(map[string]string{"TAGWAY_ADMIN_URL": admin}))
	return out.String(), err
}

// The policy in force is recorded at start-up when it changes; the log is
// verified, exported and queried through the admin API; tampering with a
// record in Badger makes `tagway audit verify` fail and name it.
func TestAuditLogEndToEnd(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"TAGWAY_DEMO_KEY": "k"}
	ep, stop, _ := startServe(t, dir, env)
	out, err := auditRun(t, ep.admin, "verify")
	if err != nil || out != "audit log ok: 1 records verified\n" {
		t.Fatalf("verify: %q %v", out, err)
	}
	out, err = auditRun(t, ep.admin, "export", "--format", "csv")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "seq,at,kind,") || !strings.Contains(lines[1], ",policy,") || !strings.Contains(lines[1], "segments") {
		t.Fatalf("export: %q %v", out, err)
	}
	if out, err := auditRun(t, ep.admin, "query", "--profile", "a:nobody"); err != nil || out != "" {
		t.Fatalf("query: %q %v", out, err)
	}
	if _, err := auditRun(t, ep.admin, "query"); err == nil {
		t.Fatal("query without --profile accepted")
	}
	stop()

	// Same policy: no new record. A changed policy: one more.
	ep, stop, _ = startServe(t, dir, env)
	if out, _ := auditRun(t, ep.admin, "verify"); out != "audit log ok: 1 records verified\n" {
		t.Fatalf("restart with the same policy: %q", out)
	}
	stop()
	cfg := filepath.Join(t.TempDir(), "tagway.yaml")
	_ = os.WriteFile(cfg, []byte("sites: [{id: shop}]\nconsent:\n  default_regime: opt-out\n  policy:\n    measurement: {purposes: [1], any_purposes: [7]}\n"), 0o600)
	ep, stop, _ = startServe(t, dir, env, "--config", cfg)
	out, _ = auditRun(t, ep.admin, "export")
	var recs []audit.Record
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 2 || recs[1].Kind != audit.KindPolicy || !strings.Contains(string(recs[1].Data), `"default_regime":"opt-out"`) || recs[1].Prev != recs[0].Hash {
		t.Fatalf("records after a policy change: %+v", recs)
	}
	stop()

	// Tamper with record 1 directly in Badger, then ask the running gateway.
	st, err := kv.Open(filepath.Join(dir, "badger"), kv.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := append([]byte{'A'}, 0, 0, 0, 0, 0, 0, 0, 1)
	err = kv.Update(st.DB(), func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, _ := item.ValueCopy(nil)
		if !bytes.Contains(v, []byte(`"analytics"`)) {
			return fmt.Errorf("record 1 lacks the text to alter: %s", v)
		}
		return txn.Set(key, bytes.Replace(v, []byte(`"analytics"`), []byte(`"marketing"`), 1))
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	ep, stop, _ = startServe(t, dir, env, "--config", cfg)
	defer stop()
	_, err = auditRun(t, ep.admin, "verify")
	if err == nil || !strings.Contains(err.Error(), "broken at record 1") {
		t.Fatalf("verify after tampering: %v", err)
	}
}
