package consent

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// tcfString builds a complete TCF v2 string.
func tcfString(policy int, serviceSpecific bool, purposes, li, vendors []int) string {
	w := &bitWriter{}
	w.uint(2, 6).uint(17638000000, 36).uint(17638000000, 36).uint(300, 12).uint(2, 12).uint(1, 6).letters("EN").uint(150, 12).
		uint(uint64(policy), 6).bool(serviceSpecific).bool(false).ids(12).ids(24, purposes...).ids(24, li...).bool(false).letters("AA")
	w.uint(1200, 16).bool(false).ids(1200, vendors...) // vendor consent
	w.uint(0, 16).bool(false)                          // vendor LI
	w.uint(0, 12)                                      // restrictions
	return w.String()
}

// usnatString builds a GPP string with one usnat v2 section.
func usnatString(saleOptOut, sharingOptOut, targetedOptOut uint64, gpc *bool) string {
	w := (&bitWriter{}).uint(2, 6)
	for i := 0; i < 6; i++ {
		w.uint(1, 2) // notices given
	}
	w.uint(saleOptOut, 2).uint(sharingOptOut, 2).uint(targetedOptOut, 2)
	for i := 0; i < 16+3+1; i++ {
		w.uint(0, 2)
	}
	s := gppHeader(3, 1, 7) + "~" + gppPadded(w.uint(1, 2).uint(0, 2).uint(0, 2))
	if gpc != nil {
		s += "." + gppPadded((&bitWriter{}).uint(1, 2).bool(*gpc))
	}
	return s
}

func TestResolve(t *testing.T) {
	at := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		country, region string
		at              time.Time
		want            Regime
	}{
		{"FR", "", at, OptIn}, {"de", "", at, OptIn}, {"GB", "ENG", at, OptIn}, {"CH", "", at, OptIn}, {"NO", "", at, OptIn},
		{"US", "CA", at, OptOut}, {"US", "US-CA", at, OptOut}, {"US", "RI", at, OptOut},
		{"US", "RI", time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC), None}, // before the law took effect
		{"US", "NY", at, None}, {"US", "", at, None}, {"JP", "", at, None},
		{"", "", at, OptIn}, {"XX", "", at, OptIn}, // unknown: the default given
	} {
		if j := Resolve(tc.country, tc.region, tc.at, OptIn); j.Regime != tc.want {
			t.Errorf("%s-%s at %s: %s, want %s", tc.country, tc.region, tc.at.Format("2006-01-02"), j.Regime, tc.want)
		}
	}
}

// decideCase is one of TestDecide's inputs and what it must give.
type decideCase struct {
	name    string
	j       Jurisdiction
	s       Signals
	allowed []string
	denied  map[string]string // use → reason substring
}

// decideCases are TestDecide's cases (TestDecisionCache runs them too).
func decideCases() (Policy, []decideCase) {
	at := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	p := DefaultPolicy(map[string]int{"tiktok": 1001})
	all := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	yes, no := true, false
	eu, ca, ny := Resolve("FR", "", at, OptIn), Resolve("US", "CA", at, OptIn), Resolve("US", "NY", at, OptIn)
	const M, S, F = UseMeasurement, UseSegments, "forward:tiktok"
	return p, []decideCase{
		{"opt-in, no signal", eu, Signals{}, nil, map[string]string{M: "no consent signal", S: "no consent signal", F: "no consent signal"}},
		{"opt-in, TCF full", eu, Signals{TCF: tcfString(4, true, all, nil, []int{1001})}, []string{F, M, S}, nil},
		{"opt-in, TCF full in GPP", eu, Signals{GPP: gppHeader(3, 1, 2) + "~" + tcfString(4, true, all, nil, []int{1001})}, []string{F, M, S}, nil},
		{"opt-in, TCF partial (1, 7)", eu, Signals{TCF: tcfString(4, true, []int{1, 7}, nil, []int{1001})}, []string{F, M}, map[string]string{S: "no consent for purpose 3"}},
		{"opt-in, TCF none", eu, Signals{TCF: tcfString(4, true, nil, nil, nil)}, nil, map[string]string{M: "no consent for purpose 1", S: "purpose 1", F: "purpose 1"}},
		{"opt-in, TCF vendor missing", eu, Signals{TCF: tcfString(4, true, all, nil, []int{7})}, []string{M, S}, map[string]string{F: "no consent for vendor 1001"}},
		{"opt-in, measurement via LI on 7", eu, Signals{TCF: tcfString(4, true, []int{1}, []int{7}, nil)}, []string{M}, map[string]string{S: "purpose 3", F: "no consent for vendor 1001"}},
		{"opt-in, LI is no basis for purpose 3", eu, Signals{TCF: tcfString(4, true, []int{1, 4, 7}, []int{3}, []int{1001})}, []string{F, M}, map[string]string{S: "no consent for purpose 3"}},
		{"opt-in, TCF policy 2 (pre-2.2)", eu, Signals{TCF: tcfString(2, true, all, nil, []int{1001})}, nil, map[string]string{M: "predates TCF 2.2", S: "predates", F: "predates"}},
		{"opt-in, TCF not service-specific", eu, Signals{TCF: tcfString(4, false, all, nil, []int{1001})}, nil, map[string]string{M: "not service-specific"}},
		{"opt-in, TCF malformed", eu, Signals{TCF: "CPXx"}, nil, map[string]string{M: "tcf string malformed"}},
		{"opt-in, first-party analytics", eu, Signals{Categories: map[string]bool{"analytics": true}}, []string{M}, map[string]string{S: "no consent signal"}},
		{"opt-in, first-party ads refused beats TCF", eu, Signals{TCF: tcfString(4, true, all, nil, []int{1001}), Categories: map[string]bool{"ads": false}}, []string{M}, map[string]string{S: "first-party category ads refused", F: "ads refused"}},
		{"opt-in, USP and GPC ignored", eu, Signals{USP: "1YYN", GPC: true}, nil, map[string]string{M: "no consent signal"}},
		{"opt-out, no signal", ca, Signals{}, []string{F, M, S}, nil},
		{"opt-out, USP 1YNN", ca, Signals{USP: "1YNN"}, []string{F, M, S}, nil},
		{"opt-out, USP 1YYN (sale)", ca, Signals{USP: "1YYN"}, []string{M, S}, map[string]string{F: "opted out of sale (US Privacy string)"}},
		{"opt-out, GPC on", ca, Signals{GPC: true}, []string{M}, map[string]string{S: "opted out of gpc (Global Privacy Control)", F: "gpc"}},
		{"opt-out, GPC off", ca, Signals{GPC: false}, []string{F, M, S}, nil},
		{"opt-out, GPP usnat sale+targeted", ca, Signals{GPP: usnatString(1, 2, 1, nil)}, []string{M}, map[string]string{S: "opted out of targeted advertising (GPP usnat)", F: "GPP usnat"}},
		{"opt-out, GPP usnat sharing only", ca, Signals{GPP: usnatString(2, 1, 2, nil)}, []string{M}, map[string]string{S: "opted out of sharing", F: "sharing"}},
		{"opt-out, GPP usnat no opt-outs", ca, Signals{GPP: usnatString(2, 2, 2, &no)}, []string{F, M, S}, nil},
		{"opt-out, GPP usnat gpc sub-section", ca, Signals{GPP: usnatString(2, 2, 2, &yes)}, []string{M}, map[string]string{S: "GPP usnat gpc"}},
		{"opt-out, GPP usnat not applicable (0)", ca, Signals{GPP: usnatString(0, 0, 0, nil)}, []string{F, M, S}, nil},
		{"opt-out, first-party ads refused", ca, Signals{Categories: map[string]bool{"ads": false}}, []string{M}, map[string]string{S: "refused"}},
		{"none, everything", ny, Signals{USP: "1YYN", GPC: true}, []string{F, M, S}, nil},
		{"none, first-party refusal honoured", ny, Signals{Categories: map[string]bool{"analytics": false}}, []string{F, S}, map[string]string{M: "analytics refused"}},
	}
}

