package consent

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestDecodeTCFCore(t *testing.T) {
	// Vendor consent as a bitfield (max 10: vendors 2, 10), vendor LI as
	// ranges (5, 40000-40002), one publisher restriction naming 40000.
	w := tcfCore(2, 1, 3, 4, 24).
		uint(10, 16).bool(false).ids(10, 2, 10).
		uint(40002, 16).bool(true).uint(2, 12).bool(false).uint(5, 16).bool(true).uint(40000, 16).uint(40002, 16).
		uint(1, 12).uint(2, 6).uint(1, 2).uint(1, 12).bool(false).uint(40000, 16)
	got, err := DecodeTCF(w.String())
	if err != nil {
		t.Fatal(err)
	}
	want := &TCF{
		Version: 2, CMPID: 300, CMPVersion: 2, ConsentScreen: 1, ConsentLanguage: "FR", VendorListVersion: 150,
		PolicyVersion: 4, IsServiceSpecific: true, PublisherCC: "AA", Created: 1763800000, LastUpdated: 1763800000,
		PurposesConsent: []int{1, 3, 4, 24}, PurposesLI: []int{2, 7}, SpecialFeatures: []int{1},
		VendorConsent: []int{2, 10}, VendorLI: []int{5, 40000, 40001, 40002},
		PublisherRestrictions: []PublisherRestriction{{Purpose: 2, Type: 1, Vendors: []int{40000}}},
	}
	if !equalTCF(got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
	}
}

// equalTCF compares through the JSON contract, which is what users see.
func equalTCF(a, b *TCF) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestDecodeTCFSegments(t *testing.T) {
	core := tcfCore(2, 1).uint(0, 16).bool(false).uint(0, 16).bool(false).uint(0, 12).String()
	disclosed := (&bitWriter{}).uint(1, 3).uint(6, 16).bool(false).ids(6, 1, 6).String()
	pubTC := (&bitWriter{}).uint(3, 3).ids(24, 1, 2).ids(24, 7).uint(2, 6).ids(2, 2).ids(2, 1).String()
	got, err := DecodeTCF(core + "." + disclosed + "." + pubTC)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.DisclosedVendors, []int{1, 6}) || got.PublisherTC == nil ||
		!slices.Equal(got.PublisherTC.PurposesConsent, []int{1, 2}) || !slices.Equal(got.PublisherTC.PurposesLI, []int{7}) ||
		!slices.Equal(got.PublisherTC.CustomPurposesConsent, []int{2}) || !slices.Equal(got.PublisherTC.CustomPurposesLI, []int{1}) {
		t.Fatalf("segments: %+v %+v", got.DisclosedVendors, got.PublisherTC)
	}
	if len(got.VendorConsent) != 0 || got.VendorConsent == nil {
		t.Fatal("empty vendor list must be [] (not null) in JSON")
	}
}

// IAB strings pad to 6-bit characters: a segment of 5 characters (30 bits)
// is valid, though encoding/base64 would refuse it.
func TestDecodeTCFCharacterPadding(t *testing.T) {
	core := tcfCore(2, 1).uint(0, 16).bool(false).uint(0, 16).bool(false).uint(0, 12).String()
	seg := (&bitWriter{}).uint(1, 3).uint(9, 16).bool(false).ids(9, 3, 9).uint(0, 1).String()
	if len(seg) != 5 {
		t.Fatalf("segment %q is %d characters", seg, len(seg))
	}
	got, err := DecodeTCF(core + "." + seg)
	if err != nil || !slices.Equal(got.DisclosedVendors, []int{3, 9}) {
		t.Fatalf("%v %v", err, got)
	}
}

