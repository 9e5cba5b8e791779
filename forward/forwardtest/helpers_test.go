package forwardtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testNow is the fixed clock of most tests.
var testNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return testNow }

// post sends body (a []byte as is, anything else as JSON) and returns the
// status, headers and body of the answer. The request fails the test only
// when the transport fails and allowErr is false.
func post(t *testing.T, client *http.Client, url string, header map[string]string, body any) (int, http.Header, []byte) {
	t.Helper()
	status, h, b, err := tryPost(client, url, header, body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return status, h, b
}

func tryPost(client *http.Client, url string, header map[string]string, body any) (int, http.Header, []byte, error) {
	var raw []byte
	switch b := body.(type) {
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return 0, nil, nil, err
		}
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// clone deep-copies a JSON-shaped value so table cases can mutate it.
func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[k] = clone(v)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, v := range x {
			s[i] = clone(v)
		}
		return s
	}
	return v
}

// set sets the value at a dotted path ("data.0.user.email") in a
// JSON-shaped value; a nil value with del deletes the key.
func set(root any, path string, v any) { walk(root, path, v, false) }
func del(root any, path string)        { walk(root, path, nil, true) }

func walk(root any, path string, v any, remove bool) {
	keys := strings.Split(path, ".")
	cur := root
	for i, k := range keys {
		last := i == len(keys)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				if remove {
					delete(c, k)
				} else {
					c[k] = v
				}
				return
			}
			cur = c[k]
		case []any:
			n, err := strconv.Atoi(k)
			if err != nil {
				panic("bad index " + k)
			}
			if last {
				c[n] = v
				return
			}
			cur = c[n]
		default:
			panic("cannot walk into " + path)
		}
	}
}

// lastAPIError returns the *APIError of the last logged request, failing
// the test if there is none.
func lastAPIError(t *testing.T, log []Request) *APIError {
	t.Helper()
	if len(log) == 0 {
		t.Fatal("no request logged")
	}
	var ae *APIError
	if !errors.As(log[len(log)-1].Err, &ae) {
		t.Fatalf("last request error %v is not an *APIError", log[len(log)-1].Err)
	}
	return ae
}
