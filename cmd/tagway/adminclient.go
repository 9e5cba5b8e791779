package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// adminRequest sends a request to a serving gateway's admin API: the URL
// from --admin, else TAGWAY_ADMIN_URL, else http://127.0.0.1:8081, and
// TAGWAY_ADMIN_TOKEN as the bearer token when set. The CLI's inspection
// commands are clients of this API (Badger allows one process per data dir).
func adminRequest(ctx context.Context, getenv func(string) string, base, method, path string, q url.Values) (*http.Response, error) {
	if base == "" {
		base = getenv("TAGWAY_ADMIN_URL")
	}
	if base == "" {
		base = "http://127.0.0.1:8081"
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if tok := getenv("TAGWAY_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w (is tagway serve running? --admin)", err)
	}
	return resp, nil
}

// apiError turns a non-200 answer into an error: the API's {"error": "…"}
// message when it sent one, else the body as it is.
func apiError(status string, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s: %s", status, e.Error)
	}
	return fmt.Errorf("%s: %s", status, strings.TrimSpace(string(body)))
}
