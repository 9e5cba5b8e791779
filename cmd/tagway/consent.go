package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/tagway/tagway/consent"
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
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: tagway consent decode [--kind tcf|gpp|usp] STRING\n\nPrints the decoded string as one JSON object; a malformed string exits 1 with what is wrong.\n\n")
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
	d, err := consent.Decode(*kind, fs.Arg(0))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(d)
}
