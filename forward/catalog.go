package forward

import (
	"slices"
	"strings"
)

// The event-name catalogue: which names Tagway treats as one conversion,
// and what each destination calls it. Everything here is data and pure
// functions, safe for concurrent use.

// CatalogVersion names the state of the catalogue: the month of the TikTok
// and Meta standard-event lists it was checked against. Bump it (and the
// golden table testdata/events.json) whenever a mapping changes, so a
// payload published on tw.forward.* can be traced to the rules that made it.
const CatalogVersion = "2025-09"

// Kind is a destination type, the `type:` of a `destinations:` entry.
type Kind string

// The destination kinds Tagway has built-in payloads for.
const (
	KindTikTok  Kind = "tiktok"
	KindMeta    Kind = "meta"
	KindWebhook Kind = "webhook"
)

// DefaultEvents are the conversions a destination receives when its config
// names no `events:`. Names are canonical (see Canonical), so the default
// also covers their aliases: CompletePayment includes TikTok's 2025 name
// Purchase, Lead includes the legacy SubmitForm.
var DefaultEvents = []string{"CompletePayment", "PlaceAnOrder", "InitiateCheckout", "AddToCart", "ViewContent", "Lead", "CompleteRegistration", "Subscribe"}

// aliases maps every accepted alternative spelling of a conversion to its
// canonical Tagway name. The canonical name is the one Tagway's own config
// and DefaultEvents use (DESIGN.md's segments say CompletePayment), so old
// configs keep working whichever name a sender uses.
//
// TikTok unified its standard event names on 1 May 2025 (web, offline,
// CRM): "SubmitForm renamed to Lead, CompletePayment renamed to Purchase.
// Existing setups remain operational … Legacy names are auto-converted on
// the backend". ClickButton and PlaceAnOrder are "soft-deprecated": "fully
// supported until 2027", removed from the documentation in 2025, no
// replacement named. StartTrial, SubmitApplication and ApplicationApproval
// are new event types, not renames.
// https://ads.tiktok.com/help/article/how-to-adopt-tiktoks-updated-standard-events
var aliases = map[string]string{
	"Purchase":   "CompletePayment",
	"SubmitForm": "Lead",
}

// tiktokNames maps a canonical name to the name TikTok currently documents
// as standard. Every TikTok standard event is a key (mapping to itself
// unless renamed), so tiktokNames doubles as the standard set.
//
// The list is "About supported standard events in TikTok Ads Manager, last
// updated September 2025": AddPaymentInfo, AddToCart, AddToWishlist,
// ApplicationApproval, CompleteRegistration, Contact, CustomizeProduct,
// Download, FindLocation, InitiateCheckout, Lead, Purchase, Schedule,
// Search, StartTrial, SubmitApplication, Subscribe, ViewContent.
// https://ads.tiktok.com/help/article/supported-standard-events
// Events API 2.0 takes the same names in data[].event (case-sensitive).
// https://business-api.tiktok.com/portal/docs?id=1771100865818625
var tiktokNames = map[string]string{
	"AddPaymentInfo":       "AddPaymentInfo",
	"AddToCart":            "AddToCart",
	"AddToWishlist":        "AddToWishlist",
	"ApplicationApproval":  "ApplicationApproval",
	"CompleteRegistration": "CompleteRegistration",
	"Contact":              "Contact",
	"CustomizeProduct":     "CustomizeProduct",
	"Download":             "Download",
	"FindLocation":         "FindLocation",
	"InitiateCheckout":     "InitiateCheckout",
	"Lead":                 "Lead",     // was SubmitForm; the old name is still accepted
	"CompletePayment":      "Purchase", // renamed May 2025; CompletePayment is still accepted
	"Schedule":             "Schedule",
	"Search":               "Search",
	"StartTrial":           "StartTrial",
	"SubmitApplication":    "SubmitApplication",
	"Subscribe":            "Subscribe",
	"ViewContent":          "ViewContent",
	// Soft-deprecated, "fully supported until 2027"; sent as they are
	// because TikTok names no replacement (PlaceAnOrder is "when placing an
	// order and making a payment are not the same", so it is not Purchase).
	"ClickButton":  "ClickButton",
	"PlaceAnOrder": "PlaceAnOrder",
}

// metaNames maps a canonical name to Meta's standard event, for the names
// Meta has a standard event for. Names absent here are sent to Meta as
// custom events, unchanged: the Conversions API takes "a standard event or
// custom event name" in event_name.
// https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event/
//
// Meta's standard events (Meta Pixel reference, shared by the Conversions
// API): AddPaymentInfo, AddToCart, AddToWishlist, CompleteRegistration,
// Contact, CustomizeProduct, Donate, FindLocation, InitiateCheckout, Lead,
// Purchase, Schedule, Search, StartTrial, SubmitApplication, Subscribe,
// ViewContent, and PageView (the pixel's default event).
// https://developers.facebook.com/docs/meta-pixel/reference
//
// Deliberately absent: PlaceAnOrder (TikTok: an order whose payment comes
// later; mapping it to Purchase would count a sale twice when the
// CompletePayment follows, so it stays a custom event: a site whose only
// sale signal is PlaceAnOrder sets the override `PlaceAnOrder: Purchase`),
// ApplicationApproval, Download and ClickButton (no Meta equivalent).
var metaNames = map[string]string{
	"AddPaymentInfo":       "AddPaymentInfo",
	"AddToCart":            "AddToCart",
	"AddToWishlist":        "AddToWishlist",
	"CompleteRegistration": "CompleteRegistration",
	"Contact":              "Contact",
	"CustomizeProduct":     "CustomizeProduct",
	"Donate":               "Donate",
	"FindLocation":         "FindLocation",
	"InitiateCheckout":     "InitiateCheckout",
	"Lead":                 "Lead",
	"CompletePayment":      "Purchase",
	"PageView":             "PageView",
	"Schedule":             "Schedule",
	"Search":               "Search",
	"StartTrial":           "StartTrial",
	"SubmitApplication":    "SubmitApplication",
	"Subscribe":            "Subscribe",
	"ViewContent":          "ViewContent",
}

