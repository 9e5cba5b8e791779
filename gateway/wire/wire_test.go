package wire

import (
	"strings"
	"testing"
)

func TestRoundTripAndErrors(t *testing.T) {
	var b []byte
	hexes := []string{"", "00ff", "abc", "ABCD", strings.Repeat("9f", 32), "zz",
		"a:00000000000000000000000000000026", "x:0f", "x:", "x:f", ":0f", "ab:0f", "a:0F", "a:00ff:"}
	for _, h := range hexes {
		b = AppendHex(b, h)
	}
	b = AppendStr(b, "café")
	b = AppendBool(b, true)
	d := Dec{B: b, What: "thing"}
	for _, h := range hexes {
		if got := d.Hex("h"); got != h {
			t.Fatalf("hex %q came back %q", h, got)
		}
	}
	if d.Str("s") != "café" || !d.Bool("b") || d.Done("b") != nil {
		t.Fatalf("str/bool: %v", d.Err)
	}
	if n := len(AppendHex(nil, strings.Repeat("9f", 32))); n != 34 {
		t.Fatalf("a 64-digit hex takes %d bytes, want 34", n)
	}
	if n := len(AppendHex(nil, "a:"+strings.Repeat("9f", 16))); n != 19 {
		t.Fatalf("a profile id takes %d bytes, want 19", n)
	}

	cases := []struct {
		b    []byte
		read func(*Dec)
		want string
	}{
		{[]byte{0xff}, func(d *Dec) { d.Uvarint("n") }, "thing's n is truncated"},
		{[]byte{200, 1, 'x'}, func(d *Dec) { d.Str("name") }, "thing's name is truncated"}, // 200 bytes announced, 1 there
		{[]byte{2}, func(d *Dec) { d.Bool("flag") }, "thing's flag is not a bool"},
		{[]byte{7, 0}, func(d *Dec) { d.Hex("id") }, "thing's id is of unknown kind 7"},
		{[]byte{1, 0}, func(d *Dec) { d.Hex("id") }, "thing's id is empty hex"},
		{[]byte{2, 'a', 0}, func(d *Dec) { d.Hex("id") }, "thing's id is empty hex"},
		{[]byte{2}, func(d *Dec) { d.Hex("id") }, "thing's id is truncated"},
		{[]byte{2, 'a', 2, 0xff}, func(d *Dec) { d.Hex("id") }, "thing's id is truncated"},
		{[]byte{0, 0, 9}, func(d *Dec) { d.Hex("id"); d.Done("id") }, "thing has 1 bytes after its id"},
		{[]byte{0xff, 0xff, 0xff, 0x0f}, func(d *Dec) { d.Count("items") }, "thing's items is truncated"},
	}
	for _, c := range cases {
		d := Dec{B: c.b, What: "thing"}
		c.read(&d)
		if d.Err == nil || d.Err.Error() != c.want {
			t.Errorf("%v: %v, want %q", c.b, d.Err, c.want)
		}
		if d.Uvarint("later") != 0 || d.Err.Error() != c.want {
			t.Errorf("%v: a read after the error changed it: %v", c.b, d.Err)
		}
	}
}

func TestOpen(t *testing.T) {
	var legacy struct{ A int }
	if d, err := Open([]byte(`{"A":7}`), 3, "thing", &legacy); d != nil || err != nil || legacy.A != 7 {
		t.Fatalf("JSON: %v %v %+v", d, err, legacy)
	}
	if _, err := Open([]byte(`{"A":`), 3, "thing", &legacy); err == nil || !strings.HasPrefix(err.Error(), "thing is not valid JSON") {
		t.Fatalf("bad JSON: %v", err)
	}
	for _, b := range [][]byte{nil, {4, 1}} {
		if d, err := Open(b, 3, "thing", &legacy); d != nil || err == nil || err.Error() != "thing has an unknown format" {
			t.Fatalf("%v: %v %v", b, d, err)
		}
	}
	d, err := Open([]byte{3, 9}, 3, "thing", &legacy)
	if err != nil || d.Uvarint("n") != 9 || d.Done("n") != nil {
		t.Fatalf("binary: %v %v", d, err)
	}
}
