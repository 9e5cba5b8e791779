package consent

import "errors"

// GPP is a decoded IAB Global Privacy Platform string.
type GPP struct {
	SectionIDs []int          `json:"section_ids"`
	Sections   map[string]any `json:"sections"`
}

// DecodeGPP decodes a GPP string. (Being written.)
func DecodeGPP(s string) (*GPP, error) {
	return nil, errors.New("gpp: not implemented yet")
}
