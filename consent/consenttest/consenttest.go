// Package consenttest has helpers for tests of consent-aware code: a real
// MaxMind-format database built with MaxMind's own writer.
package consenttest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// WriteGeoDB writes a small GeoIP2-City-shaped database: 203.0.113.0/24
// in France, 198.51.100.0/24 in California, 192.0.2.0/24 in New York.
func WriteGeoDB(t testing.TB) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", IncludeReservedNetworks: true, RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, loc := range map[string][2]string{"203.0.113.0/24": {"FR", ""}, "198.51.100.0/24": {"US", "CA"}, "192.0.2.0/24": {"US", "NY"}} {
		_, n, _ := net.ParseCIDR(cidr)
		rec := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(loc[0])}}
		if loc[1] != "" {
			rec["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String(loc[1])}}
		}
		if err := w.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return path
}