// Canonical returns Tagway's canonical name for an event name: the
// canonical name of an alias (Purchase → CompletePayment, SubmitForm →
// Lead), or name itself. Names are case-sensitive, as both platforms treat
// them. Compare event names through Canonical on both sides (or use
// Selects), never directly.
func Canonical(name string) string {
	if c, ok := aliases[name]; ok {
		return c
	}
	return name
}

// Selects reports whether a destination configured with events receives an
// event called name: names are compared canonically, so `events:
// [CompletePayment]` selects Purchase too. An empty events list means
// DefaultEvents.
func Selects(events []string, name string) bool {
	if len(events) == 0 {
		events = DefaultEvents
	}
	c := Canonical(name)
	for _, e := range events {
		if Canonical(e) == c {
			return true
		}
	}
	return false
}

// MapEvent returns the name a destination of the given kind should receive
// for the event called name, and whether that name is one of the
// destination's standard events.
//
// Overrides (a destination's `event_map:` from config) win: overrides[name]
// is tried first, then overrides[Canonical(name)], so an override keyed
// CompletePayment also applies to Purchase. An empty override value is
// ignored. Otherwise:
//   - tiktok: the name TikTok currently documents (CompletePayment →
//     Purchase, SubmitForm → Lead; TikTok still accepts the old names but
//     reports them under the new ones);
//   - meta: Meta's standard event where one exists (CompletePayment and
//     Purchase → Purchase, SubmitForm → Lead, the shared names unchanged);
//   - webhook: the name unchanged (the receiver gets Tagway's own envelope);
//     standard reports whether the name is in either catalogue.
//
// Any other name is passed through unchanged with standard false: both the
// Events API and the Conversions API accept custom event names. An unknown
// kind returns name, false.
func MapEvent(kind Kind, name string, overrides map[string]string) (mapped string, standard bool) {
	if name == "" {
		return "", false
	}
	c := Canonical(name)
	if o := overrides[name]; o != "" {
		return o, isStandard(kind, o)
	}
	if o := overrides[c]; o != "" {
		return o, isStandard(kind, o)
	}
	switch kind {
	case KindTikTok:
		if n, ok := tiktokNames[c]; ok {
			return n, true
		}
	case KindMeta:
		if n, ok := metaNames[c]; ok {
			return n, true
		}
	case KindWebhook:
		return name, isStandard(KindTikTok, name) || isStandard(KindMeta, name)
	}
	return name, false
}

// isStandard reports whether name, exactly as sent, is a standard event of
// kind: a name it documents today, or (TikTok) a legacy name it still
// accepts. Meta has no legacy names: its Purchase is standard, TikTok's
// CompletePayment is not.
func isStandard(kind Kind, name string) bool {
	switch kind {
	case KindTikTok:
		return tiktokStandard[name]
	case KindMeta:
		return metaStandard[name]
	case KindWebhook:
		return tiktokStandard[name] || metaStandard[name]
	}
	return false
}

// tiktokLegacy are the renamed TikTok names its API still accepts.
var tiktokLegacy = []string{"CompletePayment", "SubmitForm"}

var (
	tiktokStandard = valueSet(tiktokNames, tiktokLegacy...)
	metaStandard   = valueSet(metaNames)
)

func valueSet(m map[string]string, extra ...string) map[string]bool {
	s := make(map[string]bool, len(m)+len(extra))
	for _, v := range m {
		s[v] = true
	}
	for _, v := range extra {
		s[v] = true
	}
	return s
}

// StandardEvents lists, sorted, the names a destination of the given kind
// documents as standard today (for TikTok including the soft-deprecated
// ClickButton and PlaceAnOrder, excluding the renamed CompletePayment and
// SubmitForm). For KindWebhook it is the union of both lists; for an
// unknown kind, nil.
func StandardEvents(kind Kind) []string {
	var m map[string]string
	switch kind {
	case KindTikTok:
		m = tiktokNames
	case KindMeta:
		m = metaNames
	case KindWebhook:
		return sortedUnique(append(StandardEvents(KindTikTok), StandardEvents(KindMeta)...))
	default:
		return nil
	}
	out := make([]string, 0, len(m))
	for _, n := range m {
		out = append(out, n)
	}
	return sortedUnique(out)
}

func sortedUnique(s []string) []string {
	slices.SortFunc(s, strings.Compare)
	return slices.Compact(s)
}
