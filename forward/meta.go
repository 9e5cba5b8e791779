package forward

import (
	"bytes"
	"fmt"

	json "github.com/goccy/go-json"

	"github.com/tagway/tagway/gateway/event"
)

// Meta Conversions API payloads: POST
// https://graph.facebook.com/{API_VERSION}/{PIXEL_ID}/events with an
// access token, body MetaRequest.
// https://developers.facebook.com/documentation/ads-commerce/conversions-api/using-the-api
// Field names follow the server event, customer information and custom
// data parameters:
// https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event/
// https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters
// https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/custom-data

// MetaMaxBatch is the most events one MetaRequest may carry: "You can send
// up to 1,000 events in data … If any event you send within a batch is
// invalid, we reject the entire batch." (Using the API, Batch Requests.)
const MetaMaxBatch = 1000

// metaActionSources are the documented action_source values (server event
// parameters; Meta's Business SDKs' ActionSource enum).
var metaActionSources = []string{"email", "website", "app", "phone_call", "chat", "physical_store", "system_generated", "business_messaging", "other"}

type metaEvent struct {
	EventName      string      `json:"event_name"`
	EventTime      int64       `json:"event_time"`
	EventID        string      `json:"event_id,omitempty"`
	ActionSource   string      `json:"action_source"`
	EventSourceURL string      `json:"event_source_url,omitempty"`
	UserData       metaUser    `json:"user_data"`
	CustomData     *metaCustom `json:"custom_data,omitempty"`
}

type metaUser struct {
	Em              []string `json:"em,omitempty"`
	Ph              []string `json:"ph,omitempty"`
	ExternalID      []string `json:"external_id,omitempty"`
	ClientIPAddress string   `json:"client_ip_address,omitempty"`
	ClientUserAgent string   `json:"client_user_agent,omitempty"`
	Fbc             string   `json:"fbc,omitempty"`
	Fbp             string   `json:"fbp,omitempty"`
}

type metaCustom struct {
	Value        *float64      `json:"value,omitempty"`
	Currency     string        `json:"currency,omitempty"`
	Contents     []metaContent `json:"contents,omitempty"`
	ContentType  string        `json:"content_type,omitempty"`
	ContentIDs   []string      `json:"content_ids,omitempty"`
	OrderID      string        `json:"order_id,omitempty"`
	SearchString string        `json:"search_string,omitempty"`
}

// metaContent is a custom_data.contents element; Meta's Business SDKs
// write id, quantity, item_price, title, brand and category.
type metaContent struct {
	ID        string   `json:"id"`
	Quantity  *int64   `json:"quantity,omitempty"`
	ItemPrice *float64 `json:"item_price,omitempty"`
	Title     string   `json:"title,omitempty"`
	Brand     string   `json:"brand,omitempty"`
	Category  string   `json:"category,omitempty"`
}

// MetaEvent returns one element of a Conversions API request's data[] for
// env, sent as the event called name (MapEvent's result):
//
//   - event_time in unix seconds (the envelope's milliseconds, floored;
//     ReceivedAt when EventTime is missing; Meta rejects a whole request
//     holding an event more than 7 days old, so the caller drops those),
//     event_id the envelope's (Meta deduplicates pixel and server copies on
//     event_name + event_id);
//   - action_source: properties.action_source when the sender set one of
//     Meta's values; otherwise "website" when the envelope has a page URL
//     and a user agent, which Meta requires of website events (then
//     event_source_url is the page URL); otherwise "other" ("conversion
//     happened in a way that is not listed"). Not "system_generated",
//     which Meta defines as a conversion that "happened automatically, for
//     example, a subscription renewal": a backend order or lead is not one.
//   - user_data: em, ph, external_id as one-element arrays of SHA-256 hex
//     (from ids, in profile meta-capi/v1, each falling back to the
//     envelope's hash, which is made the same way), client_ip_address,
//     client_user_agent, fbc, fbp, each left out when empty;
//   - custom_data: value, currency, contents [{id, quantity, item_price,
//     title, brand, category}] (a content without an id is left out: Meta
//     needs it), content_type, content_ids (the sender's, or the contents'
//     ids), order_id, search_string (the sender's query).
//
// Errors are TikTokEvent's: ErrDropped (with the payload) for values left
// out, ErrInvalid (without) for an unusable envelope. It never panics.
func MetaEvent(env *event.Envelope, name string, ids Hashed) ([]byte, error) {
	if err := checkEnvelope(env, name); err != nil {
		return nil, err
	}
	sec, _ := eventSeconds(env)
	var d drops
	u := &env.User
	p := parseProps(env.Properties, &d)
	ev := metaEvent{
		EventName: name,
		EventTime: sec,
		EventID:   env.EventID,
		UserData: metaUser{
			Em:              one(hashOrFallback(ids.Email, u.EmailSHA256, "user.email", &d)),
			Ph:              one(hashOrFallback(ids.Phone, u.PhoneSHA256, "user.phone", &d)),
			ExternalID:      one(hashOrFallback(ids.ExternalID, u.ExternalIDSHA256, "user.external_id", &d)),
			ClientIPAddress: u.IP,
			ClientUserAgent: u.UserAgent,
			Fbc:             u.FBC,
			Fbp:             u.FBP,
		},
	}
	switch as := enumField(p.actionSource, "properties.action_source", &d, metaActionSources...); {
	case as != "":
		ev.ActionSource = as
	case env.Page.URL != "" && u.UserAgent != "":
		ev.ActionSource = "website"
	default:
		ev.ActionSource = "other"
	}
	if ev.ActionSource == "website" {
		ev.EventSourceURL = env.Page.URL
	}
	ev.CustomData = metaCustomData(&p, &d)
	b, err := json.Marshal(&ev)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return b, d.err()
}

func one(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func metaCustomData(p *props, d *drops) *metaCustom {
	cd := metaCustom{
		Value:        p.Value,
		Currency:     p.Currency,
		ContentType:  p.ContentType,
		ContentIDs:   p.ContentIDs,
		OrderID:      p.OrderID,
		SearchString: p.Query,
	}
	for _, c := range p.Contents {
		if c.ID == "" {
			d.add(fmt.Sprintf("properties.contents[%d]", c.Index), "has no content_id (Meta needs one)")
			continue
		}
		cd.Contents = append(cd.Contents, metaContent{
			ID:        c.ID,
			Quantity:  c.Quantity,
			ItemPrice: c.Price,
			Title:     c.Name,
			Brand:     c.Brand,
			Category:  c.Category,
		})
		if p.ContentIDs == nil {
			cd.ContentIDs = append(cd.ContentIDs, c.ID)
		}
	}
	if cd.Value == nil && cd.Currency == "" && cd.Contents == nil && cd.ContentType == "" &&
		cd.ContentIDs == nil && cd.OrderID == "" && cd.SearchString == "" {
		return nil
	}
	return &cd
}

// MetaRequest returns the Conversions API request body carrying data
// (elements made by MetaEvent, at most MetaMaxBatch of them).
// testEventCode, when set, sends them to Events Manager's Test Events
// tool (main body parameter test_event_code).
// https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/main-body
func MetaRequest(data [][]byte, testEventCode string) []byte {
	var b bytes.Buffer
	b.Grow(48 + len(testEventCode) + arrayLen(data))
	b.WriteString(`{"data":`)
	writeArray(&b, data)
	if testEventCode != "" {
		b.WriteString(`,"test_event_code":`)
		writeJSONString(&b, testEventCode)
	}
	b.WriteByte('}')
	return b.Bytes()
}