func TestDecide(t *testing.T) {
	p, cases := decideCases()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(p, tc.j, tc.s)
			want := tc.allowed
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(d.Allowed, want) {
				t.Errorf("allowed = %v, want %v (denied %v)", d.Allowed, want, d.Denied)
			}
			if len(d.Denied) != len(p)-len(want) {
				t.Errorf("denied = %v: every use is either allowed or denied with a reason", d.Denied)
			}
			for use, sub := range tc.denied {
				if !strings.Contains(d.Denied[use], sub) {
					t.Errorf("denied[%s] = %q, want it to contain %q", use, d.Denied[use], sub)
				}
			}
			if d.Regime != tc.j.Regime || d.Jurisdiction != tc.j.String() {
				t.Errorf("jurisdiction %s %s", d.Jurisdiction, d.Regime)
			}
		})
	}
}

// In an opt-out state, that state's own GPP section wins over usnat.
func TestDecideStateSection(t *testing.T) {
	at := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	// usca: sale opted out (1); usnat: nothing opted out.
	usca := (&bitWriter{}).uint(1, 6).uint(1, 2).uint(1, 2).uint(1, 2).uint(1, 2).uint(2, 2)
	for i := 0; i < 9+2+1; i++ {
		usca.uint(0, 2)
	}
	usnat := (&bitWriter{}).uint(2, 6)
	for i := 0; i < 9; i++ {
		usnat.uint(2, 2)
	}
	for i := 0; i < 20; i++ {
		usnat.uint(0, 2)
	}
	gpp := gppHeader(3, 1, 7, 8) + "~" + gppPadded(usnat.uint(1, 2).uint(0, 2).uint(0, 2)) + "~" + gppPadded(usca.uint(1, 2).uint(0, 2).uint(0, 2))
	p := DefaultPolicy(map[string]int{"tiktok": 0})
	d := Decide(p, Resolve("US", "CA", at, OptIn), Signals{GPP: gpp})
	if d.Allows("forward:tiktok") || !strings.Contains(d.Denied["forward:tiktok"], "GPP usca") {
		t.Fatalf("CA: %+v", d)
	}
	d = Decide(p, Resolve("US", "VA", at, OptIn), Signals{GPP: gpp})
	if !d.Allows("forward:tiktok") {
		t.Fatalf("VA uses usnat (no opt-out): %+v", d)
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy(map[string]int{"t": 5}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{}, "consent.policy.measurement: required"},
		{Policy{UseMeasurement: {}, "profiling": {}}, "consent.policy.profiling: unknown use"},
		{Policy{UseMeasurement: {Purposes: []int{25}}}, "purpose 25"},
		{Policy{UseMeasurement: {OptOuts: []string{"tracking"}}}, "opt_outs"},
	} {
		if err := tc.p.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.p, err, tc.want)
		}
	}
}
