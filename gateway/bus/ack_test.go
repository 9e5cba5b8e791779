package bus

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		body   string
		status string
		want   Ack
		err    bool // Err set; Unsure as want says
	}{
		{body: `{"stream":"TW_EVENTS","seq":42}`, want: Ack{Seq: 42}},
		{body: `{"stream":"TW_EVENTS","domain":"hub","seq":7}`, want: Ack{Seq: 7}},
		{body: `{"stream":"TW_EVENTS","seq":42,"duplicate": true}`, want: Ack{Seq: 42, Duplicate: true}},
		{body: `{"stream":"TW_EVENTS", "seq":18446744073709551615}`, want: Ack{Seq: 18446744073709551615}},
		{body: `{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded"}}`, err: true},
		{body: `{"stream":"TW_EVENTS","seq":12x}`, err: true, want: Ack{Unsure: true}},
		{body: `{"seq":3}`, err: true, want: Ack{Unsure: true}},
		{body: `not json`, err: true, want: Ack{Unsure: true}},
		{status: "503", err: true},
		{err: true, want: Ack{Unsure: true}},
	} {
		m := &nats.Msg{Data: []byte(tc.body), Header: nats.Header{}}
		if tc.status != "" {
			m.Header.Set("Status", tc.status)
		}
		got := parseAck(m)
		if (got.Err != nil) != tc.err || got.Unsure != tc.want.Unsure || (!tc.err && (got.Seq != tc.want.Seq || got.Duplicate != tc.want.Duplicate)) {
			t.Errorf("%q (status %q): %+v, want %+v (err %v)", tc.body, tc.status, got, tc.want, tc.err)
		}
		if got.Err != nil && !errors.Is(got.Err, ErrUnavailable) {
			t.Errorf("%q: %v is not ErrUnavailable", tc.body, got.Err)
		}
	}
	// The server's API error stays visible: an answer that it was not stored.
	a := parseAck(&nats.Msg{Data: []byte(`{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}`)})
	var apiErr *jetstream.APIError
	if !errors.As(a.Err, &apiErr) || apiErr.ErrorCode != 10060 || a.Unsure {
		t.Errorf("API error: %+v", a)
	}
}

// The hand-read PubAck never disagrees with encoding/json: whatever it
// accepts, the JSON decoder reads as the same plain PubAck.
func FuzzParseAck(f *testing.F) {
	for _, s := range []string{`{"stream":"TW_EVENTS","seq":42}`, `{"stream":"S","domain":"d","seq":1}`, `{"stream":"S","seq":1,"duplicate": true}`,
		`{"error":{"code":503}}`, `{"stream":"S","seq":}`, `{"stream":"S","seq":1`, `{"stream":"S","seq":99999999999999999999999}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a := parseAck(&nats.Msg{Data: []byte(s)})
		seq, ok := fastAck([]byte(s))
		if !ok {
			return
		}
		var r struct {
			Error     json.RawMessage `json:"error"`
			Stream    string          `json:"stream"`
			Seq       uint64          `json:"seq"`
			Duplicate bool            `json:"duplicate"`
		}
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			return // not JSON at all past the sequence: the server never sends that
		}
		if r.Seq != seq || r.Duplicate || len(r.Error) > 0 || a.Seq != seq || a.Err != nil {
			t.Fatalf("%q: read %d, encoding/json %+v", s, seq, r)
		}
	})
}
