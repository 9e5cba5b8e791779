package consent

import (
	"errors"
	"fmt"
)

// Kinds of consent string.
const (
	KindTCF = "tcf"
	KindGPP = "gpp"
	KindUSP = "usp"
)

// ErrUnknownKind is returned when a string's kind cannot be detected.
var ErrUnknownKind = errors.New("consent: not a TCF v2, GPP or US Privacy string (give --kind)")

// Decoded is what `tagway consent decode` and GET /admin/consent/decode
// print: exactly one of its members is set. Key names are a contract.
type Decoded struct {
	TCF *TCF `json:"tcf,omitempty"`
	GPP *GPP `json:"gpp,omitempty"`
	USP *USP `json:"usp,omitempty"`
}

// DetectKind tells the kind of s from its first bits: a TCF v2 core segment
// starts with version 2 ("C"), a GPP header with type 3 ("D"), a US Privacy
// string is four characters starting with "1".
func DetectKind(s string) (string, error) {
	switch {
	case len(s) == 4 && s[0] == '1':
		return KindUSP, nil
	case len(s) > 0 && s[0] == 'C':
		return KindTCF, nil
	case len(s) > 0 && s[0] == 'D':
		return KindGPP, nil
	}
	return "", ErrUnknownKind
}

// Decode decodes s as kind ("" detects it). A malformed string is an error
// that names the field and offset; no partial result is returned with it.
func Decode(kind, s string) (*Decoded, error) {
	if kind == "" {
		var err error
		if kind, err = DetectKind(s); err != nil {
			return nil, err
		}
	}
	var d Decoded
	var err error
	switch kind {
	case KindTCF:
		d.TCF, err = DecodeTCF(s)
	case KindGPP:
		d.GPP, err = DecodeGPP(s)
	case KindUSP:
		d.USP, err = DecodeUSP(s)
	default:
		return nil, fmt.Errorf("consent: unknown kind %q (tcf, gpp or usp)", kind)
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}
