package forwardtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestChaosFailsAboutHalf(t *testing.T) {
	for _, kinds := range [][]ChaosKind{nil, {Status500, Status429}} {
		t.Run(fmt.Sprint(kinds), func(t *testing.T) {
			f := newTT(t)
			f.SetChaos(Chaos{Rate: 0.5, Seed: 7, Kinds: kinds})
			const n = 400
			failed := 0
			for i := range n {
				status, r := ttPost(t, f, ttBody(fmt.Sprintf("e%d", i)))
				switch {
				case status == 200 && r.Code == 0:
				case status == 500 && r.Code == TikTokInternalError, status == 429 && r.Code == TikTokRateLimited:
					failed++
				default:
					t.Fatalf("request %d: unexpected answer %d %+v", i, status, r)
				}
			}
			if failed < n*4/10 || failed > n*6/10 {
				t.Errorf("chaos at 0.5 failed %d of %d", failed, n)
			}
			if f.Rejected() != failed || f.Accepted() != n-failed || f.Requests() != n {
				t.Errorf("rejected %d accepted %d requests %d, failed %d", f.Rejected(), f.Accepted(), f.Requests(), failed)
			}
			if got := len(f.EventIDs()); got != n-failed {
				t.Errorf("%d event ids recorded for %d accepted requests", got, n-failed)
			}
			for _, r := range f.Log() {
				if (r.Chaos != "") != errors.Is(r.Err, ErrChaos) || r.Chaos != "" && r.Accepted() {
					t.Fatalf("log entry %+v", r)
				}
			}
		})
	}
}

func TestChaosIsDeterministicPerSeed(t *testing.T) {
	run := func(seed uint64) string {
		f := newTT(t)
		f.SetChaos(Chaos{Rate: 0.5, Seed: seed})
		var sb strings.Builder
		for i := range 40 {
			status, _ := ttPost(t, f, ttBody(fmt.Sprint(i)))
			sb.WriteString(fmt.Sprint(status / 100))
		}
		return sb.String()
	}
	if a, b := run(1), run(1); a != b {
		t.Errorf("same seed, different sequences:\n%s\n%s", a, b)
	}
	if a, b := run(1), run(2); a == b {
		t.Errorf("seeds 1 and 2 gave the same sequence %s", a)
	}
}

func TestChaos429HasRetryAfterAndAPIBody(t *testing.T) {
	f := newMeta(t)
	f.SetChaos(Chaos{Rate: 1, Kinds: []ChaosKind{Status429}, RetryAfter: 1500 * time.Millisecond})
	status, h, b := post(t, f.Client(), f.withToken(), nil, metaBody("x"))
	var r graphResp
	if err := json.Unmarshal(b, &r); err != nil || status != 429 || h.Get("Retry-After") != "2" || r.Error == nil || r.Error.Code != MetaTooManyCalls || r.Error.IsTransient == nil || !*r.Error.IsTransient {
		t.Fatalf("answer %d Retry-After %q %s", status, h.Get("Retry-After"), b)
	}
	f.SetChaos(Chaos{Rate: 1, Kinds: []ChaosKind{Status500}})
	status, _, b = post(t, f.Client(), f.withToken(), nil, metaBody("x"))
	if err := json.Unmarshal(b, &r); err != nil || status != 500 || r.Error == nil || r.Error.Code != MetaServiceError {
		t.Fatalf("500 answer %d %s", status, b)
	}
	if len(f.EventIDs()) != 0 || f.Accepted() != 0 || f.Rejected() != 2 {
		t.Errorf("chaotic requests recorded events: %v", f.EventIDs())
	}
	f.SetChaos(Chaos{})
	if status, _, _ := post(t, f.Client(), f.withToken(), nil, metaBody("x")); status != 200 || f.EventIDs()["x"] != 1 {
		t.Errorf("chaos off: %d %v", status, f.EventIDs())
	}
}

func TestChaosDropConnection(t *testing.T) {
	f := newTT(t)
	f.SetChaos(Chaos{Rate: 1, Kinds: []ChaosKind{DropConnection}})
	_, _, _, err := tryPost(f.Client(), f.EndpointURL(), map[string]string{"Access-Token": ttToken}, ttBody("d"))
	if err == nil {
		t.Fatal("a dropped connection gave an answer")
	}
	log := f.Log()
	if len(log) != 1 || log[0].Status != 0 || log[0].Response != nil || log[0].Chaos != DropConnection || !errors.Is(log[0].Err, ErrChaos) {
		t.Errorf("log %+v", log)
	}
	if len(f.EventIDs()) != 0 || f.Rejected() != 1 {
		t.Errorf("dropped request recorded events: %v", f.EventIDs())
	}
}