func TestDecodeTCFMalformed(t *testing.T) {
	valid := tcfCore(2, 1).uint(0, 16).bool(false).uint(0, 16).bool(false).uint(0, 12)
	full := valid.String()
	cases := []struct{ name, s, want string }{
		{"empty", "", "empty string"},
		{"version 1", tcfCore(1).String(), "version: 1 at bit 0 is not 2"},
		{"version 3", tcfCore(3).String(), "version: 3 at bit 0 is not 2"},
		{"version 63", tcfCore(63).String(), "version: 63"},
		{"not base64", "CP@x", "not base64url"},
		{"truncated in created", full[:4], "created: string ends"},
		{"truncated in vendor section", tcfCore(2).uint(20, 16).bool(false).String(), "vendor_consent: string ends"},
		{"vendor beyond max", tcfCore(2).uint(10, 16).bool(true).uint(1, 12).bool(false).uint(11, 16).String(), "vendor_consent: entry 0 covers vendors 11-11, outside 1-10"},
		{"range backwards", tcfCore(2).uint(10, 16).bool(true).uint(1, 12).bool(true).uint(5, 16).uint(3, 16).String(), "covers vendors 5-3"},
		{"vendor zero", tcfCore(2).uint(10, 16).bool(true).uint(1, 12).bool(false).uint(0, 16).String(), "covers vendors 0-0"},
		{"restriction type 3", tcfCore(2).uint(0, 16).bool(false).uint(0, 16).bool(false).uint(1, 12).uint(1, 6).uint(3, 2).uint(0, 12).String(), "restriction type 3 is undefined"},
		{"bad letter", (&bitWriter{}).uint(2, 6).uint(0, 72).uint(0, 30).uint(26, 6).uint(0, 200).String(), "consent_language: letter value 26"},
		{"unknown segment", full + "." + (&bitWriter{}).uint(5, 3).uint(0, 5).String(), "unknown segment type 5"},
		{"repeated segment", full + "." + (&bitWriter{}).uint(1, 3).uint(0, 16).bool(false).String() + "." + (&bitWriter{}).uint(1, 3).uint(0, 16).bool(false).String(), "appears twice"},
		{"empty segment", full + ".", "segment 1:"},
		{"too long", "C" + strings.Repeat("A", 17<<10), "longer than 16 KiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeTCF(tc.s)
			if err == nil || got != nil {
				t.Fatalf("accepted: %+v", got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// A hostile string claiming the whole id space in thousands of restriction
// entries is refused without allocating for each claim.
func TestDecodeTCFHostileRanges(t *testing.T) {
	// 100 restrictions claiming 1-65535 each fit in the 16 KiB length cap
	// but would expand to 6.5 million ids.
	w := tcfCore(2).uint(0, 16).bool(false).uint(0, 16).bool(false).uint(100, 12)
	for i := 0; i < 100; i++ {
		w.uint(1, 6).uint(0, 2).uint(1, 12).bool(true).uint(1, 16).uint(65535, 16)
	}
	_, err := DecodeTCF(w.String())
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("err = %v", err)
	}
	// Overlapping ranges are merged, not double counted.
	w = tcfCore(2).uint(100, 16).bool(true).uint(3, 12).bool(true).uint(1, 16).uint(60, 16).bool(true).uint(50, 16).uint(100, 16).bool(false).uint(7, 16).
		uint(0, 16).bool(false).uint(0, 12)
	got, err := DecodeTCF(w.String())
	if err != nil || len(got.VendorConsent) != 100 || got.VendorConsent[99] != 100 {
		t.Fatalf("merged ranges: %v %d", err, len(got.VendorConsent))
	}
}

func TestDecodeUSP(t *testing.T) {
	for s, want := range map[string]USP{"1YNN": {1, "Y", "N", "N"}, "1yny": {1, "Y", "N", "Y"}, "1---": {1, "-", "-", "-"}} {
		got, err := DecodeUSP(s)
		if err != nil || *got != want {
			t.Errorf("%s: %+v %v", s, got, err)
		}
	}
	for s, want := range map[string]string{"": "4 characters", "1YN": "4 characters", "2YNN": "version", "1YXN": "opt_out_sale at offset 2", "1YN?": "lspa at offset 3"} {
		if _, err := DecodeUSP(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", s, err, want)
		}
	}
}

func TestDetectKind(t *testing.T) {
	for s, want := range map[string]string{"1YNN": KindUSP, "CPXxRfAPXx": KindTCF, "DBABMA~x": KindGPP} {
		if got, err := DetectKind(s); err != nil || got != want {
			t.Errorf("%s: %s %v", s, got, err)
		}
	}
	if _, err := DetectKind("hello"); err != ErrUnknownKind {
		t.Fatal(err)
	}
}
