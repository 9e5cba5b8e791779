package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

const auditUsage = `Usage:
  tagway audit verify                        recompute the hash chain; exit 1 naming the first broken record
  tagway audit query --profile KEY [--site S] [--since T] [--until T] [--format jsonl|csv]
  tagway audit export [--since T] [--until T] [--format jsonl|csv]   (progress on stderr)

T is RFC 3339 or unix seconds. These are clients of the admin API: --admin URL
(env TAGWAY_ADMIN_URL, default http://127.0.0.1:8081); TAGWAY_ADMIN_TOKEN is sent when set.
`

// auditCmd runs `tagway audit …` against a serving gateway's admin API.
func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "query" && args[0] != "export") {
		fmt.Fprint(stderr, auditUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return errHelp
		}
		return errUsage
	}
	verb := args[0]
	fs := flag.NewFlagSet("audit "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "", "admin API URL (env TAGWAY_ADMIN_URL; default http://127.0.0.1:8081)")
	profile := fs.String("profile", "", "profile id (query)")
	site := fs.String("site", "", "site id (query; default: every site)")
	since := fs.String("since", "", "from this time (RFC 3339 or unix seconds)")
	until := fs.String("until", "", "before this time")
	format := fs.String("format", "jsonl", "jsonl or csv")
	fs.Usage = func() { fmt.Fprint(stderr, auditUsage) }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	q := url.Values{}
	for k, v := range map[string]string{"profile": *profile, "site": *site, "since": *since, "until": *until, "format": *format} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if verb == "query" && *profile == "" {
		return errors.New("audit query: --profile is required")
	}
	resp, err := adminRequest(ctx, getenv, *admin, "GET", "/admin/audit/"+verb, q)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer resp.Body.Close()
	if verb == "verify" {
		var v struct {
			OK      bool   `json:"ok"`
			Records int    `json:"records"`
			Seq     uint64 `json:"seq"`
			Reason  string `json:"reason"`
			Error   string `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			return fmt.Errorf("audit verify: %s: %w", resp.Status, err)
		}
		switch {
		case v.OK:
			fmt.Fprintf(stdout, "audit log ok: %d records verified\n", v.Records)
			return nil
		case v.Reason != "":
			return fmt.Errorf("audit log broken at record %d: %s", v.Seq, v.Reason)
		default:
			return fmt.Errorf("audit verify: %s %s", resp.Status, v.Error)
		}
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("audit %s: %w", verb, apiError(resp.Status, b))
	}
	// Stream, with progress on stderr for large exports.
	n, buf := 0, make([]byte, 32<<10)
	for {
		k, err := resp.Body.Read(buf)
		if k > 0 {
			if _, werr := stdout.Write(buf[:k]); werr != nil {
				return werr
			}
			before := n
			n += strings.Count(string(buf[:k]), "\n")
			if verb == "export" && n/10000 > before/10000 {
				fmt.Fprintf(stderr, "exported %d records…\n", n)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