func TestChaosTimeout(t *testing.T) {
	f := newMeta(t)
	f.SetChaos(Chaos{Rate: 1, Kinds: []ChaosKind{Timeout}, Hold: 10 * time.Second})
	client := &http.Client{Timeout: 150 * time.Millisecond}
	start := time.Now()
	_, _, _, err := tryPost(client, f.withToken(), nil, metaBody("slow"))
	if err == nil {
		t.Fatal("a held request was answered")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("client waited %s", time.Since(start))
	}
	// The fake notices the client leaving and drops the request; poll the log.
	deadline := time.Now().Add(5 * time.Second)
	for len(f.Log()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	log := f.Log()
	if len(log) != 1 || log[0].Chaos != Timeout || log[0].Status != 0 || len(f.EventIDs()) != 0 {
		t.Fatalf("log %+v ids %v", log, f.EventIDs())
	}

	// With a patient client the fake holds for Hold, then drops.
	f.SetChaos(Chaos{Rate: 1, Kinds: []ChaosKind{Timeout}, Hold: 200 * time.Millisecond})
	start = time.Now()
	if _, _, _, err := tryPost(f.Client(), f.withToken(), nil, metaBody("slow")); err == nil {
		t.Fatal("held request answered")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("dropped after %s, want ≥ 200ms", d)
	}
}

func TestChaosHeldRequestDoesNotBlockCleanup(t *testing.T) {
	done := make(chan struct{})
	t.Run("inner", func(t *testing.T) {
		f := newTT(t)
		f.SetChaos(Chaos{Rate: 1, Kinds: []ChaosKind{Timeout}, Hold: time.Hour})
		go func() {
			defer close(done)
			_, _, _, _ = tryPost(&http.Client{}, f.EndpointURL(), map[string]string{"Access-Token": ttToken}, ttBody("h"))
		}()
		deadline := time.Now().Add(5 * time.Second)
		for f.Requests() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}) // Cleanup runs here and must release the held request.
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("cleanup did not release a held request")
	}
}

func TestRejectNextAndAccept(t *testing.T) {
	f := newTT(t)
	f.RejectNext(2, http.StatusServiceUnavailable, "")
	for i := range 2 {
		status, r := ttPost(t, f, ttBody(fmt.Sprintf("r%d", i)))
		if status != 503 || r.Code != TikTokInternalError {
			t.Fatalf("forced %d: %d %+v", i, status, r)
		}
	}
	if status, r := ttPost(t, f, ttBody("ok")); status != 200 || r.Code != 0 {
		t.Fatalf("after the forced ones: %d %+v", status, r)
	}
	if ids := f.EventIDs(); len(ids) != 1 || ids["ok"] != 1 {
		t.Errorf("EventIDs %v", ids)
	}
	for _, r := range f.Log()[:2] {
		if !errors.Is(r.Err, ErrForced) || r.Status != 503 {
			t.Errorf("forced log entry %+v", r)
		}
	}

	f.RejectNext(100, http.StatusBadRequest, `{"custom":true}`)
	status, _, b := post(t, f.Client(), f.EndpointURL(), map[string]string{"Access-Token": ttToken}, ttBody("c"))
	if status != 400 || string(b) != `{"custom":true}` {
		t.Errorf("custom body: %d %s", status, b)
	}
	f.Accept()
	if status, r := ttPost(t, f, ttBody("c")); status != 200 || r.Code != 0 {
		t.Errorf("after Accept: %d %+v", status, r)
	}
	if f.Accepted() != 2 || f.Rejected() != 3 || f.Requests() != 5 {
		t.Errorf("accepted %d rejected %d requests %d", f.Accepted(), f.Rejected(), f.Requests())
	}
}

func TestRejectNextDefaultMetaBodies(t *testing.T) {
	for status, code := range map[int]int{429: MetaTooManyCalls, 500: MetaServiceError, 401: MetaTokenInvalid, 400: MetaInvalidParam} {
		f := newMeta(t)
		f.RejectNext(1, status, "")
		got, r := metaPost(t, f, f.withToken(), nil, metaBody("x"))
		if got != status || r.Error == nil || r.Error.Code != code || r.Error.FBTraceID == "" {
			t.Errorf("RejectNext(%d): %d %+v", status, got, r.Error)
		}
	}
}

