package consent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Uses are what the policy allows or denies: UseMeasurement, UseSegments and
// "forward:<destination>" for each destination.
const (
	UseMeasurement = "measurement"
	UseSegments    = "segments"
	UseForward     = "forward:" // + destination name
)

// US opt-outs a use may be forbidden by.
const (
	OptOutSale                = "sale"
	OptOutSharing             = "sharing"
	OptOutTargetedAdvertising = "targeted_advertising"
	OptOutGPC                 = "gpc"
)

// UsePolicy says what one use needs.
type UsePolicy struct {
	// Purposes are TCF purposes that must all have a basis: consent, or
	// legitimate interest where TCF 2.2 allows it (not purposes 1, 3–6).
	Purposes []int `yaml:"purposes" json:"purposes,omitempty"`
	// AnyPurposes: at least one of these must have a basis too (e.g.
	// measurement needs purpose 7 or 9).
	AnyPurposes []int `yaml:"any_purposes" json:"any_purposes,omitempty"`
	// Vendor is the GVL id of the destination that must have consent (or
	// legitimate interest) and not be restricted for the purposes. 0: none.
	Vendor int `yaml:"vendor" json:"vendor,omitempty"`
	// Categories are first-party consent categories (the site's own banner,
	// tw('consent', …)) any of which, granted, is a basis in opt-in regimes.
	Categories []string `yaml:"categories" json:"categories,omitempty"`
	// OptOuts forbid the use in opt-out regimes: sale, sharing,
	// targeted_advertising, gpc.
	OptOuts []string `yaml:"opt_outs" json:"opt_outs,omitempty"`
}

// Policy maps each use to what it needs.
type Policy map[string]UsePolicy

// DefaultPolicy is what ships (the README explains each choice):
//   - measurement needs purpose 1 (store/access) and 7 (measure ad
//     performance) or 9 (market research); first-party "analytics" grants it;
//     US opt-outs do not forbid first-party measurement.
//   - segments (retargeting audiences) need purposes 1, 3 (create
//     profiles for personalised ads) and 4 (use them); "ads" grants them;
//     sharing, targeted-advertising opt-outs and GPC forbid them.
//   - forward:<destination> needs purposes 1 and 7 and the destination's
//     vendor consent when its GVL id is configured; "ads" grants it; sale,
//     sharing, targeted advertising and GPC opt-outs forbid it.
func DefaultPolicy(destinations map[string]int) Policy {
	p := Policy{
		UseMeasurement: {Purposes: []int{1}, AnyPurposes: []int{7, 9}, Categories: []string{"analytics"}},
		UseSegments:    {Purposes: []int{1, 3, 4}, Categories: []string{"ads"}, OptOuts: []string{OptOutSharing, OptOutTargetedAdvertising, OptOutGPC}},
	}
	for name, vendor := range destinations {
		p[UseForward+name] = UsePolicy{Purposes: []int{1, 7}, Vendor: vendor, Categories: []string{"ads"},
			OptOuts: []string{OptOutSale, OptOutSharing, OptOutTargetedAdvertising, OptOutGPC}}
	}
	return p
}

// Validate names the first bad key (under consent.policy).
func (p Policy) Validate() error {
	if _, ok := p[UseMeasurement]; !ok {
		return errors.New("consent.policy.measurement: required")
	}
	for use, u := range p {
		key := "consent.policy." + use
		if use != UseMeasurement && use != UseSegments && !strings.HasPrefix(use, UseForward) {
			return fmt.Errorf("%s: unknown use (measurement, segments or forward:<destination>)", key)
		}
		for _, pp := range slices.Concat(u.Purposes, u.AnyPurposes) {
			if pp < 1 || pp > 24 {
				return fmt.Errorf("%s: purpose %d is not a TCF purpose (1-24)", key, pp)
			}
		}
		if u.Vendor < 0 || u.Vendor > 0xFFFF {
			return fmt.Errorf("%s.vendor: %d is not a GVL vendor id", key, u.Vendor)
		}
		for _, o := range u.OptOuts {
			switch o {
			case OptOutSale, OptOutSharing, OptOutTargetedAdvertising, OptOutGPC:
			default:
				return fmt.Errorf("%s.opt_outs: %q (sale, sharing, targeted_advertising or gpc)", key, o)
			}
		}
	}
	return nil
}

// Uses lists the policy's uses, sorted.
func (p Policy) Uses() []string {
	out := make([]string, 0, len(p))
	for u := range p {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}
