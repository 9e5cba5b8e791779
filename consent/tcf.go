package consent

import (
	"fmt"
	"slices"
	"strings"
)

// TCF is a decoded IAB TCF v2 string (TCF 2.0–2.2): the core segment and the
// optional disclosed-vendors and publisher-TC segments. Key names are a
// contract (`tagway consent decode`, the admin API): id lists are sorted
// ascending, times are unix seconds.
type TCF struct {
	Version             int    `json:"version"`
	CMPID               int    `json:"cmp_id"`
	CMPVersion          int    `json:"cmp_version"`
	ConsentScreen       int    `json:"consent_screen"`
	ConsentLanguage     string `json:"consent_language"`
	VendorListVersion   int    `json:"vendor_list_version"`
	PolicyVersion       int    `json:"policy_version"`
	IsServiceSpecific   bool   `json:"is_service_specific"`
	UseNonStandardTexts bool   `json:"use_non_standard_texts"`
	PurposeOneTreatment bool   `json:"purpose_one_treatment"`
	PublisherCC         string `json:"publisher_cc"`
	Created             int64  `json:"created"`
	LastUpdated         int64  `json:"last_updated"`
	PurposesConsent     []int  `json:"purposes_consent"`
	PurposesLI          []int  `json:"purposes_li"`
	SpecialFeatures     []int  `json:"special_features"`
	VendorConsent       []int  `json:"vendor_consent"`
	VendorLI            []int  `json:"vendor_li"`
	// PublisherRestrictions are the core segment's restrictions.
	PublisherRestrictions []PublisherRestriction `json:"publisher_restrictions,omitempty"`
	// DisclosedVendors is present when the string has that segment.
	DisclosedVendors []int `json:"disclosed_vendors,omitempty"`
	// PublisherTC is present when the string has that segment.
	PublisherTC *PublisherTC `json:"publisher_tc,omitempty"`
}

// PublisherRestriction restricts how vendors may process for a purpose.
// Type: 0 purpose flatly not allowed, 1 require consent, 2 require
// legitimate interest.
type PublisherRestriction struct {
	Purpose int   `json:"purpose"`
	Type    int   `json:"type"`
	Vendors []int `json:"vendors"`
}

// PublisherTC is the publisher's own purposes segment.
type PublisherTC struct {
	PurposesConsent       []int `json:"purposes_consent"`
	PurposesLI            []int `json:"purposes_li"`
	CustomPurposesConsent []int `json:"custom_purposes_consent"`
	CustomPurposesLI      []int `json:"custom_purposes_li"`
}

// Segment types after the core segment (TCF v2 spec, "TC string format").
const (
	segDisclosedVendors = 1
	segAllowedVendors   = 2 // TCF 2.0/2.1 only; skipped, no longer meaningful
	segPublisherTC      = 3
)

// DecodeTCF decodes a TCF v2 string. It refuses, with the field and bit
// offset, anything that is not exactly a v2 string: another version, a
// truncated field, a vendor id outside 1..MaxVendorId, a restriction type 3,
// an unknown or repeated segment.
func DecodeTCF(s string) (*TCF, error) {
	if s == "" {
		return nil, fmt.Errorf("tcf: empty string")
	}
	if len(s) > 16<<10 {
		return nil, fmt.Errorf("tcf: longer than 16 KiB")
	}
	parts := strings.Split(s, ".")
	t, err := decodeTCFCore(parts[0])
	if err != nil {
		return nil, fmt.Errorf("tcf: %w", err)
	}
	seen := map[uint64]bool{}
	for i, p := range parts[1:] {
		b, err := decodeSegment(p)
		if err != nil {
			return nil, fmt.Errorf("tcf: segment %d: %w", i+1, err)
		}
		r := newBitReader(b)
		typ := r.uint("segment_type", 3)
		if r.err != nil {
			return nil, fmt.Errorf("tcf: segment %d: %w", i+1, r.err)
		}
		if seen[typ] {
			return nil, fmt.Errorf("tcf: segment %d: segment type %d appears twice", i+1, typ)
		}
		seen[typ] = true
		switch typ {
		case segDisclosedVendors:
			t.DisclosedVendors = r.vendorSection("disclosed_vendors")
		case segAllowedVendors:
			_ = r.vendorSection("allowed_vendors")
		case segPublisherTC:
			pt := &PublisherTC{
				PurposesConsent: r.bitfield("publisher_tc.purposes_consent", 24),
				PurposesLI:      r.bitfield("publisher_tc.purposes_li", 24),
			}
			n := r.int("publisher_tc.num_custom_purposes", 6)
			pt.CustomPurposesConsent = r.bitfield("publisher_tc.custom_purposes_consent", n)
			pt.CustomPurposesLI = r.bitfield("publisher_tc.custom_purposes_li", n)
			t.PublisherTC = pt
		default:
			return nil, fmt.Errorf("tcf: segment %d: unknown segment type %d", i+1, typ)
		}
		if r.err != nil {
			return nil, fmt.Errorf("tcf: segment %d: %w", i+1, r.err)
		}
	}
	return t, nil
}

