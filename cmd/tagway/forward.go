package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/tagway/tagway/forward"
	"github.com/tagway/tagway/gateway/units"
)

const forwardUsage = `Usage:
  tagway forward list                                   the destinations: type, events, hold
  tagway forward dead --dest NAME [--since T] [--json]  conversions the destination refused, with its answer
  tagway forward replay --dest NAME [--since T]         send them again (after the fix); each is sent once

T is RFC 3339 (2026-12-01T10:00:00Z) or a duration back from now (24h, 7d).
Clients of the admin API: --admin URL (env TAGWAY_ADMIN_URL, default
http://127.0.0.1:8081); TAGWAY_ADMIN_TOKEN is sent.
`

// forwardCmd runs `tagway forward list|dead|replay`.
func forwardCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "dead" && args[0] != "replay") {
		fmt.Fprint(stderr, forwardUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return errHelp
		}
		return errUsage
	}
	verb := args[0]
	fs := flag.NewFlagSet("forward "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, forwardUsage) }
	admin := fs.String("admin", "", "admin API URL (env TAGWAY_ADMIN_URL)")
	dest := fs.String("dest", "", "destination name")
	since := fs.String("since", "", "only dead letters stored since T")
	asJSON := fs.Bool("json", false, "dead: JSON instead of a table")
	rest, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(rest) != 0 || (verb != "list" && *dest == "") {
		fmt.Fprint(stderr, forwardUsage)
		return errUsage
	}
	q := url.Values{}
	if *dest != "" {
		q.Set("dest", *dest)
	}
	if *since != "" {
		t, err := parseSinceFlag(*since, time.Now())
		if err != nil {
			return fmt.Errorf("--since: %w", err)
		}
		q.Set("since", t.UTC().Format(time.RFC3339))
	}
	method, path := "GET", "/admin/forward"
	switch verb {
	case "dead":
		path += "/dead"
	case "replay":
		method, path = "POST", path+"/replay"
	}
	resp, err := adminRequest(ctx, getenv, *admin, method, path, q)
	if err != nil {
		return fmt.Errorf("forward %s: %w", verb, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("forward %s: %w", verb, apiError(resp.Status, body))
	}
	switch verb {
	case "replay":
		var r struct {
			Replayed int `json:"replayed"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("forward replay: %w", err)
		}
		fmt.Fprintf(stdout, "%d dead letters of %s sent again\n", r.Replayed, *dest)
		return nil
	case "dead":
		if *asJSON {
			return writePretty(stdout, body)
		}
		var dls []forward.DeadLetter
		if err := json.Unmarshal(body, &dls); err != nil {
			return fmt.Errorf("forward dead: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tAT\tEVENT\tEVENT ID\tSTATUS\tANSWER")
		for _, d := range dls {
			reason := d.Reason
			if len(reason) > 120 {
				reason = reason[:120] + "…"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", d.Seq, d.At.Format(time.RFC3339), d.Event, d.EventID, d.Status, reason)
		}
		return tw.Flush()
	}
	return writePretty(stdout, body)
}

// parseSinceFlag reads RFC 3339 or a duration back from now (7d, 24h).
func parseSinceFlag(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := units.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q must be RFC 3339 or a duration such as 24h or 7d", s)
	}
	return now.Add(-d.D()), nil
}
