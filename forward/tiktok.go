package forward

import (
	"bytes"
	"fmt"

	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/gateway/event"
)

// TikTok Events API 2.0 payloads: POST
// https://business-api.tiktok.com/open_api/v1.3/event/track/ with header
// Access-Token, body TikTokRequest. Field names, types and the batch limit
// follow "Events API 2.0 – Web":
// https://business-api.tiktok.com/portal/docs?id=1771100865818625
// cross-checked with TikTok's own server-side GTM template
// (github.com/tiktok/gtm-template-eapi, template.js), which builds the
// same body.

// TikTokMaxBatch is the most events one TikTokRequest may carry ("data":
// up to 1,000 events; Hightouch and RudderStack batch to the same limit).
// TikTok fails the whole batch when one event in it is invalid, which is
// why TikTokEvent drops bad values instead of passing them on.
const TikTokMaxBatch = 1000

type tiktokEvent struct {
	Event      string       `json:"event"`
	EventTime  int64        `json:"event_time"`
	EventID    string       `json:"event_id,omitempty"`
	User       tiktokUser   `json:"user"`
	Properties *tiktokProps `json:"properties,omitempty"`
	Page       *tiktokPage  `json:"page,omitempty"`
}

type tiktokUser struct {
	Email      string `json:"email,omitempty"`
	Phone      string `json:"phone,omitempty"`
	ExternalID string `json:"external_id,omitempty"`
	TTCLID     string `json:"ttclid,omitempty"`
	TTP        string `json:"ttp,omitempty"`
	IP         string `json:"ip,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
}

type tiktokProps struct {
	Contents    []tiktokContent `json:"contents,omitempty"`
	ContentType string          `json:"content_type,omitempty"`
	ContentIDs  []string        `json:"content_ids,omitempty"`
	Currency    string          `json:"currency,omitempty"`
	Value       *float64        `json:"value,omitempty"`
	OrderID     string          `json:"order_id,omitempty"`
	Query       string          `json:"query,omitempty"`
	Description string          `json:"description,omitempty"`
}

type tiktokContent struct {
	ContentID       string   `json:"content_id,omitempty"`
	ContentType     string   `json:"content_type,omitempty"`
	ContentName     string   `json:"content_name,omitempty"`
	ContentCategory string   `json:"content_category,omitempty"`
	Brand           string   `json:"brand,omitempty"`
	Quantity        *int64   `json:"quantity,omitempty"`
	Price           *float64 `json:"price,omitempty"`
}

type tiktokPage struct {
	URL      string `json:"url,omitempty"`
	Referrer string `json:"referrer,omitempty"`
}

// TikTokEvent returns one element of an Events API 2.0 request's data[]
// for env, sent as the event called name (MapEvent's result):
//
//   - event_time in unix seconds (the envelope's milliseconds, floored;
//     ReceivedAt when EventTime is missing), event_id the envelope's;
//   - user: email, phone, external_id (SHA-256 hex), ttclid, ttp, ip,
//     user_agent, each left out when empty. The hashes come from ids, in
//     TikTok's own normalisation (profile tiktok-events/v2); an empty
//     ids.Email or ids.ExternalID falls back to the envelope's hash, which
//     is made the same way, but the phone does not: the envelope hashes
//     the digits without "+" and TikTok hashes "+" and the digits, so the
//     phone is sent only from ids.Phone. The IP is the envelope's, which
//     the gateway may have truncated;
//   - properties: contents, content_type, content_ids (only as the sender
//     gave them; contents carry the ids already), currency, value,
//     order_id, query (or the sender's search_string), description; other
//     keys are not sent. TikTok's recommended parameters per event (e.g.
//     StartTrial: content_ids, currency, value; Search: query) are listed
//     at https://ads.tiktok.com/help/article/supported-standard-events;
//   - page: url, referrer.
//
// A value that cannot be sent (value not a number, contents not an array,
// a hash that is not 64 hex digits, …) is left out and the payload is
// still returned, with an error matching ErrDropped that names each field
// (*DroppedError): send the payload, count the drop. Only a nil envelope,
// an empty name or an event without any time fail, with ErrInvalid and a
// nil payload. TikTokEvent never panics, whatever the properties hold.
func TikTokEvent(env *event.Envelope, name string, ids Hashed) ([]byte, error) {
	if err := checkEnvelope(env, name); err != nil {
		return nil, err
	}
	sec, _ := eventSeconds(env)
	var d drops
	u := &env.User
	ev := tiktokEvent{
		Event:     name,
		EventTime: sec,
		EventID:   env.EventID,
		User: tiktokUser{
			Email:      hashOrFallback(ids.Email, u.EmailSHA256, "user.email", &d),
			Phone:      hashOrFallback(ids.Phone, "", "user.phone", &d),
			ExternalID: hashOrFallback(ids.ExternalID, u.ExternalIDSHA256, "user.external_id", &d),
			TTCLID:     u.TTCLID,
			TTP:        u.TTP,
			IP:         u.IP,
			UserAgent:  u.UserAgent,
		},
	}
	p := parseProps(env.Properties, &d)
	if tp := tiktokProperties(&p); tp != nil {
		ev.Properties = tp
	}
	if env.Page.URL != "" || env.Page.Referrer != "" {
		ev.Page = &tiktokPage{URL: env.Page.URL, Referrer: env.Page.Referrer}
	}
	b, err := json.Marshal(&ev)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return b, d.err()
}

func tiktokProperties(p *props) *tiktokProps {
	tp := tiktokProps{
		ContentType: p.ContentType,
		ContentIDs:  p.ContentIDs,
		Currency:    p.Currency,
		Value:       p.Value,
		OrderID:     p.OrderID,
		Query:       p.Query,
		Description: p.Description,
	}
	for _, c := range p.Contents {
		tp.Contents = append(tp.Contents, tiktokContent{
			ContentID:       c.ID,
			ContentType:     c.Type,
			ContentName:     c.Name,
			ContentCategory: c.Category,
			Brand:           c.Brand,
			Quantity:        c.Quantity,
			Price:           c.Price,
		})
	}
	if tp.Contents == nil && tp.ContentType == "" && tp.ContentIDs == nil && tp.Currency == "" && tp.Value == nil &&
		tp.OrderID == "" && tp.Query == "" && tp.Description == "" {
		return nil
	}
	return &tp
}

// TikTokRequest returns the Events API 2.0 request body carrying data
// (elements made by TikTokEvent, at most TikTokMaxBatch of them; split
// longer lists with slices.Chunk). eventSource is "web" when empty (the
// value for website events measured by a pixel); eventSourceID is the
// pixel code; testEventCode, when set, routes the events to Events
// Manager's Test Events tab instead of the live data.
func TikTokRequest(eventSource, eventSourceID, testEventCode string, data [][]byte) []byte {
	if eventSource == "" {
		eventSource = "web"
	}
	var b bytes.Buffer
	b.Grow(96 + len(eventSource) + len(eventSourceID) + len(testEventCode) + arrayLen(data))
	b.WriteString(`{"event_source":`)
	writeJSONString(&b, eventSource)
	b.WriteString(`,"event_source_id":`)
	writeJSONString(&b, eventSourceID)
	if testEventCode != "" {
		b.WriteString(`,"test_event_code":`)
		writeJSONString(&b, testEventCode)
	}
	b.WriteString(`,"data":`)
	writeArray(&b, data)
	b.WriteByte('}')
	return b.Bytes()
}

// checkEnvelope is what both event builders require.
func checkEnvelope(env *event.Envelope, name string) error {
	switch {
	case env == nil:
		return fmt.Errorf("%w: %w", ErrInvalid, FieldError{"envelope", "is nil"})
	case name == "":
		return fmt.Errorf("%w: %w", ErrInvalid, FieldError{"event", "destination event name is empty"})
	}
	if _, ok := eventSeconds(env); !ok {
		return fmt.Errorf("%w: %w", ErrInvalid, FieldError{"event_time", "neither event_time nor received_at is set"})
	}
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, err := json.Marshal(s)
	if err != nil { // cannot happen for a string; keep the output valid anyway
		q = []byte(`""`)
	}
	b.Write(q)
}

// arrayLen is the length writeArray writes.
func arrayLen(elems [][]byte) int {
	n := 1 + len(elems)
	for _, e := range elems {
		n += len(e)
	}
	return n
}

// writeArray writes elements, which must each be a JSON value, as an array.
func writeArray(b *bytes.Buffer, elems [][]byte) {
	b.WriteByte('[')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteByte(']')
}
