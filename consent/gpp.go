package consent

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// GPP is a decoded IAB Global Privacy Platform string: the header's section
// ids and each section decoded under its name. A section Tagway has no
// decoder for (e.g. tcfcav1) appears as {"undecoded": "…"}: visible, never
// silently dropped, never presented as decoded.
type GPP struct {
	SectionIDs []int          `json:"section_ids"`
	Sections   map[string]any `json:"sections"`
}

// USSection is a decoded GPP US section (usnat and the state sections):
// the spec's field names in snake_case with the spec's integer values, list
// fields as arrays, and "gpc" when the GPC sub-section is present.
type USSection map[string]any

// Section ids and names (GPP spec, "Section Information"; the same table as
// @iabgpp/cmpapi 3.2.0's encoder/section).
var gppSectionNames = map[int]string{
	2: "tcfeuv2", 5: "tcfcav1", 6: "uspv1", 7: "usnat", 8: "usca", 9: "usva", 10: "usco", 11: "usut", 12: "usct",
	13: "usfl", 14: "usmt", 15: "usor", 16: "ustx", 17: "usde", 18: "usia", 19: "usne", 20: "usnh", 21: "usnj",
	22: "ustn", 23: "usmn", 24: "usmd", 25: "usin", 26: "usky", 27: "usri",
}

// field is one field of a US section layout: bits wide, or a list of n
// elements of bits each.
type field struct {
	name string
	bits int
	n    int // > 0: a list
}

func f(name string, bits int) field       { return field{name: name, bits: bits} }
func list(name string, bits, n int) field { return field{name: name, bits: bits, n: n} }
func twoBit(names ...string) []field {
	out := make([]field, len(names))
	for i, n := range names {
		out[i] = f(n, 2)
	}
	return out
}

// usLayout is a US section's core segment and what its optional second
// segment is.
type usLayout struct {
	core []field
	// second: "gpc" (GpcSegmentType 2 bits = 1, Gpc 1 bit), "sensitive"
	// (sensitive_data_processing as its own segment), or "" (none allowed).
	second     string
	versionKey string // "version" or "mspa_version"
	versions   []int
}

