package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestConsentDecodeCLI(t *testing.T) {
	run1 := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(t.Context(), append([]string{"consent", "decode"}, args...), &out, io.Discard, envFunc(nil))
		return out.String(), err
	}
	out, err := run1("1YNN")
	if err != nil || strings.TrimSpace(out) != `{"usp":{"version":1,"notice":"Y","opt_out_sale":"N","lspa":"N"}}` {
		t.Fatalf("usp: %q %v", out, err)
	}
	out, err = run1("DBABLA~CVVpGGGGkmVk.YA")
	var d struct {
		GPP struct {
			SectionIDs []int                     `json:"section_ids"`
			Sections   map[string]map[string]any `json:"sections"`
		} `json:"gpp"`
	}
	if err != nil || json.Unmarshal([]byte(out), &d) != nil || d.GPP.Sections["usnat"]["gpc"] != true || d.GPP.Sections["usnat"]["sale_opt_out"] != 2.0 {
		t.Fatalf("gpp: %q %v", out, err)
	}
	out, err = run1("--kind", "tcf", "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA")
	if err != nil || !strings.Contains(out, `"tcf":{"version":2,"cmp_id":31`) {
		t.Fatalf("tcf: %q %v", out, err)
	}
	// Malformed: an error naming what is wrong, nothing on stdout.
	for _, bad := range [][]string{{"1YXN"}, {"DBA"}, {"--kind", "tcf", "1YNN"}, {"hello"}} {
		out, err := run1(bad...)
		if err == nil || errors.Is(err, errUsage) || out != "" || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: out %q err %v", bad, out, err)
		}
	}
	// With a jurisdiction, the decision too.
	out, err = run1("--country", "US", "--region", "CA", "1YYN")
	if err != nil || !strings.Contains(out, `"decision":{"jurisdiction":"US-CA","regime":"opt-out","allowed":["measurement","segments"],"denied":{}}`) {
		t.Fatalf("decision: %q %v", out, err)
	}
	out, err = run1("--country", "US", "--region", "CA", "--gpc", "1YNN")
	if err != nil || !strings.Contains(out, `"denied":{"segments":"opted out of gpc (Global Privacy Control)"}`) {
		t.Fatalf("decision with gpc: %q %v", out, err)
	}
	out, err = run1("--country", "FR", "1YNN")
	if err != nil || !strings.Contains(out, `"allowed":[]`) || !strings.Contains(out, `"measurement":"no consent signal`) {
		t.Fatalf("opt-in without TCF: %q %v", out, err)
	}
	if _, err := run1(); !errors.Is(err, errUsage) {
		t.Fatalf("no string: %v", err)
	}
}

func TestConsentDecodeAdminAPI(t *testing.T) {
	ep, stop, _ := startServe(t, t.TempDir(), map[string]string{"TAGWAY_DEMO_KEY": "k"})
	defer stop()
	get := func(q string) (int, map[string]any) {
		resp, err := http.Get(ep.admin + "/admin/consent/decode?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, m := get("s=" + url.QueryEscape("DBABTA~1YNN")); code != 200 || m["gpp"] == nil {
		t.Fatalf("decode: %d %v", code, m)
	}
	if code, m := get("s=1YXN"); code != 400 || !strings.Contains(m["error"].(string), "opt_out_sale") {
		t.Fatalf("malformed: %d %v", code, m)
	}
	if code, m := get(""); code != 400 || !strings.Contains(m["error"].(string), "s:") {
		t.Fatalf("missing s: %d %v", code, m)
	}
}
