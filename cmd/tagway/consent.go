package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	consentpkg "github.com/tagway/tagway/consent"
)

// consentCmd runs `tagway consent …`.
func consentCmd(_ context.Context, args []string, stdout, stderr io.Writer, _ func(string) string) error {
	if len(args) == 0 || args[0] != "decode" {
		fmt.Fprint(stderr, "Usage: tagway consent decode [--kind tcf|gpp|usp] STRING\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return errHelp
		}
		return errUsage
	}
	fs := flag.NewFlagSet("consent decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", "", "tcf, gpp or usp (default: detected from the string)")
	country := fs.String("country", "", "ISO country code: also print the decision for this jurisdiction")
	region := fs.String("region", "", "region or US state code (with --country US)")
	gpc := fs.Bool("gpc", false, "the request carried Global Privacy Control (also prints the decision)")
	defaultRegime := fs.String("default-regime", string(consentpkg.OptIn), "regime for an unknown country: opt-in, opt-out or none")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: tagway consent decode [--kind tcf|gpp|usp] [--gpc] [--country CC] [--region RR] STRING\n\n"+
			"Prints the decoded string as one JSON object; a malformed string exits 1 with what is wrong.\n"+
			"With --country, --region or --gpc it also prints \"decision\": the uses the default policy\n"+
			"allows (measurement, segments) in that jurisdiction, and why the others are denied.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	d, err := consentpkg.Decode(*kind, fs.Arg(0))
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	out := struct {
		*consentpkg.Decoded
		Decision *consentpkg.Decision `json:"decision,omitempty"`
	}{Decoded: d}
	if set["country"] || set["region"] || set["gpc"] {
		def := consentpkg.Regime(*defaultRegime)
		if def != consentpkg.OptIn && def != consentpkg.OptOut && def != consentpkg.None {
			return fmt.Errorf("--default-regime: %q must be opt-in, opt-out or none", *defaultRegime)
		}
		sig := consentpkg.Signals{GPC: *gpc}
		switch {
		case d.TCF != nil:
			sig.TCF = fs.Arg(0)
		case d.GPP != nil:
			sig.GPP = fs.Arg(0)
		case d.USP != nil:
			sig.USP = fs.Arg(0)
		}
		j := consentpkg.Resolve(*country, *region, time.Now(), def)
		dec := consentpkg.Decide(consentpkg.DefaultPolicy(nil), j, sig)
		out.Decision = &dec
	}
	return json.NewEncoder(stdout).Encode(out)
}
