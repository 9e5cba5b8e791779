package consent

import (
	"strings"
	"testing"
)

// fib writes v ≥ 1 as a Fibonacci (Zeckendorf) code ending in "11".
func (w *bitWriter) fib(v int) *bitWriter {
	fibs := []int{1, 2}
	for fibs[len(fibs)-1] <= v {
		fibs = append(fibs, fibs[len(fibs)-1]+fibs[len(fibs)-2])
	}
	bits := make([]byte, len(fibs))
	last := 0
	for i := len(fibs) - 1; i >= 0; i-- {
		if fibs[i] <= v {
			bits[i], v = 1, v-fibs[i]
			if last == 0 {
				last = i
			}
		}
	}
	for i := 0; i <= last; i++ {
		w.bits = append(w.bits, bits[i])
	}
	w.bits = append(w.bits, 1)
	return w
}

// gppPadded is w padded as the GPP encoder pads (to 8 bits, then to 6).
func gppPadded(w *bitWriter) string {
	for len(w.bits)%8 != 0 {
		w.bits = append(w.bits, 0)
	}
	return w.String()
}

// gppHeader encodes a header with the given type, version and single ids.
func gppHeader(typ, version int, ids ...int) string {
	w := (&bitWriter{}).uint(uint64(typ), 6).uint(uint64(version), 6).uint(uint64(len(ids)), 12)
	prev := 0
	for _, id := range ids {
		w.bool(false).fib(id - prev)
		prev = id
	}
	return gppPadded(w)
}

// usnatCore encodes a usnat core segment with version v and layout (s, c).
func usnatCore(v, s, c int, value uint64) *bitWriter {
	w := (&bitWriter{}).uint(uint64(v), 6)
	for i := 0; i < 9; i++ {
		w.uint(value, 2)
	}
	for i := 0; i < s+c+1; i++ {
		w.uint(1, 2)
	}
	return w.uint(1, 2).uint(0, 2).uint(0, 2)
}

func TestGPPHeaderMatchesEncoder(t *testing.T) {
	// The encoder's own headers (fixtures) and ours agree.
	for ids, want := range map[string]string{"2": "DBABMA", "6": "DBABTA", "7": "DBABLA", "8": "DBABBg"} {
		var id int
		for _, c := range ids {
			id = id*10 + int(c-'0')
		}
		if got := gppHeader(3, 1, id); got != want {
			t.Errorf("header for %s = %s, want %s", ids, got, want)
		}
	}
	got, err := DecodeGPP(gppHeader(3, 1, 2, 6, 8, 13, 27) + "~" + strings.Repeat("x~", 4) + "x")
	if err == nil || got != nil {
		t.Fatal("sections of junk accepted")
	}
}

func TestDecodeGPPMalformed(t *testing.T) {
	usnat2 := usnatCore(2, 16, 3, 1).String()
	cases := []struct{ name, s, want string }{
		{"empty", "", "empty string"},
		{"header version 0", gppHeader(3, 0, 6) + "~1YNN", "header: version: 0 at bit 6 is not 1"},
		{"header version 2", gppHeader(3, 2, 6) + "~1YNN", "header: version: 2 at bit 6 is not 1"},
		{"header type 4", gppHeader(4, 1, 6) + "~1YNN", "header: type: 4 at bit 0 is not 3"},
		{"header truncated", "DBA", "header: section_ids.num_entries: string ends"},
		{"header truncated in ids", "DBAB", "header: section_ids"},
		{"header zero entries", gppHeader(3, 1) + "~1YNN", "0 entries"},
		{"more sections than ids", gppHeader(3, 1, 6) + "~1YNN~1YNN", "header lists 1 sections, the string has 2"},
		{"fewer sections than ids", gppHeader(3, 1, 6, 7), "header lists 2 sections, the string has 0"},
		{"uspv1 malformed", gppHeader(3, 1, 6) + "~1YXN", "section 6 (uspv1): usp: opt_out_sale"},
		{"uspv1 too long", gppHeader(3, 1, 6) + "~1YNNN", "section 6 (uspv1): usp: must be 4 characters"},
		{"tcfeuv2 malformed", gppHeader(3, 1, 2) + "~CP", "section 2 (tcfeuv2): tcf:"},
		{"usnat version 3", gppHeader(3, 1, 7) + "~" + usnatCore(3, 16, 3, 1).String(), "version: 3 at bit 0 is not 1 or 2"},
		{"usnat v1 string marked version 2", gppHeader(3, 1, 7) + "~" + usnatCore(2, 12, 2, 1).String(), "section 7 (usnat): known_child_sensitive_data_consents: string ends"},
		{"usnat v2 string marked version 1", gppHeader(3, 1, 7) + "~" + usnatCore(1, 16, 3, 1).String(), "unexpected data after the last field"},
		{"usnat value 3", gppHeader(3, 1, 7) + "~" + usnatCore(2, 16, 3, 3).String(), "sharing_notice: value 3"},
		{"usnat gpc type 2", gppHeader(3, 1, 7) + "~" + usnat2 + "." + (&bitWriter{}).uint(2, 2).bool(true).String(), "gpc_segment_type 2 is not 1"},
		{"usnat three segments", gppHeader(3, 1, 7) + "~" + usnat2 + ".YA.YA", "3 segments"},
		{"usva has no gpc segment", gppHeader(3, 1, 9) + "~" + usvaCore() + ".YA", "no second segment"},
		{"not base64", gppHeader(3, 1, 7) + "~CVV*", "not base64url"},
		{"too long", "D" + strings.Repeat("A", 33<<10), "longer than 32 KiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeGPP(tc.s)
			if err == nil || got != nil {
				t.Fatalf("accepted: %+v", got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
	// A well-formed usnat v2 decodes with the v2 layout (16 sensitive fields).
	g, err := DecodeGPP(gppHeader(3, 1, 7) + "~" + usnat2)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(g.Sections["usnat"].(USSection)["sensitive_data_processing"].([]int)); n != 16 {
		t.Fatalf("usnat v2 has %d sensitive fields", n)
	}
	// Section ids with no decoder are shown as such.
	g, err = DecodeGPP(gppHeader(3, 1, 5, 40) + "~AAAA~AAAA")
	if err != nil || g.Sections["tcfcav1"].(map[string]string)["undecoded"] == "" || g.Sections["section_40"] == nil {
		t.Fatalf("undecodable sections: %v %v", g, err)
	}
}

// usvaCore is a valid usva core segment (40 bits).
func usvaCore() string {
	w := (&bitWriter{}).uint(1, 6)
	for i := 0; i < 13; i++ {
		w.uint(1, 2)
	}
	return gppPadded(w.uint(0, 2).uint(1, 2).uint(0, 2).uint(0, 2))
}

func TestUSVACoreAlone(t *testing.T) {
	g, err := DecodeGPP(gppHeader(3, 1, 9) + "~" + usvaCore())
	if err != nil || g.Sections["usva"].(USSection)["mspa_covered_transaction"] != 1 {
		t.Fatalf("%v %v", g, err)
	}
}
