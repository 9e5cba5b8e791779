package consent

import (
	"fmt"
	"slices"
	"strings"
)

// Signals are one event's consent signals as received.
type Signals struct {
	TCF        string
	GPP        string
	GPPSID     []int
	USP        string
	GPC        bool
	Categories map[string]bool
}

// Decision says which uses consent allows for an event, and why each denied
// use is denied. Key names are a contract (the CLI's "decision" object).
type Decision struct {
	Jurisdiction string            `json:"jurisdiction"`
	Regime       Regime            `json:"regime"`
	Allowed      []string          `json:"allowed"`
	Denied       map[string]string `json:"denied"`
}

// Allows reports whether use is allowed.
func (d *Decision) Allows(use string) bool { return slices.Contains(d.Allowed, use) }

// TCF 2.2 does not allow legitimate interest for purposes 1 and 3–6.
var noLegitimateInterest = map[int]bool{1: true, 3: true, 4: true, 5: true, 6: true}

// decoded holds the signals, decoded once per decision.
type decoded struct {
	tcf    *TCF
	tcfErr error
	gpp    *GPP
	gppErr error
	usp    *USP
	uspErr error
}

func decodeSignals(s Signals) decoded {
	var d decoded
	if s.GPP != "" {
		d.gpp, d.gppErr = DecodeGPP(s.GPP)
	}
	switch {
	case s.TCF != "":
		d.tcf, d.tcfErr = DecodeTCF(s.TCF)
	case d.gpp != nil:
		if t, ok := d.gpp.Sections["tcfeuv2"].(*TCF); ok {
			d.tcf = t
		}
	}
	switch {
	case s.USP != "":
		d.usp, d.uspErr = DecodeUSP(s.USP)
	case d.gpp != nil:
		if u, ok := d.gpp.Sections["uspv1"].(*USP); ok {
			d.usp = u
		}
	}
	return d
}

// Decide applies policy p to signals s in jurisdiction j. It is a pure
// function: the same inputs always give the same decision.
func Decide(p Policy, j Jurisdiction, s Signals) Decision {
	d := Decision{Jurisdiction: j.String(), Regime: j.Regime, Allowed: []string{}, Denied: map[string]string{}}
	sig := decodeSignals(s)
	var optOuts map[string]string
	if j.Regime == OptOut {
		optOuts = sig.optOuts(j, s.GPC)
	}
	for _, use := range p.Uses() {
		u := p[use]
		reason := ""
		// An explicit first-party refusal wins everywhere.
		for _, c := range u.Categories {
			if granted, set := s.Categories[c]; set && !granted {
				reason = "first-party category " + c + " refused"
				break
			}
		}
		if reason == "" {
			switch j.Regime {
			case OptIn:
				reason = sig.optInReason(u, s.Categories)
			case OptOut:
				for _, o := range u.OptOuts {
					if src, ok := optOuts[o]; ok {
						reason = "opted out of " + strings.ReplaceAll(o, "_", " ") + " (" + src + ")"
						break
					}
				}
			}
		}
		if reason == "" {
			d.Allowed = append(d.Allowed, use)
		} else {
			d.Denied[use] = reason
		}
	}
	return d
}

// optInReason is "" when u has a basis in an opt-in regime, else why not.
func (sig decoded) optInReason(u UsePolicy, categories map[string]bool) string {
	for _, c := range u.Categories {
		if categories[c] {
			return ""
		}
	}
	switch {
	case sig.tcfErr != nil:
		return "tcf string malformed: " + sig.tcfErr.Error()
	case sig.tcf == nil && sig.gppErr != nil:
		return "gpp string malformed: " + sig.gppErr.Error()
	case sig.tcf == nil:
		return "no consent signal (opt-in regime): no TCF string and no granting first-party category"
	}
	t := sig.tcf
	if t.PolicyVersion < 4 {
		return fmt.Sprintf("tcf policy version %d predates TCF 2.2 (4): the string gives no consent", t.PolicyVersion)
	}
	if !t.IsServiceSpecific {
		return "tcf string is not service-specific: it gives no consent under TCF 2.2"
	}
	has := func(p int) (consent, li bool) {
		return slices.Contains(t.PurposesConsent, p), !noLegitimateInterest[p] && slices.Contains(t.PurposesLI, p)
	}
	usedLI := false
	for _, p := range u.Purposes {
		c, li := has(p)
		if !c && !li {
			return fmt.Sprintf("tcf: no consent for purpose %d", p)
		}
		usedLI = usedLI || !c
	}
	if len(u.AnyPurposes) > 0 {
		ok := false
		for _, p := range u.AnyPurposes {
			if c, li := has(p); c || li {
				ok, usedLI = true, usedLI || !c
				break
			}
		}
		if !ok {
			return fmt.Sprintf("tcf: no consent for any of purposes %v", u.AnyPurposes)
		}
	}
	if v := u.Vendor; v > 0 {
		vc, vli := slices.Contains(t.VendorConsent, v), slices.Contains(t.VendorLI, v)
		if !vc && !(usedLI && vli) {
			return fmt.Sprintf("tcf: no consent for vendor %d", v)
		}
		for _, r := range t.PublisherRestrictions {
			if r.Type == 0 && slices.Contains(r.Vendors, v) && (slices.Contains(u.Purposes, r.Purpose) || slices.Contains(u.AnyPurposes, r.Purpose)) {
				return fmt.Sprintf("tcf: the publisher does not allow purpose %d for vendor %d", r.Purpose, v)
			}
		}
	}
	return ""
}

// optOuts collects the opt-outs in force, each with the signal that said so.
func (sig decoded) optOuts(j Jurisdiction, gpc bool) map[string]string {
	out := map[string]string{}
	set := func(kind, src string) {
		if _, ok := out[kind]; !ok {
			out[kind] = src
		}
	}
	if gpc {
		set(OptOutGPC, "Global Privacy Control")
	}
	if sig.usp != nil && sig.usp.OptOutSale == "Y" {
		set(OptOutSale, "US Privacy string")
	}
	if sig.gpp != nil {
		// The user's state section when the string has one, else usnat.
		var sec USSection
		name := "us" + strings.ToLower(j.Region)
		if s, ok := sig.gpp.Sections[name].(USSection); ok {
			sec = s
		} else if s, ok := sig.gpp.Sections["usnat"].(USSection); ok {
			sec, name = s, "usnat"
		}
		if sec != nil {
			src := "GPP " + name
			// GPP US opt-out fields: 0 not applicable, 1 opted out, 2 did not.
			for field, kind := range map[string]string{"sale_opt_out": OptOutSale, "sharing_opt_out": OptOutSharing, "targeted_advertising_opt_out": OptOutTargetedAdvertising} {
				if v, ok := sec[field].(int); ok && v == 1 {
					set(kind, src)
				}
			}
			if g, ok := sec["gpc"].(bool); ok && g {
				set(OptOutGPC, src+" gpc")
			}
		}
	}
	return out
}
