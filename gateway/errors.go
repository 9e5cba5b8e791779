package gateway

import (
	"strconv"
)

// reason is why a request or an event was refused. Every refusal in the
// gateway is one of these: the table below gives its stable machine code (also
// the metric label) and the HTTP status a request-level refusal answers with.
type reason uint8

const (
	reasonNone reason = iota
	reasonInvalidJSON
	reasonInvalidField
	reasonEventTooLarge
	reasonEmptyBatch
	reasonBodyTooLarge
	reasonBatchTooLarge
	reasonUnsupportedMedia
	reasonUnauthorized
	reasonSiteNotAllowed
	reasonUnknownSite
	reasonOriginNotAllowed
	reasonRateLimited
	reasonUnavailable
	reasonMethodNotAllowed
	reasonNotFound
	numReasons
)

var reasons = [numReasons]struct {
	code   string
	status int
}{
	reasonNone:             {"none", 200},
	reasonInvalidJSON:      {"invalid_json", 400},
	reasonInvalidField:     {"invalid_field", 400},
	reasonEventTooLarge:    {"event_too_large", 400},
	reasonEmptyBatch:       {"empty_batch", 400},
	reasonBodyTooLarge:     {"body_too_large", 413},
	reasonBatchTooLarge:    {"batch_too_large", 413},
	reasonUnsupportedMedia: {"unsupported_media_type", 415},
	reasonUnauthorized:     {"unauthorized", 401},
	reasonSiteNotAllowed:   {"site_not_allowed", 403},
	reasonUnknownSite:      {"unknown_site", 400},
	reasonOriginNotAllowed: {"origin_not_allowed", 403},
	reasonRateLimited:      {"rate_limited", 429},
	reasonUnavailable:      {"unavailable", 503},
	reasonMethodNotAllowed: {"method_not_allowed", 405},
	reasonNotFound:         {"not_found", 404},
}

// A recovered panic is counted as reason "internal" (gateway.go); it is not a
// refusal, so it is not in the table.

func (r reason) String() string { return reasons[r].code }
func (r reason) status() int    { return reasons[r].status }

// requestError refuses a whole request. Message is what the client is told
// (it names the field when there is one); Err is only logged.
type requestError struct {
	reason  reason
	field   string
	message string
	err     error
}

func (e *requestError) Error() string {
	s := e.reason.String() + ": " + e.message
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func reqErr(r reason, field, msg string) *requestError {
	return &requestError{reason: r, field: field, message: msg}
}

// fieldError is one refused event (or one dropped field, as a warning) in a
// batch answer. Index is the event's position in data; it is absent for a
// batch-level field.
type fieldError struct {
	Index   *int   `json:"index,omitempty"`
	Field   string `json:"field"`
	Message string `json:"message"`
	reason  reason
}

func eventField(i int, field string) string {
	if field == "" {
		return "data[" + strconv.Itoa(i) + "]"
	}
	return "data[" + strconv.Itoa(i) + "]." + field
}

// errorBody is the JSON answer of a refused request.
type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Field     string `json:"field,omitempty"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

// batchAnswer is the JSON answer of a batch that was read.
type batchAnswer struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	// NotConsented counts valid events not stored because consent gives no
	// basis for measurement (opt-in regimes).
	NotConsented int          `json:"not_consented"`
	Errors       []fieldError `json:"errors"`
	Warnings     []fieldError `json:"warnings,omitempty"`
	RequestID    string       `json:"request_id"`
}
