package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/tagway/tagway/segments"
)

const segmentsUsage = `Usage:
  tagway segments list [--json]                         every segment: members, held out, deliverable, last change
  tagway segments explain KEY [--site S] [--kind K]     each condition's counts, sums and times; why in or out
  tagway segments export NAME [--format F] [--out FILE] stream the members' hashed ids

KEY is read as for "tagway user": a profile id (a:…), a _tw_id value, an
email, phone or external id (hashed here before anything is sent); --profile
KEY is accepted too. Export formats: tiktok-csv (default; TikTok's
customer-file columns Email_SHA256,Phone_SHA256) or jsonl. Progress goes to
stderr. Clients of the admin API: --admin URL (env TAGWAY_ADMIN_URL, default
http://127.0.0.1:8081); TAGWAY_ADMIN_TOKEN is sent.
`

// segmentsCmd runs `tagway segments list|explain|export`.
func segmentsCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "explain" && args[0] != "export") {
		fmt.Fprint(stderr, segmentsUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return errHelp
		}
		return errUsage
	}
	verb := args[0]
	fs := flag.NewFlagSet("segments "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, segmentsUsage) }
	admin := fs.String("admin", "", "admin API URL (env TAGWAY_ADMIN_URL)")
	asJSON := fs.Bool("json", false, "list: JSON instead of a table")
	site := fs.String("site", "", "explain: site id (default: every site)")
	kind := fs.String("kind", "", "explain: profile, anon, email, phone or external_id (default: guessed)")
	profile := fs.String("profile", "", "explain: KEY")
	format := fs.String("format", "tiktok-csv", "export: tiktok-csv or jsonl")
	out := fs.String("out", "", "export: write to FILE instead of stdout")
	rest, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		if len(rest) != 0 {
			fmt.Fprint(stderr, segmentsUsage)
			return errUsage
		}
		return segmentsList(ctx, getenv, *admin, *asJSON, stdout)
	case "explain":
		if *profile != "" {
			rest = append(rest, *profile)
		}
		if len(rest) != 1 {
			fmt.Fprint(stderr, segmentsUsage)
			return errUsage
		}
		key, k, err := userKey(rest[0], *kind)
		if err != nil {
			return err
		}
		q := url.Values{"key": {key}, "kind": {k}}
		if *site != "" {
			q.Set("site", *site)
		}
		body, err := adminGet(ctx, getenv, *admin, "/admin/segments/explain", q)
		if err != nil {
			return fmt.Errorf("segments explain: %w", err)
		}
		return writePretty(stdout, body)
	}
	if len(rest) != 1 {
		fmt.Fprint(stderr, segmentsUsage)
		return errUsage
	}
	return segmentsExport(ctx, getenv, *admin, rest[0], *format, *out, stdout, stderr)
}

// adminGet returns a 200 answer's body or an error carrying the API's.
func adminGet(ctx context.Context, getenv func(string) string, admin, path string, q url.Values) ([]byte, error) {
	resp, err := adminRequest(ctx, getenv, admin, "GET", path, q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp.Status, body)
	}
	return body, nil
}

func segmentsList(ctx context.Context, getenv func(string) string, admin string, asJSON bool, stdout io.Writer) error {
	body, err := adminGet(ctx, getenv, admin, "/admin/segments", url.Values{})
	if err != nil {
		return fmt.Errorf("segments list: %w", err)
	}
	if asJSON {
		return writePretty(stdout, body)
	}
	var list []segments.Summary
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("segments list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMEMBERS\tHELD OUT\tDELIVERABLE\tLAST CHANGE")
	for _, s := range list {
		d := "yes"
		if !s.Deliverable {
			d = fmt.Sprintf("no (< %d)", s.MinSize)
		}
		last := s.LastChange
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", s.Name, s.Members, s.HeldOut, d, last)
	}
	return tw.Flush()
}

func segmentsExport(ctx context.Context, getenv func(string) string, admin, name, format, out string, stdout, stderr io.Writer) error {
	resp, err := adminRequest(ctx, getenv, admin, "GET", "/admin/segments/"+url.PathEscape(name)+"/export", url.Values{"format": {format}})
	if err != nil {
		return fmt.Errorf("segments export: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return fmt.Errorf("segments export: %w", apiError(resp.Status, body))
	}
	w := stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	rows, start := 0, time.Now()
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if _, werr := bw.Write(line); werr != nil {
				return werr
			}
			rows++
			if rows%10000 == 0 {
				fmt.Fprintf(stderr, "segments export %s: %d rows\n", name, rows)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return fmt.Errorf("segments export: reading: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if e := resp.Trailer.Get("Tagway-Error"); e != "" {
		return fmt.Errorf("segments export: the server stopped: %s", e)
	}
	members := resp.Trailer.Get("Tagway-Exported")
	if format == "tiktok-csv" && rows > 0 {
		rows-- // the header
	}
	fmt.Fprintf(stderr, "segments export %s: %s members exported (%d rows) in %s\n", name, members, rows, time.Since(start).Round(time.Millisecond))
	return nil
}
