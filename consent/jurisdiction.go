package consent

import (
	"strings"
	"time"
)

// Regime is how a jurisdiction treats personal data for advertising.
type Regime string

const (
	// OptIn: nothing without a basis (GDPR-style): TCF consent, or a
	// first-party category granting the use.
	OptIn Regime = "opt-in"
	// OptOut: allowed unless the user opted out (US state laws): US Privacy,
	// GPP US sections, GPC.
	OptOut Regime = "opt-out"
	// None: no consent law applies; first-party choices are still honoured.
	None Regime = "none"
)

// optInCountries are the EU and EEA members, the United Kingdom and
// Switzerland (ISO 3166-1 alpha-2).
var optInCountries = map[string]bool{
	"AT": true, "BE": true, "BG": true, "HR": true, "CY": true, "CZ": true, "DK": true, "EE": true, "FI": true, "FR": true,
	"DE": true, "GR": true, "HU": true, "IE": true, "IT": true, "LV": true, "LT": true, "LU": true, "MT": true, "NL": true,
	"PL": true, "PT": true, "RO": true, "SK": true, "SI": true, "ES": true, "SE": true, // EU
	"IS": true, "LI": true, "NO": true, // EEA
	"GB": true, "CH": true,
}

// usStateLaw is a US state's comprehensive privacy law and the day it took
// effect (its opt-out rights apply to events from then on).
type usStateLaw struct {
	Law       string
	Effective time.Time
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// USStateLaws lists the states whose laws give opt-outs of sale, sharing or
// targeted advertising, with their effective dates (as enacted; the README
// repeats this table). A US event from any other state is in no regime.
var USStateLaws = map[string]usStateLaw{
	"CA": {"CCPA as amended by CPRA", day(2020, 1, 1)},
	"VA": {"Virginia CDPA", day(2023, 1, 1)},
	"CO": {"Colorado Privacy Act", day(2023, 7, 1)},
	"CT": {"Connecticut Data Privacy Act", day(2023, 7, 1)},
	"UT": {"Utah Consumer Privacy Act", day(2023, 12, 31)},
	"OR": {"Oregon Consumer Privacy Act", day(2024, 7, 1)},
	"TX": {"Texas Data Privacy and Security Act", day(2024, 7, 1)},
	"FL": {"Florida Digital Bill of Rights", day(2024, 7, 1)},
	"MT": {"Montana Consumer Data Privacy Act", day(2024, 10, 1)},
	"DE": {"Delaware Personal Data Privacy Act", day(2025, 1, 1)},
	"IA": {"Iowa Consumer Data Protection Act", day(2025, 1, 1)},
	"NE": {"Nebraska Data Privacy Act", day(2025, 1, 1)},
	"NH": {"New Hampshire SB 255", day(2025, 1, 1)},
	"NJ": {"New Jersey Data Privacy Act", day(2025, 1, 15)},
	"TN": {"Tennessee Information Protection Act", day(2025, 7, 1)},
	"MN": {"Minnesota Consumer Data Privacy Act", day(2025, 7, 31)},
	"MD": {"Maryland Online Data Privacy Act", day(2025, 10, 1)},
	"IN": {"Indiana Consumer Data Protection Act", day(2026, 1, 1)},
	"KY": {"Kentucky Consumer Data Protection Act", day(2026, 1, 1)},
	"RI": {"Rhode Island Data Transparency and Privacy Protection Act", day(2026, 1, 1)},
}

// Jurisdiction is where an event is judged to come from and what applies.
type Jurisdiction struct {
	Country string `json:"country,omitempty"`
	Region  string `json:"region,omitempty"`
	Regime  Regime `json:"regime"`
	// Law names the state law for opt-out regimes, or why the default applied.
	Law string `json:"law,omitempty"`
}

// String is "US-CA", "FR", or "" when unknown.
func (j Jurisdiction) String() string {
	if j.Region != "" && j.Country != "" {
		return j.Country + "-" + j.Region
	}
	return j.Country
}

// Resolve maps a country and region (from a trusted geo header or database)
// to a jurisdiction at time at. An unknown country gets def.
func Resolve(country, region string, at time.Time, def Regime) Jurisdiction {
	c, r := strings.ToUpper(strings.TrimSpace(country)), strings.ToUpper(strings.TrimSpace(region))
	if i := strings.IndexByte(r, '-'); i >= 0 { // "US-CA" style region
		r = r[i+1:]
	}
	j := Jurisdiction{Country: c, Region: r}
	switch {
	case c == "" || c == "XX" || c == "T1": // unknown, Cloudflare's unknown and Tor
		j.Regime, j.Law = def, "unknown country: default regime"
	case optInCountries[c]:
		j.Regime = OptIn
	case c == "US":
		if law, ok := USStateLaws[r]; ok && !at.Before(law.Effective) {
			j.Regime, j.Law = OptOut, law.Law
		} else {
			j.Regime = None
		}
	default:
		j.Regime = None
	}
	return j
}