func TestRejectEventsUntilAccept(t *testing.T) {
	t.Run("tiktok", func(t *testing.T) {
		f := newTT(t)
		f.RejectEvents(func(id string) bool { return strings.HasPrefix(id, "bad") })
		if _, r := ttPost(t, f, ttBody("ok-1", "bad-1")); r.Code != TikTokInvalidParam || !strings.HasPrefix(r.Message, "data.1.event_id:") {
			t.Fatalf("predicate match: %+v", r)
		}
		if _, r := ttPost(t, f, ttBody("ok-2")); r.Code != 0 {
			t.Fatalf("no match: %+v", r)
		}
		f.Accept()
		if _, r := ttPost(t, f, ttBody("bad-1")); r.Code != 0 {
			t.Fatalf("after Accept: %+v", r)
		}
		if ids := f.EventIDs(); len(ids) != 2 || ids["ok-2"] != 1 || ids["bad-1"] != 1 || ids["ok-1"] != 0 {
			t.Errorf("EventIDs %v", ids)
		}
		if ae := f.Log()[0].Err; !errors.Is(ae, ErrForced) || lastAPIError(t, f.Log()[:1]).Index != 1 {
			t.Errorf("log error %v", ae)
		}
	})
	t.Run("meta", func(t *testing.T) {
		f := newMeta(t)
		f.RejectEvents(func(id string) bool { return id == "bad" })
		status, r := metaPost(t, f, f.withToken(), nil, metaBody("bad"))
		if status != 400 || r.Error == nil || r.Error.Code != 100 || !strings.Contains(r.Error.UserMsg, "data[0].event_id") {
			t.Fatalf("predicate match: %d %+v", status, r.Error)
		}
		f.RejectEvents(nil)
		if status, _ := metaPost(t, f, f.withToken(), nil, metaBody("bad")); status != 200 || f.EventIDs()["bad"] != 1 {
			t.Fatalf("after RejectEvents(nil): %d %v", status, f.EventIDs())
		}
	})
}

func TestEventIDsCountWireDuplicates(t *testing.T) {
	f := newTT(t)
	ttPost(t, f, ttBody("a", "a", "b"))
	ttPost(t, f, ttBody("a"))
	if ids := f.EventIDs(); ids["a"] != 3 || ids["b"] != 1 || len(ids) != 2 {
		t.Errorf("EventIDs %v, want a:3 b:1", ids)
	}
	if f.Events() != 4 {
		t.Errorf("Events %d", f.Events())
	}
	m := newMeta(t)
	metaPost(t, m, m.withToken(), nil, metaBody("x"))
	metaPost(t, m, m.withToken(), nil, metaBody("x"))
	if m.EventIDs()["x"] != 2 {
		t.Errorf("Meta EventIDs %v", m.EventIDs())
	}
	// The returned map is a copy.
	ids := f.EventIDs()
	ids["a"] = 100
	if f.EventIDs()["a"] != 3 {
		t.Error("EventIDs returned the fake's own map")
	}
}

func TestConcurrentUse(t *testing.T) {
	f := newTT(t)
	f.SetChaos(Chaos{Rate: 0.3, Seed: 3, Kinds: []ChaosKind{Status500, Status429}})
	const workers, each = 16, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, _, _, _ = tryPost(f.Client(), f.EndpointURL(), map[string]string{"Access-Token": ttToken}, ttBody(fmt.Sprintf("w%d-%d", w, i)))
				_ = f.EventIDs()
				_ = f.Log()
			}
		}()
	}
	wg.Add(1)
	go func() { // control calls racing with requests
		defer wg.Done()
		for range 50 {
			f.SetNow(fixedClock)
			f.RejectEvents(nil)
			f.Accept()
			_ = f.Rejected()
		}
	}()
	wg.Wait()
	if f.Requests() != workers*each || f.Accepted()+f.Rejected() != workers*each || len(f.Log()) != workers*each {
		t.Errorf("requests %d accepted %d rejected %d log %d", f.Requests(), f.Accepted(), f.Rejected(), len(f.Log()))
	}
	if len(f.EventIDs()) != f.Accepted() {
		t.Errorf("%d ids for %d accepted requests", len(f.EventIDs()), f.Accepted())
	}
}

func TestWaitEventIDs(t *testing.T) {
	f := newTT(t)
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _, _, _ = tryPost(f.Client(), f.EndpointURL(), map[string]string{"Access-Token": ttToken}, ttBody("w1", "w2"))
	}()
	if !f.WaitEventIDs(2, 5*time.Second) {
		t.Fatal("WaitEventIDs(2) timed out")
	}
	if f.WaitEventIDs(3, 50*time.Millisecond) {
		t.Fatal("WaitEventIDs(3) succeeded with 2 ids")
	}
}

func TestAPIErrorString(t *testing.T) {
	e := &APIError{API: "meta", Status: 400, Code: 100, Subcode: 2804003, Message: "too old"}
	if got := e.Error(); got != "forwardtest: meta rejected (HTTP 400, code 100/2804003): too old" {
		t.Errorf("Error() = %q", got)
	}
}

func TestHelpers(t *testing.T) {
	if SHA256Hex("abc") != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Error("SHA256Hex")
	}
	for _, c := range []struct {
		s  string
		ok bool
	}{{"USD", true}, {"eur", true}, {"XYZ", false}, {"EURO", false}, {"", false}} {
		if validCurrency(c.s) != c.ok {
			t.Errorf("validCurrency(%q) != %v", c.s, c.ok)
		}
	}
	if id := newRequestID(testNow); len(id) != 31 || !strings.HasPrefix(id, "20260310120000") {
		t.Errorf("request id %q", id)
	}
	if id := newTraceID(); len(id) != 23 {
		t.Errorf("trace id %q", id)
	}
}
