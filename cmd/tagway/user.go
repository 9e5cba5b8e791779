package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/tagway/tagway/gateway/event"
)

const userUsage = `Usage:
  tagway user show KEY [--site S] [--kind K]    everything held about a profile (JSON)
  tagway user erase KEY [--site S] [--kind K]   erase it; one erasure record stays in the audit log

KEY is a profile id (a:…, e:…), a _tw_id cookie value, an email, a phone
number or an external id; emails and phones are normalised and SHA-256
hashed here, before anything is sent. --kind (profile, anon, email, phone,
external_id) overrides the guess. Clients of the admin API: --admin URL (env
TAGWAY_ADMIN_URL, default http://127.0.0.1:8081); TAGWAY_ADMIN_TOKEN is sent.
`

var phoneLike = regexp.MustCompile(`^[0-9 ()-]{7,}$`)

// userKey turns KEY into what the admin API takes: kind and a value, with
// personal data hashed.
func userKey(key, kind string) (string, string, error) {
	if kind == "" {
		switch {
		case strings.Contains(key, "@"):
			kind = "email"
		case strings.Contains(key, ":"):
			kind = "profile"
		case event.IsAnonID(key):
			kind = "anon"
		case event.IsSHA256Hex(key):
			kind = "email"
		case strings.HasPrefix(key, "+") || phoneLike.MatchString(key):
			kind = "phone"
		default:
			kind = "external_id"
		}
	}
	var err error
	switch kind {
	case "email":
		key, err = event.HashEmail(key)
	case "phone":
		key, err = event.HashPhone(key)
	case "external_id":
		key, err = event.HashExternalID(key)
	case "profile", "anon":
	default:
		return "", "", fmt.Errorf("--kind: %q (profile, anon, email, phone or external_id)", kind)
	}
	if err != nil {
		return "", "", fmt.Errorf("KEY as %s: %w", kind, err)
	}
	return key, kind, nil
}

// userCmd runs `tagway user show|erase`.
func userCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "erase") {
		fmt.Fprint(stderr, userUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return errHelp
		}
		return errUsage
	}
	verb := args[0]
	fs := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "", "admin API URL (env TAGWAY_ADMIN_URL)")
	site := fs.String("site", "", "site id (default: every site)")
	kind := fs.String("kind", "", "profile, anon, email, phone or external_id (default: guessed)")
	fs.Usage = func() { fmt.Fprint(stderr, userUsage) }
	rest, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		fmt.Fprint(stderr, userUsage)
		return errUsage
	}
	key, k, err := userKey(rest[0], *kind)
	if err != nil {
		return err
	}
	q := url.Values{"kind": {k}}
	if *site != "" {
		q.Set("site", *site)
	}
	method, path := "GET", "/admin/users/"+url.PathEscape(key)
	if verb == "erase" {
		method, path = "POST", path+"/erase"
	}
	resp, err := adminRequest(ctx, getenv, *admin, method, path, q)
	if err != nil {
		return fmt.Errorf("user %s: %w", verb, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("user %s: %w", verb, apiError(resp.Status, body))
	}
	return writePretty(stdout, body)
}

// writePretty indents a JSON body, keeping the server's field order (or
// writes it as it is).
func writePretty(w io.Writer, body []byte) error {
	var buf bytes.Buffer
	if json.Indent(&buf, bytes.TrimSpace(body), "", "  ") == nil {
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	}
	_, err := w.Write(body)
	return err
}

// parseInterleaved parses flags that may come before or after the
// positional arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, argv []string) ([]string, error) {
	var rest []string
	for len(argv) > 0 {
		if err := fs.Parse(argv); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		argv = fs.Args()[1:]
	}
	return rest, nil
}
