package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/tagway/tagway/gateway/event"
)

// browser starts headless Chromium (Debian's, as CI installs it). Without
// one the tests skip, unless TAGWAY_REQUIRE_BROWSER=1 (CI) makes that a
// failure.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("TAGWAY_REQUIRE_BROWSER") == "1" {
			t.Fatal("Chromium is required (apt-get install -y chromium)")
		}
		t.Skip("Chromium not installed (apt-get install -y chromium); CI runs these tests")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-quic", true))
	// A start can fail on a loaded machine (a 2-core run of the whole
	// suite saw Chromium exit at once, "chrome failed to start", and start
	// fine alone): it is tried three times before the test fails.
	var err error
	for try := 1; try <= 3; try++ {
		actx, cancel := chromedp.NewExecAllocator(context.Background(), append(opts, chromedp.UserDataDir(t.TempDir()))...)
		ctx, cancel2 := chromedp.NewContext(actx)
		ctx, cancel3 := context.WithTimeout(ctx, 60*time.Second)
		if err = chromedp.Do(ctx); err == nil {
			t.Cleanup(cancel)
			t.Cleanup(cancel2)
			t.Cleanup(cancel3)
			return ctx
		}
		cancel3()
		cancel2()
		cancel()
		t.Logf("starting Chromium (try %d of 3): %v", try, err)
		time.Sleep(time.Second)
	}
	t.Fatalf("starting Chromium: %v", err)
	return nil
}

// waitEvents polls the stream until want events are there (or 15 s pass).
func waitEvents(t *testing.T, natsURL string, want int) []event.Envelope {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		msgs := readEvents(t, natsURL)
		if len(msgs) >= want || time.Now().After(deadline) {
			envs := make([]event.Envelope, len(msgs))
			for i, m := range msgs {
				_ = json.Unmarshal(m.Data, &envs[i])
				if strings.Contains(strings.ToLower(string(m.Data)), "jane.doe@") {
					t.Errorf("raw email in the stream: %s", m.Data)
				}
			}
			if len(envs) < want {
				t.Fatalf("%d events arrived, want %d: %+v", len(envs), want, envs)
			}
			return envs
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func byName(envs []event.Envelope) map[string]event.Envelope {
	m := map[string]event.Envelope{}
	for _, e := range envs {
		if _, ok := m[e.Event]; !ok {
			m[e.Event] = e
		}
	}
	return m
}

// tagLoaded waits until the tag has replaced the snippet's queue stub.
func tagLoaded() chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](`typeof tw === "function" && tw.version === "1"`, chromedp.WithPollingTimeout(10*time.Second))(ctx, tg)
		return chromedp.Void{}, err
	}
}

// Acceptance 1: the snippet on a page fires PageView, AddToCart and identify;
// the events arrive with the _tw_id cookie id, the email hashed in the
// browser, the page URL and the landing URL's click id.
func TestBrowserTagEndToEnd(t *testing.T) {
	ctx := browser(t)
	ep, stop, _ := startServe(t, t.TempDir(), map[string]string{"TAGWAY_DEMO_KEY": "k"})
	defer stop()
	err := chromedp.Do(ctx,
		chromedp.Navigate(ep.public+"/demo?ttclid=tt-landing-1"),
		chromedp.WaitVisible("#cart"),
		tagLoaded(),
		chromedp.Click("#cart"),
		chromedp.Click("#identify"),
		chromedp.Click("#pay"),
	)
	if err != nil {
		t.Fatal(err)
	}
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	cookies := res.Cookies
	envs := waitEvents(t, ep.nats, 3)
	var anon string
	for _, c := range cookies {
		if c.Name == "_tw_id" {
			anon = c.Value
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax {
				t.Errorf("cookie attributes: %+v", c)
			}
		}
	}
	if !event.IsAnonID(anon) {
		t.Fatalf("no _tw_id cookie in the browser: %+v", cookies)
	}
	got := byName(envs)
	for _, name := range []string{"PageView", "AddToCart", "CompletePayment"} {
		e, ok := got[name]
		if !ok {
			t.Fatalf("%s did not arrive: %+v", name, envs)
		}
		if e.User.AnonID != anon || e.User.TTCLID != "tt-landing-1" || !strings.Contains(e.Page.URL, "/demo") || e.Source != event.SourceBrowser {
			t.Errorf("%s: user %+v page %+v", name, e.User, e.Page)
		}
	}
	want, _ := event.HashEmail("jane.doe@example.com")
	if got["CompletePayment"].User.EmailSHA256 != want {
		t.Fatalf("identify: email hash %q, want %q", got["CompletePayment"].User.EmailSHA256, want)
	}
	if p := string(got["AddToCart"].Properties); !strings.Contains(p, `"value":20`) || !strings.Contains(p, `"currency":"USD"`) {
		t.Errorf("AddToCart properties: %s", p)
	}
	// The demo page shows what the gateway accepted for this browser.
	shown, err := chromedp.Run(ctx, chromedp.Poll[string](`(function(){var t=document.getElementById("accepted").textContent;
		return t.indexOf("CompletePayment")>=0 && t.indexOf("AddToCart")>=0 ? t : ""})()`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil || !strings.Contains(shown, "allowed: measurement") {
		t.Fatalf("the demo page does not show the accepted events: %q %v", shown, err)
	}
}

// Acceptance 2: with a TCF CMP that answers late and Global Privacy Control
// on, the signals arrive attached to the events, the first PageView included.
func TestBrowserConsentSignals(t *testing.T) {
	ctx := browser(t)
	ep, stop, _ := startServe(t, t.TempDir(), map[string]string{"TAGWAY_DEMO_KEY": "k"})
	defer stop()
	tcf := fixtureTCF(t, "tcf_publisher_restrictions")
	// A browser with GPC on (Chromium ships no GPC setting): the property
	// and the Sec-GPC header.
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Sec-GPC": "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `Object.defineProperty(navigator,"globalPrivacyControl",{get:()=>true})`}); err != nil {
		t.Fatal(err)
	}
	err := chromedp.Do(ctx,
		chromedp.Navigate(ep.public+"/demo?cmp_delay=300&tcf="+tcf),
		chromedp.WaitVisible("#view"),
		tagLoaded(),
		chromedp.Click("#view"),
	)
	if err != nil {
		t.Fatal(err)
	}
	got := byName(waitEvents(t, ep.nats, 2))
	for _, name := range []string{"PageView", "ViewContent"} {
		s := got[name].Consent.Signals
		if s.TCF != tcf || !s.GPC {
			t.Errorf("%s signals: %+v", name, s)
		}
	}
}

