package bus

// SublistCache is how many subject matches the embedded server's sublists
// have cached.
func SublistCache(b *Bus) (int, error) {
	sz, err := b.ns.Subsz(nil)
	if err != nil {
		return 0, err
	}
	return int(sz.NumCache), nil
}
