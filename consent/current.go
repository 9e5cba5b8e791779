package consent

import (
	"encoding/json"
	"fmt"

	"github.com/tagway/tagway/consent/audit"
)

// CurrentUse reports whether the profile's consent state now allows use.
// known is false when no state is stored for the profile (nothing newer
// than the event's own decision to go by). The forwarder asks it again at
// delivery, so a conversion queued before a withdrawal is not sent after it.
func (e *Engine) CurrentUse(site, profile, use string) (allowed, known bool, err error) {
	st, err := e.load(site, profile)
	if err != nil || st == nil {
		return false, false, err
	}
	return st.Decision.Allows(use), true, nil
}

// RecordForwardSkip appends an audit record saying a conversion accepted
// under consent was not delivered to destination because the profile's
// consent no longer allowed it.
func (e *Engine) RecordForwardSkip(site, profile, destination, eventID string) error {
	st, err := e.load(site, profile)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(map[string]string{"destination": destination, "event_id": eventID, "use": UseForward + destination,
		"reason": "consent withdrawn after the event was accepted", "decision_audit_id": auditID(st)})
	if err := e.log.Append(&audit.Record{Kind: audit.KindForwardSkip, Site: site, Profile: profile, Source: "forward",
		Data: data, At: e.now().UnixMilli()}); err != nil {
		return fmt.Errorf("consent: audit log: %w", err)
	}
	return nil
}

func auditID(st *state) string {
	if st == nil {
		return ""
	}
	return st.AuditID
}
