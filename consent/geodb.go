package consent

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// GeoDB looks an IP address up in a MaxMind-format database (GeoIP2 or
// GeoLite2 City or Country, or any database with the same country and
// subdivisions fields). It is used when no trusted geo header says where a
// user is. Safe for concurrent use.
type GeoDB struct {
	r *maxminddb.Reader
}

// OpenGeoDB opens the database at path.
func OpenGeoDB(path string) (*GeoDB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("consent.geo.mmdb: %w", err)
	}
	return &GeoDB{r: r}, nil
}

type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"subdivisions"`
}

// Lookup returns the country and first subdivision (the US state) of ip,
// or an empty Geo when the database does not know it.
func (g *GeoDB) Lookup(ip netip.Addr) (Geo, error) {
	if g == nil || !ip.IsValid() {
		return Geo{}, nil
	}
	var rec geoRecord
	if err := g.r.Lookup(ip.Unmap()).Decode(&rec); err != nil {
		return Geo{}, fmt.Errorf("consent: geo lookup: %w", err)
	}
	geo := Geo{Country: rec.Country.ISOCode}
	if len(rec.Subdivisions) > 0 {
		geo.Region = rec.Subdivisions[0].ISOCode
	}
	return geo, nil
}

// Close releases the database.
func (g *GeoDB) Close() error {
	if g == nil {
		return nil
	}
	return g.r.Close()
}
