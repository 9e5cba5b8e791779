package consent

import (
	"encoding/json"
	"testing"
	"time"
)

// checkDecode is the contract every decoder keeps on hostile input: no panic,
// either an error and no result or a result that encodes, within bounded time.
func checkDecode[T any](t *testing.T, name string, s string, dec func(string) (*T, error)) {
	start := time.Now()
	got, err := dec(s)
	if d := time.Since(start); d > 2*time.Second { // wall clock under fuzzing load: catches blowups, not noise
		t.Fatalf("%s took %v on a %d-byte input", name, d, len(s))
	}
	if err != nil {
		if got != nil {
			t.Fatalf("%s returned a result with the error %v", name, err)
		}
		if err.Error() == "" {
			t.Fatalf("%s: empty error", name)
		}
		return
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("%s result does not encode: %v", name, err)
	}
}

func FuzzDecodeTCF(f *testing.F) {
	for _, s := range []string{
		"CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
		tcfCore(2, 1, 3).uint(10, 16).bool(true).uint(2, 12).bool(false).uint(3, 16).bool(true).uint(5, 16).uint(9, 16).uint(0, 16).bool(false).uint(0, 12).String(),
		tcfCore(2).uint(0, 16).bool(false).uint(0, 16).bool(false).uint(1, 12).uint(2, 6).uint(1, 2).uint(1, 12).bool(false).uint(40000, 16).String() + "." + (&bitWriter{}).uint(1, 3).uint(6, 16).bool(false).ids(6, 1).String(),
		"", "C", "CP", "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA.IAAA", "CA==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkDecode(t, "DecodeTCF", s, DecodeTCF) })
}

func FuzzDecodeUSP(f *testing.F) {
	for _, s := range []string{"1YNN", "1---", "1yny", "", "2YNN", "1YN\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkDecode(t, "DecodeUSP", s, DecodeUSP) })
}

func FuzzDecodeGPP(f *testing.F) {
	for _, s := range []string{
		"DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA", "DBABTA~1YNN", "DBABLA~CVVpGGGGkmVk.YA", "DBABLA~BVVpVVVWVpA",
		"DBABBg~BQRVVUCA", "DBABUYA~BVlp.Zgk", "DBAFNZhoYA~CP9HEwAP9HEwAAfAFCDEDwEoAPLAAEMAAAqIABuAAAAA.IAAA.YAAAAAAAAAAA~1NNN~BAQAAABA.YA~BAgAAABA~BQBA.VVU",
		"D", "DBA", "DBAB~", "DBABMA~",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkDecode(t, "DecodeGPP", s, DecodeGPP) })
}

func BenchmarkDecodeTCF(b *testing.B) {
	s := tcfString(4, true, []int{1, 2, 3, 4, 7, 9, 10}, []int{2, 7}, []int{1, 5, 10, 32, 755, 1001})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeTCF(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeGPP(b *testing.B) {
	s := "DBAFNZhoYA~CP9HEwAP9HEwAAfAFCDEDwEoAPLAAEMAAAqIABuAAAAA.IAAA.YAAAAAAAAAAA~1NNN~BAQAAABA.YA~BAgAAABA~BQBA.VVU"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeGPP(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	p := DefaultPolicy(map[string]int{"tiktok": 1001})
	j := Resolve("FR", "", time.Now(), OptIn)
	s := Signals{TCF: tcfString(4, true, []int{1, 3, 4, 7}, nil, []int{1001})}
	b.ReportAllocs()
	for b.Loop() {
		Decide(p, j, s)
	}
}