func decodeTCFCore(seg string) (*TCF, error) {
	b, err := decodeSegment(seg)
	if err != nil {
		return nil, fmt.Errorf("core segment: %w", err)
	}
	r := newBitReader(b)
	t := &TCF{}
	t.Version = r.int("version", 6)
	if r.err == nil && t.Version != 2 {
		return nil, fmt.Errorf("version: %d at bit 0 is not 2 (only TCF v2 strings are accepted)", t.Version)
	}
	t.Created = int64(r.uint("created", 36)) / 10 // deciseconds
	t.LastUpdated = int64(r.uint("last_updated", 36)) / 10
	t.CMPID = r.int("cmp_id", 12)
	t.CMPVersion = r.int("cmp_version", 12)
	t.ConsentScreen = r.int("consent_screen", 6)
	t.ConsentLanguage = r.letters("consent_language", 2)
	t.VendorListVersion = r.int("vendor_list_version", 12)
	t.PolicyVersion = r.int("policy_version", 6)
	t.IsServiceSpecific = r.bool("is_service_specific")
	t.UseNonStandardTexts = r.bool("use_non_standard_texts")
	t.SpecialFeatures = r.bitfield("special_features", 12)
	t.PurposesConsent = r.bitfield("purposes_consent", 24)
	t.PurposesLI = r.bitfield("purposes_li", 24)
	t.PurposeOneTreatment = r.bool("purpose_one_treatment")
	t.PublisherCC = r.letters("publisher_cc", 2)
	t.VendorConsent = r.vendorSection("vendor_consent")
	t.VendorLI = r.vendorSection("vendor_li")
	n := r.int("num_pub_restrictions", 12)
	for i := 0; i < n && r.err == nil; i++ {
		f := fmt.Sprintf("publisher_restrictions[%d]", i)
		pr := PublisherRestriction{Purpose: r.int(f+".purpose", 6), Type: r.int(f+".type", 2)}
		if r.err == nil && pr.Type == 3 {
			r.fail("%s.type: restriction type 3 is undefined (bit %d)", f, r.pos-2)
		}
		pr.Vendors = r.rangeEntries(f+".vendors", 0xFFFF)
		t.PublisherRestrictions = append(t.PublisherRestrictions, pr)
	}
	if r.err != nil {
		return nil, r.err
	}
	return t, nil
}

// vendorSection reads MaxVendorId, IsRangeEncoding and a bitfield or range
// entries, returning the sorted vendor ids.
func (r *bitReader) vendorSection(field string) []int {
	maxID := r.int(field+".max_vendor_id", 16)
	if r.bool(field + ".is_range_encoding") {
		return r.rangeEntries(field, maxID)
	}
	return r.bitfield(field, maxID)
}

// maxExpandedIDs bounds the vendor ids one decode may expand ranges into:
// a hostile string can claim 1–65535 in each of thousands of entries.
const maxExpandedIDs = 1 << 18

// rangeEntries reads NumEntries and the entries (single ids or ranges),
// each within 1..maxID, into a sorted list of distinct ids. Overlapping
// ranges are merged first; the ids expanded per decode are bounded.
func (r *bitReader) rangeEntries(field string, maxID int) []int {
	n := r.int(field+".num_entries", 12)
	type span struct{ lo, hi int }
	spans := make([]span, 0, min(n, 64))
	for i := 0; i < n && r.err == nil; i++ {
		isRange := r.bool(field + ".is_a_range")
		start := r.int(field+".start_vendor_id", 16)
		end := start
		if isRange {
			end = r.int(field+".end_vendor_id", 16)
		}
		if r.err != nil {
			break
		}
		if start < 1 || end < start || end > maxID {
			r.fail("%s: entry %d covers vendors %d-%d, outside 1-%d (bit %d)", field, i, start, end, maxID, r.pos)
			break
		}
		spans = append(spans, span{start, end})
	}
	ids := []int{}
	if r.err != nil {
		return ids
	}
	slices.SortFunc(spans, func(a, b span) int { return a.lo - b.lo })
	next := 1 // the lowest id not yet emitted
	for _, sp := range spans {
		lo := max(sp.lo, next)
		if lo > sp.hi {
			continue
		}
		if r.expanded += sp.hi - lo + 1; r.expanded > maxExpandedIDs {
			r.fail("%s: more than %d vendor ids in one string", field, maxExpandedIDs)
			return []int{}
		}
		for id := lo; id <= sp.hi; id++ {
			ids = append(ids, id)
		}
		next = sp.hi + 1
	}
	return ids
}
