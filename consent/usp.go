package consent

import "fmt"

// USP is a decoded IAB US Privacy string (CCPA), e.g. "1YNN".
type USP struct {
	Version int `json:"version"`
	// Notice: explicit notice given; OptOutSale: the user opted out of sale;
	// LSPA: the publisher is a signatory of the Limited Service Provider
	// Agreement. Each is "Y", "N" or "-" (not applicable).
	Notice     string `json:"notice"`
	OptOutSale string `json:"opt_out_sale"`
	LSPA       string `json:"lspa"`
}

// DecodeUSP decodes a US Privacy string. Letters are accepted in either case
// and returned uppercase; "1---" (not applicable) is valid.
func DecodeUSP(s string) (*USP, error) {
	if len(s) != 4 {
		return nil, fmt.Errorf("usp: must be 4 characters, got %d", len(s))
	}
	if s[0] != '1' {
		return nil, fmt.Errorf("usp: version %q at offset 0 is not 1", s[0])
	}
	u := &USP{Version: 1}
	for i, dst := range []*string{&u.Notice, &u.OptOutSale, &u.LSPA} {
		c := s[i+1]
		switch c {
		case 'Y', 'y':
			*dst = "Y"
		case 'N', 'n':
			*dst = "N"
		case '-':
			*dst = "-"
		default:
			return nil, fmt.Errorf("usp: %s at offset %d must be Y, N or -, got %q", [...]string{"notice", "opt_out_sale", "lspa"}[i], i+1, c)
		}
	}
	return u, nil
}
