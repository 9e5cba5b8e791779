package gateway

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagway/tagway/consent"
	"github.com/tagway/tagway/consent/audit"
	"github.com/tagway/tagway/consent/consenttest"
	"github.com/tagway/tagway/gateway/bus/bustest"
	"github.com/tagway/tagway/gateway/kv"
)

// startConsentGateway runs a gateway with a real consent engine (default
// regime none, geo header CF-IPCountry) and the given trusted proxies.
func startConsentGateway(t *testing.T, trusted []string) *testGW {
	t.Helper()
	return startConsentGatewayGeo(t, trusted, nil)
}

func startConsentGatewayGeo(t *testing.T, trusted []string, geo GeoLookup) *testGW {
	t.Helper()
	st, err := kv.Open(t.TempDir(), kv.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cc := consent.Config{DefaultRegime: consent.None}
	cc.Geo.CountryHeader = "CF-IPCountry"
	eng, err := consent.NewEngine(cc, st.DB(), audit.New(st.DB(), nil), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tg := startGateway(t, nil)
	_ = tg.g.Shutdown(t.Context())
	cfg := tg.g.cfg
	cfg.TrustedProxies, cfg.GeoCountryHeader = trusted, "CF-IPCountry"
	reg := prometheus.NewRegistry()
	b := bustest.OpenEmbedded(t)
	g, err := New(cfg, Deps{Publisher: b, Consent: eng, Registry: reg, Now: time.Now, GeoDB: geo})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(t.Context()) })
	return &testGW{g: g, bus: b, url: "http://" + g.Addr().String(), reg: reg}
}

// A client that is not a trusted proxy cannot say where it is: otherwise a
// GDPR user could claim a country without consent law.
func TestGeoHeadersOnlyFromTrustedProxies(t *testing.T) {
	ev := `{"site":"shop","data":[{"event":"PageView"}]}`
	hdr := map[string]string{"CF-IPCountry": "FR"}

	untrusted := startConsentGateway(t, nil)
	if _, a := untrusted.postBrowser(t, ev, hdr); a.Accepted != 1 {
		t.Fatalf("untrusted FR header changed the regime: %+v", a)
	}
	envs, _ := untrusted.envelopes(t)
	if len(envs) != 1 || !envs[0].Consent.Decided || envs[0].Consent.Jurisdiction != "" {
		t.Fatalf("untrusted: %+v", envs)
	}

	trusted := startConsentGateway(t, []string{"127.0.0.1/32"})
	_, a := trusted.postBrowser(t, ev, hdr)
	if a.Accepted != 0 || a.NotConsented != 1 {
		t.Fatalf("trusted FR header ignored: %+v", a)
	}
	if got := trusted.counter(t, "tagway_events_not_consented_total", map[string]string{"reason": "no_signal"}); got != 1 {
		t.Fatalf("not-consented metric = %v", got)
	}
	if got := trusted.counter(t, "tagway_events_total", map[string]string{"source": "browser", "disposition": "no_consent"}); got != 1 {
		t.Fatalf("no_consent disposition = %v", got)
	}
}

// With a MaxMind database and no trusted header: the browser's IP (here via
// X-Forwarded-For from the trusted proxy) and a server event's user.ip say
// where the user is.
func TestGeoFromDatabase(t *testing.T) {
	db, err := consent.OpenGeoDB(consenttest.WriteGeoDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tg := startConsentGatewayGeo(t, []string{"127.0.0.1/32"}, db)
	_, a := tg.postBrowser(t, `{"site":"shop","data":[{"event":"PageView"}]}`, map[string]string{"X-Forwarded-For": "203.0.113.9"})
	if a.NotConsented != 1 {
		t.Fatalf("browser in France (by IP) without consent: %+v", a)
	}
	_, a = tg.postServer(t, `{"site":"shop","data":[{"event":"Lead","event_id":"geo-1","user":{"ip":"198.51.100.7"}}]}`)
	if a.Accepted != 1 {
		t.Fatalf("server event from California: %+v", a)
	}
	envs, _ := tg.envelopes(t)
	if len(envs) != 1 || envs[0].Consent.Jurisdiction != "US-CA" {
		t.Fatalf("jurisdiction from user.ip: %+v", envs)
	}
}
