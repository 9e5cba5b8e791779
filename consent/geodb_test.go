package consent

import (
	"net/netip"
	"testing"

	"github.com/tagway/tagway/consent/consenttest"
)

func TestGeoDB(t *testing.T) {
	db, err := OpenGeoDB(consenttest.WriteGeoDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for ip, want := range map[string]Geo{
		"203.0.113.0": {Country: "FR"}, "198.51.100.0": {Country: "US", Region: "CA"}, "::ffff:192.0.2.7": {Country: "US", Region: "NY"},
		"10.1.2.3": {},
	} {
		got, err := db.Lookup(netip.MustParseAddr(ip))
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", ip, got, err, want)
		}
	}
	var none *GeoDB
	if g, err := none.Lookup(netip.MustParseAddr("203.0.113.1")); err != nil || g != (Geo{}) {
		t.Fatal("nil GeoDB")
	}
}
