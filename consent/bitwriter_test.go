package consent

import "strings"

// bitWriter builds test strings bit by bit, independently of the decoder.
type bitWriter struct{ bits []byte } // one byte per bit, 0 or 1

func (w *bitWriter) uint(v uint64, n int) *bitWriter {
	for i := n - 1; i >= 0; i-- {
		w.bits = append(w.bits, byte(v>>i&1))
	}
	return w
}

func (w *bitWriter) bool(b bool) *bitWriter {
	if b {
		return w.uint(1, 1)
	}
	return w.uint(0, 1)
}

func (w *bitWriter) letters(s string) *bitWriter {
	for _, c := range strings.ToUpper(s) {
		w.uint(uint64(c-'A'), 6)
	}
	return w
}

// ids writes a bitfield of n bits with the given 1-based ids set.
func (w *bitWriter) ids(n int, set ...int) *bitWriter {
	m := map[int]bool{}
	for _, id := range set {
		m[id] = true
	}
	for i := 1; i <= n; i++ {
		w.bool(m[i])
	}
	return w
}

// String is the base64url of the bits, zero-padded to a whole 6-bit
// character as IAB encoders do (not to a byte).
func (w *bitWriter) String() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	out := make([]byte, (len(w.bits)+5)/6)
	for i, b := range w.bits {
		out[i/6] |= b << (5 - i%6)
	}
	for i, v := range out {
		out[i] = alphabet[v]
	}
	return string(out)
}

// tcfCore writes a TCF v2 core segment up to (not including) the vendor
// sections, with the given version and purposes.
func tcfCore(version int, purposes ...int) *bitWriter {
	w := &bitWriter{}
	w.uint(uint64(version), 6).
		uint(17638000000, 36).uint(17638000000, 36). // created, last updated (deciseconds)
		uint(300, 12).uint(2, 12).uint(1, 6).letters("FR").uint(150, 12).
		uint(4, 6).bool(true).bool(false).
		ids(12, 1).ids(24, purposes...).ids(24, 2, 7).bool(false).letters("AA")
	return w
}