func concat(parts ...[]field) []field {
	var out []field
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var mspaTail = twoBit("MspaCoveredTransaction", "MspaOptOutOptionMode", "MspaServiceProviderMode")

// stateLayout is the common shape of the state sections from usfl on:
// version, notices, opt-outs, sensitive data (n), child consents (k).
func stateLayout(notice string, sensitive, child int, additional bool) usLayout {
	core := concat([]field{f("Version", 6)}, twoBit(notice, "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut"),
		[]field{list("SensitiveDataProcessing", 2, sensitive)})
	if child == 1 {
		core = append(core, f("KnownChildSensitiveDataConsents", 2))
	} else {
		core = append(core, list("KnownChildSensitiveDataConsents", 2, child))
	}
	if additional {
		core = append(core, f("AdditionalDataProcessingConsent", 2))
	}
	return usLayout{core: concat(core, mspaTail), second: "gpc", versionKey: "version", versions: []int{1}}
}

// mspaLayout is usin/usky/usri: MSPA fields first, sensitive data in a second segment.
var mspaLayout = usLayout{
	core: concat([]field{f("MspaVersion", 6)}, twoBit("MspaCoveredTransaction", "MspaMode", "ProcessingNotice", "SaleOptOutNotice",
		"TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut", "KnownChildSensitiveDataConsents", "AdditionalDataProcessingConsent")),
	second: "sensitive", versionKey: "mspa_version", versions: []int{1},
}

func usnatLayout(sensitive, child int) usLayout {
	return usLayout{
		core: concat([]field{f("Version", 6)}, twoBit("SharingNotice", "SaleOptOutNotice", "SharingOptOutNotice", "TargetedAdvertisingOptOutNotice",
			"SensitiveDataProcessingOptOutNotice", "SensitiveDataLimitUseNotice", "SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"),
			[]field{list("SensitiveDataProcessing", 2, sensitive), list("KnownChildSensitiveDataConsents", 2, child), f("PersonalDataConsents", 2)}, mspaTail),
		second: "gpc", versionKey: "version",
	}
}

// usLayouts holds every US section Tagway decodes. usnat has two layouts
// (version 1: 12 sensitive-data and 2 child-consent fields; version 2: 16 and
// 3), chosen by its version field.
var (
	usnatV1   = usnatLayout(12, 2)
	usnatV2   = usnatLayout(16, 3)
	usLayouts = map[string]usLayout{
		"usca": {core: concat([]field{f("Version", 6)}, twoBit("SaleOptOutNotice", "SharingOptOutNotice", "SensitiveDataLimitUseNotice", "SaleOptOut", "SharingOptOut"),
			[]field{list("SensitiveDataProcessing", 2, 9), list("KnownChildSensitiveDataConsents", 2, 2), f("PersonalDataConsents", 2)}, mspaTail), second: "gpc", versionKey: "version", versions: []int{1}},
		"usva": {core: concat([]field{f("Version", 6)}, twoBit("SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut"),
			[]field{list("SensitiveDataProcessing", 2, 8), f("KnownChildSensitiveDataConsents", 2)}, mspaTail), versionKey: "version", versions: []int{1}},
		"usco": {core: concat([]field{f("Version", 6)}, twoBit("SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut"),
			[]field{list("SensitiveDataProcessing", 2, 7), f("KnownChildSensitiveDataConsents", 2)}, mspaTail), second: "gpc", versionKey: "version", versions: []int{1}},
		"usut": {core: concat([]field{f("Version", 6)}, twoBit("SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SensitiveDataProcessingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut"),
			[]field{list("SensitiveDataProcessing", 2, 8), f("KnownChildSensitiveDataConsents", 2)}, mspaTail), versionKey: "version", versions: []int{1}},
		"usct": {core: concat([]field{f("Version", 6)}, twoBit("SharingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut"),
			[]field{list("SensitiveDataProcessing", 2, 8), list("KnownChildSensitiveDataConsents", 2, 3)}, mspaTail), second: "gpc", versionKey: "version", versions: []int{1}},
		"usfl": func() usLayout { l := stateLayout("ProcessingNotice", 8, 3, true); l.second = ""; return l }(),
		"usmt": stateLayout("SharingNotice", 8, 3, true),
		"usor": stateLayout("ProcessingNotice", 11, 3, true),
		"ustx": stateLayout("ProcessingNotice", 8, 1, true),
		"usde": stateLayout("ProcessingNotice", 9, 5, true),
		"usia": {core: concat([]field{f("Version", 6)}, twoBit("ProcessingNotice", "SaleOptOutNotice", "TargetedAdvertisingOptOutNotice", "SensitiveDataOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut"),
			[]field{list("SensitiveDataProcessing", 2, 8), f("KnownChildSensitiveDataConsents", 2)}, mspaTail), second: "gpc", versionKey: "version", versions: []int{1}},
		"usne": stateLayout("ProcessingNotice", 8, 1, true),
		"usnh": stateLayout("ProcessingNotice", 8, 3, true),
		"usnj": stateLayout("ProcessingNotice", 10, 5, true),
		"ustn": stateLayout("ProcessingNotice", 8, 1, true),
		"usmn": stateLayout("ProcessingNotice", 8, 1, true),
		"usmd": {core: concat([]field{f("MspaVersion", 6)}, twoBit("MspaCoveredTransaction", "MspaMode", "ProcessingNotice", "SaleOptOutNotice",
			"TargetedAdvertisingOptOutNotice", "SaleOptOut", "TargetedAdvertisingOptOut", "AdditionalDataProcessingConsent")), second: "gpc", versionKey: "mspa_version", versions: []int{1}},
		"usin": mspaLayout,
		"usky": mspaLayout,
		"usri": mspaLayout,
	}
)

// snake turns a spec field name into the contract's key (SaleOptOut → sale_opt_out).
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// DecodeGPP decodes a GPP string: the header (type 3, version 1, section
// ids as a Fibonacci-coded range) and one section per id, in order. A
// malformed header or section is an error naming it; so is a count of
// sections that differs from the header's.
func DecodeGPP(s string) (*GPP, error) {
	if s == "" {
		return nil, fmt.Errorf("gpp: empty string")
	}
	if len(s) > 32<<10 {
		return nil, fmt.Errorf("gpp: longer than 32 KiB")
	}
	parts := strings.Split(s, "~")
	ids, err := decodeGPPHeader(parts[0])
	if err != nil {
		return nil, fmt.Errorf("gpp: header: %w", err)
	}
	if len(ids) != len(parts)-1 {
		return nil, fmt.Errorf("gpp: header lists %d sections, the string has %d", len(ids), len(parts)-1)
	}
	g := &GPP{SectionIDs: ids, Sections: make(map[string]any, len(ids))}
	for i, id := range ids {
		name, known := gppSectionNames[id]
		if !known {
			name = fmt.Sprintf("section_%d", id)
		}
		sec := parts[i+1]
		var v any
		switch {
		case id == 2:
			v, err = DecodeTCF(sec)
		case id == 6:
			v, err = DecodeUSP(sec)
		case usLayouts[name].core != nil || name == "usnat":
			v, err = decodeUS(name, sec)
		default:
			v = map[string]string{"undecoded": fmt.Sprintf("no decoder for section id %d", id)}
		}
		if err != nil {
			return nil, fmt.Errorf("gpp: section %d (%s): %w", id, name, err)
		}
		g.Sections[name] = v
	}
	return g, nil
}

// decodeGPPHeader reads type, version and the section ids.
func decodeGPPHeader(seg string) ([]int, error) {
	b, err := decodeSegment(seg)
	if err != nil {
		return nil, err
	}
	r := newBitReader(b)
	if t := r.int("type", 6); r.err == nil && t != 3 {
		return nil, fmt.Errorf("type: %d at bit 0 is not 3 (a GPP header)", t)
	}
	if v := r.int("version", 6); r.err == nil && v != 1 {
		return nil, fmt.Errorf("version: %d at bit 6 is not 1", v)
	}
	n := r.int("section_ids.num_entries", 12)
	if r.err == nil && (n < 1 || n > 64) {
		return nil, fmt.Errorf("section_ids: %d entries (want 1 to 64)", n)
	}
	var ids []int
	offset := 0
	for i := 0; i < n && r.err == nil; i++ {
		isRange := r.bool("section_ids.is_range")
		start := r.fibonacci("section_ids") + offset
		end := start
		if isRange {
			end = r.fibonacci("section_ids") + start
		}
		offset = end
		if r.err == nil && (end > 255 || len(ids)+end-start+1 > 64) {
			return nil, fmt.Errorf("section_ids: ids beyond 255 or more than 64 sections")
		}
		for id := start; id <= end && r.err == nil; id++ {
			ids = append(ids, id)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if err := r.padding(); err != nil {
		return nil, err
	}
	return ids, nil
}

// fibonacci reads a Fibonacci-coded integer (Zeckendorf bits, ending "11").
func (r *bitReader) fibonacci(field string) int {
	fib1, fib2 := 1, 2 // F(i), F(i+1)
	v, prev := 0, false
	for i := 0; i < 40; i++ {
		bit := r.bool(field)
		if r.err != nil {
			return 0
		}
		if bit && prev {
			return v
		}
		if bit {
			v += fib1
		}
		prev = bit
		fib1, fib2 = fib2, fib1+fib2
	}
	r.fail("%s: Fibonacci integer longer than 40 bits at bit %d", field, r.pos)
	return 0
}

// padding checks that what is left of a segment is encoder padding: fewer
// than 12 bits (to a byte, then to a 6-bit character), all zero.
func (r *bitReader) padding() error {
	left := r.bitsLeft()
	if left >= 12 {
		return fmt.Errorf("%d bits of unexpected data after the last field at bit %d", left, r.pos)
	}
	if v := r.uint("padding", left); v != 0 {
		return fmt.Errorf("padding after the last field (bit %d) is not zero", r.pos-left)
	}
	return nil
}

// decodeUS decodes a US section (core segment, optional second segment).
func decodeUS(name, sec string) (USSection, error) {
	segs := strings.Split(sec, ".")
	if len(segs) > 2 {
		return nil, fmt.Errorf("%d segments (at most 2)", len(segs))
	}
	b, err := decodeSegment(segs[0])
	if err != nil {
		return nil, fmt.Errorf("core segment: %w", err)
	}
	r := newBitReader(b)
	layout := usLayouts[name]
	if name == "usnat" {
		// Version selects the layout; peek at it.
		switch v := r.int("version", 6); {
		case r.err != nil:
			return nil, r.err
		case v == 1:
			layout = usnatV1
		case v == 2:
			layout = usnatV2
		default:
			return nil, fmt.Errorf("version: %d at bit 0 is not 1 or 2", v)
		}
		r = newBitReader(b)
		layout.versions = []int{1, 2}
	}
	out := USSection{}
	for _, fl := range layout.core {
		key := snake(fl.name)
		if fl.n > 0 {
			vals := make([]int, fl.n)
			for i := range vals {
				vals[i] = r.int(key, fl.bits)
				if r.err == nil && vals[i] > 2 {
					return nil, fmt.Errorf("%s[%d]: value %d at bit %d is not 0, 1 or 2", key, i, vals[i], r.pos-fl.bits)
				}
			}
			out[key] = vals
			continue
		}
		v := r.int(key, fl.bits)
		if r.err != nil {
			break
		}
		switch {
		case key == layout.versionKey:
			if !slices.Contains(layout.versions, v) {
				return nil, fmt.Errorf("%s: %d at bit 0 is not a supported version %v", key, v, layout.versions)
			}
		case key == "mspa_covered_transaction" && (v < 1 || v > 2):
			return nil, fmt.Errorf("%s: value %d at bit %d is not 1 or 2", key, v, r.pos-fl.bits)
		case fl.bits == 2 && v > 2:
			return nil, fmt.Errorf("%s: value %d at bit %d is not 0, 1 or 2", key, v, r.pos-fl.bits)
		}
		out[key] = v
	}
	if r.err != nil {
		return nil, r.err
	}
	if err := r.padding(); err != nil {
		return nil, fmt.Errorf("core segment: %w", err)
	}
	if len(segs) == 2 {
		b, err := decodeSegment(segs[1])
		if err != nil {
			return nil, fmt.Errorf("segment 2: %w", err)
		}
		r := newBitReader(b)
		switch layout.second {
		case "gpc":
			if t := r.int("gpc_segment_type", 2); r.err == nil && t != 1 {
				return nil, fmt.Errorf("segment 2: gpc_segment_type %d is not 1", t)
			}
			out["gpc"] = r.bool("gpc")
		case "sensitive":
			vals := make([]int, 8)
			for i := range vals {
				vals[i] = r.int("sensitive_data_processing", 2)
				if r.err == nil && vals[i] > 2 {
					return nil, fmt.Errorf("segment 2: sensitive_data_processing[%d]: value %d is not 0, 1 or 2", i, vals[i])
				}
			}
			out["sensitive_data_processing"] = vals
		default:
			return nil, fmt.Errorf("segment 2: this section has no second segment")
		}
		if r.err != nil {
			return nil, fmt.Errorf("segment 2: %w", r.err)
		}
		if err := r.padding(); err != nil {
			return nil, fmt.Errorf("segment 2: %w", err)
		}
	}
	return out, nil
}
