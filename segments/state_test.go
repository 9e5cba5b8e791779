package segments

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// goldenStates are the states in testdata/state-v1.hex, which holds their
// version 1 encoding as the previous release wrote it (one hex line each).
func goldenStates() []*state {
	email := "53fc2dbc4c76fe43e1504d2bbb0a6d947c0143cc1511623063df5a0ff7b3c3ce"
	ext := "00002182e2b925335353d9526befba9ab4d0466746c2c1c1d9d75958bbc0bc22"
	other := "8bef1c24e2a25132cf0ab42d98e841a2f7f4839d34de6043af5b3995dc9dcc3f"
	return []*state{
		// A server profile: hashed email and external id, an email merged
		// in from another profile, a profile alias that is not its own.
		{site: "shop", id: "x:00002182e2b925335353d9526befba9a", seq: 220475, firstSeen: 1764855590366, email: email, extID: ext,
			aliases: []string{"px:00002182e2b925335353d9526befba9a", "e" + email, "x" + ext, "e" + other, "pa:0badc0de"}, country: "US",
			uses: []string{"measurement", "segments"}, usesAt: 1764855590366,
			streams: map[uint32][]entry{3: {{sec: 1764855590, count: 1, sum: 0}}, 7: {{sec: 1764855000, count: 2, sum: 59.5}, {sec: 1764855590, count: 1, sum: 10}}},
			members: []string{"leads_30d"}, due: 1767447590366, trans: map[string]uint32{"leads_30d": 1}, metrics: map[string]float64{"top": 69.5}},
		// A browser profile, with an identifier that is not hex.
		{site: "shop", id: "a:00000000000000000000000000000026", seq: 9, firstSeen: 1764855000000, phone: "NOT-HEX+1555",
			aliases: []string{"pa:00000000000000000000000000000026", "a00000000000000000000000000000026", "tNOT-HEX+1555"},
			held:    []string{"buyers_30d"}, merged: "a:ffff"},
	}
}

func readGoldenV1(t *testing.T) [][]byte {
	t.Helper()
	f, err := os.Open("testdata/state-v1.hex")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		b, err := hex.DecodeString(sc.Text())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// States stored by the previous release (version 1) still read, and what
// they decode to is stored again in version 2, smaller.
func TestStateVersion1StillDecodes(t *testing.T) {
	prog, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := goldenStates()
	v1 := readGoldenV1(t)
	if len(v1) != len(want) {
		t.Fatalf("%d golden lines for %d states", len(v1), len(want))
	}
	for i, b := range v1 {
		if b[0] != stateVersionV1 {
			t.Fatalf("golden %d: format byte %d", i, b[0])
		}
		got, err := decodeState(want[i].site, want[i].id, b)
		if err != nil {
			t.Fatalf("golden %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("golden %d decodes to\n%+v\nwant\n%+v", i, got, want[i])
		}
		v2 := got.encode(nil, prog)
		if v2[0] != stateVersion {
			t.Errorf("golden %d re-encoded with format byte %d", i, v2[0])
		}
		again, err := decodeState(want[i].site, want[i].id, v2)
		if err != nil || !reflect.DeepEqual(again, want[i]) {
			t.Errorf("golden %d: version 2 round trip: %v\n%+v", i, err, again)
		}
	}
}

// Version 2 keeps 64-character hex identifiers as bytes and stores an alias
// that repeats an identifier or the profile's own id as a reference.
func TestStateVersion2IsCompact(t *testing.T) {
	prog, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	v1 := readGoldenV1(t)
	for i, s := range goldenStates() {
		b := s.encode(nil, prog)
		t.Logf("state %d: %d bytes (version 1: %d)", i, len(b), len(v1[i]))
		for _, id := range []string{s.email, s.extID, s.id[2:]} {
			if len(id) == 64 && bytes.Contains(b, []byte(id)) {
				t.Errorf("state %d: %s stored as hex text", i, id[:8])
			}
		}
		if bytes.Contains(b, []byte(s.id)) {
			t.Errorf("state %d: its own id is stored in its value", i)
		}
	}
	// The server profile: version 1 stored its three hashes five times as
	// text (320 bytes); version 2 three times 34 bytes and three references.
	b := goldenStates()[0].encode(nil, prog)
	if saved := len(v1[0]) - len(b); saved < 320-3*34-3 {
		t.Errorf("server state: %d bytes, %d fewer than version 1's %d, want at least %d fewer", len(b), saved, len(v1[0]), 320-3*34-3)
	}
	// An anonymous browser profile's aliases are two bytes.
	s := &state{site: "shop", id: "a:00000000000000000000000000000026",
		aliases: []string{"pa:00000000000000000000000000000026", "a00000000000000000000000000000026"}}
	if n, base := len(s.encode(nil, prog)), len((&state{site: "shop", id: s.id}).encode(nil, prog)); n != base+2 {
		t.Errorf("browser profile's own aliases take %d bytes, want 2", n-base)
	}
}

// Truncated or mangled version 2 aliases are errors, not panics or guesses.
func TestStateVersion2BadAliases(t *testing.T) {
	prog, _ := Compile(nil)
	s := &state{site: "s", id: "x:1", aliases: []string{"px:1", "e00"}}
	good := s.encode(nil, prog)
	if _, err := decodeState("s", "x:1", good); err != nil {
		t.Fatal(err)
	}
	for n := 1; n < len(good); n++ {
		if st, err := decodeState("s", "x:1", good[:n]); err == nil {
			// A prefix can only decode if it is a whole state; it never is here.
			t.Errorf("%d-byte prefix decoded: %+v", n, st)
		}
	}
	// The anon reference on a profile whose id is not an anon id.
	bad := (&state{site: "s", id: "a:1", aliases: []string{"a1"}}).encode(nil, prog)
	if _, err := decodeState("s", "x:1", bad); err == nil {
		t.Error("an anon alias reference decoded for an x: profile")
	}
}

// Delta ids do not change from one version to the next (TW_AUDIENCE's
// Nats-Msg-Id: a delta published before an upgrade and again after it must
// be taken for the same): the format the ids were first made with.
func TestDeltaIDFormat(t *testing.T) {
	for _, c := range []struct {
		site, profile, seg string
		first              int64
		n                  uint32
	}{{"shop", "a:0123456789abcdef0123456789abcdef", "cart_abandoners_7d", 1763800000000, 1},
		{"s", "x:" + strings.Repeat("f", 64), "high_value", -5, 4294967295}, {"", "", "", 0, 0}} {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%s\x00%d", c.site, c.profile, c.first, c.seg, c.n))
		if got, want := deltaID(c.site, c.profile, c.first, c.seg, c.n), hex.EncodeToString(sum[:16]); got != want {
			t.Errorf("%+v: %s, want %s", c, got, want)
		}
	}
	if got := deltaID("shop", "a:1", 1, "s", 2); got != "65b2ad311cea083d42c7593d9255cb5c" { // sha256sum of "shop\0a:1\01\0s\02", first 16 bytes
		t.Errorf("a known id changed: %s", got)
	}
}