// Acceptance 3: leaving the page flushes pending events by beacon; errors in
// the page's own code do not stop the tag, and a tag failure does not throw
// into the page.
func TestBrowserBeaconAndIsolation(t *testing.T) {
	ctx := browser(t)
	ep, stop, _ := startServe(t, t.TempDir(), map[string]string{"TAGWAY_DEMO_KEY": "k"})
	defer stop()
	// The page's own code throws before the tag loads…
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `setTimeout(function(){throw new Error("page bug before")},0)`}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(ep.public+"/demo"), chromedp.WaitVisible("#cart"), tagLoaded()); err != nil {
		t.Fatal(err)
	}
	// …and after; then the tag is handed input that makes it fail.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`setTimeout(function(){throw new Error("page bug after")},0); 1`)); err != nil {
		t.Fatal(err)
	}
	verdict, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(function(){try{
		tw("track", {toString(){throw new Error("bad name")}});
		tw("identify", {get email(){throw new Error("bad getter")}});
		tw("no-such-command");
		return "ok"}catch(e){return "threw: "+e}})()`))
	if err != nil {
		t.Fatal(err)
	}
	// Leave at once: the AddToCart still waits in its 1 s batch.
	if err := chromedp.Do(ctx, chromedp.Click("#cart"), chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	if verdict != "ok" {
		t.Fatalf("the tag threw into the page: %s", verdict)
	}
	got := byName(waitEvents(t, ep.nats, 2))
	if _, ok := got["AddToCart"]; !ok {
		t.Fatalf("the pending AddToCart was not flushed on leaving: %v", got)
	}
}

// GPP and US Privacy CMPs, EngagementTime on leaving, and the video helper.
func TestBrowserGPPUSPEngagementVideo(t *testing.T) {
	ctx := browser(t)
	ep, stop, _ := startServe(t, t.TempDir(), map[string]string{"TAGWAY_DEMO_KEY": "k"})
	defer stop()
	const gpp = "DBABLA~CVVpGGGGkmVk.YA" // usnat v2, made by the IAB's encoder (consent fixtures)
	stubs := `window.__gpp=function(cmd,cb){if(cmd==="ping"||cmd==="addEventListener"){setTimeout(function(){cb({gppString:"` + gpp + `",applicableSections:[7]},true)},50)}};
window.__uspapi=function(cmd,v,cb){if(cmd==="getUSPData")cb({version:1,uspString:"1YYN"},true)};`
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: stubs}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(ep.public+"/demo"), chromedp.WaitVisible("#cart"), tagLoaded()); err != nil {
		t.Fatal(err)
	}
	// A stand-in video element (headless Chromium plays no media): the helper
	// listens to timeupdate and reads currentTime/duration.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(function(){
		var v = document.createElement("div"); v.duration = 100; v.currentTime = 0;
		tw("video", v);
		[10, 26, 51, 80, 100].forEach(function(t){ v.currentTime = t; v.dispatchEvent(new Event("timeupdate")); });
		return 1})()`)); err != nil {
		t.Fatal(err)
	}
	// Stay visible for over a second, then leave: EngagementTime is sent.
	time.Sleep(1200 * time.Millisecond)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	envs := waitEvents(t, ep.nats, 6) // PageView, VideoProgress ×4, EngagementTime
	var percents []string
	var engagement *event.Envelope
	for i, e := range envs {
		if e.Consent.Signals.GPP != gpp || len(e.Consent.Signals.GPPSID) != 1 || e.Consent.Signals.GPPSID[0] != 7 || e.Consent.Signals.USP != "1YYN" {
			t.Errorf("%s signals: %+v", e.Event, e.Consent.Signals)
		}
		switch e.Event {
		case "VideoProgress":
			var p struct{ Percent float64 }
			_ = json.Unmarshal(e.Properties, &p)
			percents = append(percents, strconv.Itoa(int(p.Percent)))
		case "EngagementTime":
			engagement = &envs[i]
		}
	}
	if strings.Join(percents, ",") != "25,50,75,100" {
		t.Errorf("VideoProgress percents: %v", percents)
	}
	if engagement == nil || !strings.Contains(string(engagement.Properties), `"seconds":`) {
		t.Fatalf("no EngagementTime: %+v", envs)
	}
}
