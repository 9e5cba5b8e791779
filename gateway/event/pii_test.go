package event

import (
	"strings"
	"testing"
	"time"
)

func TestHashEmail(t *testing.T) {
	a, err := HashEmail("  Jane.Doe@Example.COM ")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := HashEmail("jane.doe@example.com")
	if a != b || len(a) != 64 {
		t.Fatalf("normalisation differs: %s vs %s", a, b)
	}
	if a != sha256Hex("jane.doe@example.com") {
		t.Fatalf("hash = %s", a)
	}
	pre := strings.ToUpper(a)
	if got, _ := HashEmail(pre); got != a {
		t.Fatalf("already-hashed value changed: %s", got)
	}
	for _, bad := range []string{"", "jane", "@x.com", "jane@", "ja ne@x.com", strings.Repeat("a", 250) + "@x.com"} {
		if _, err := HashEmail(bad); err != ErrEmail {
			t.Errorf("HashEmail(%q) err = %v, want ErrEmail", bad, err)
		}
	}
}

func TestNormalizePhone(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"+1 (555) 123-4567", "15551234567"},
		{"0044 20 7946 0958", "442079460958"},
		{"+33.6.12.34.56.78", "33612345678"},
		{" 4915112345678 ", "4915112345678"},
	} {
		got, err := NormalizePhone(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizePhone(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "12345", "+1 555 CALL NOW", "1234567890123456", "0612345678", "++15551234567", "1+5551234567"} {
		if got, err := NormalizePhone(bad); err != ErrPhone {
			t.Errorf("NormalizePhone(%q) = %q, %v; want ErrPhone", bad, got, err)
		}
	}
	h, err := HashPhone("+1 555 123 4567")
	if err != nil || h != sha256Hex("15551234567") {
		t.Fatalf("HashPhone = %s, %v", h, err)
	}
}

func TestHashExternalID(t *testing.T) {
	h, err := HashExternalID("  Cust-42 ")
	if err != nil || h != sha256Hex("Cust-42") {
		t.Fatalf("got %s %v", h, err)
	}
	if _, err := HashExternalID("   "); err != ErrExternalID {
		t.Fatalf("empty id: %v", err)
	}
}

func TestTruncateIP(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"203.0.113.77", "203.0.113.0"},
		{"2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"},
		{"::ffff:198.51.100.9", "198.51.100.0"},
		{"not-an-ip", ""},
	} {
		if got := TruncateIP(tc.in); got != tc.want {
			t.Errorf("TruncateIP(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewIDOrdered(t *testing.T) {
	t0 := time.UnixMilli(1763800000000)
	a, b := NewID(t0), NewID(t0.Add(time.Millisecond))
	if len(a) != 32 || a[:12] >= b[:12] {
		t.Fatalf("ids not time-ordered: %s %s", a, b)
	}
	if a == NewID(t0) {
		t.Fatal("ids repeat")
	}
	if !IsAnonID(NewAnonID()) || IsAnonID("XYZ") {
		t.Fatal("IsAnonID")
	}
}

func TestProfileID(t *testing.T) {
	h := sha256Hex("x")
	if got := ProfileID(&User{AnonID: "abc", EmailSHA256: h}); got != "a:abc" {
		t.Fatal(got)
	}
	if got := ProfileID(&User{EmailSHA256: h}); got != "e:"+h[:32] {
		t.Fatal(got)
	}
	if got := ProfileID(&User{}); got != "" {
		t.Fatal(got)
	}
	if got := ProfileID(&User{PhoneSHA256: "short"}); got != "p:short" {
		t.Fatal(got) // malformed values never panic
	}
}

func BenchmarkHashEmail(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HashEmail("  Jane.Doe@Example.COM "); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHashPhone(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HashPhone("+1 (555) 123-4567"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHashPhoneE164(t *testing.T) {
	for _, c := range []struct{ in, plain string }{
		{"+1 (657) 777-0000", "+16577770000"},
		{"0044 20 7946 0000", "+442079460000"},
		{"16577770000", "+16577770000"},
	} {
		got, err := HashPhoneE164(c.in)
		if err != nil || got != sha256Hex(c.plain) {
			t.Errorf("HashPhoneE164(%q) = %s, %v; want sha256(%q)", c.in, got, err, c.plain)
		}
		if d, _ := HashPhone(c.in); d == got {
			t.Errorf("%q: the E.164 hash equals the digits hash", c.in)
		}
	}
	h := sha256Hex("+16577770000")
	if got, _ := HashPhoneE164(strings.ToUpper(h)); got != h {
		t.Error("an already hashed phone is not passed through lowercased")
	}
	if _, err := HashPhoneE164("12"); err != ErrPhone {
		t.Errorf("short: %v", err)
	}
}
