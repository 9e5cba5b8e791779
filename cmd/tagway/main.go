// Command tagway is the Tagway gateway: one binary that serves the tag
// endpoints, ingests browser and server events, and hands them to NATS
// JetStream (embedded by default). See `tagway help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil && !errors.Is(err, errHelp) {
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "tagway:", err)
		os.Exit(1)
	}
}

var (
	errUsage = errors.New("usage")      // bad arguments: usage printed, exit 2
	errHelp  = errors.New("help shown") // --help: usage printed, exit 0
)

const usage = `Tagway — consent-aware first-party event gateway.

Usage:
  tagway serve [flags]     run the gateway (embedded NATS and Badger by default)
  tagway tail [flags]      print events from the TW_EVENTS stream
  tagway consent decode    decode a TCF, GPP or US Privacy string to JSON
  tagway audit verify|query|export   the consent audit log (via the admin API)
  tagway user show|erase KEY         access and erasure requests (via the admin API)
  tagway segments list|explain|export   segments: sizes, why a profile is in or out, audience files
  tagway forward list|dead|replay       destinations: dead letters, and sending them again
  tagway version           print the version
  tagway help [command]    show help

Run "tagway serve --help" for the flags, environment variables and config keys.
`

// run is the whole program; only main exits the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr, getenv)
	case "tail":
		return tail(ctx, args[1:], stdout, stderr, getenv)
	case "consent":
		return consentCmd(ctx, args[1:], stdout, stderr, getenv)
	case "audit":
		return auditCmd(ctx, args[1:], stdout, stderr, getenv)
	case "user":
		return userCmd(ctx, args[1:], stdout, stderr, getenv)
	case "segments":
		return segmentsCmd(ctx, args[1:], stdout, stderr, getenv)
	case "forward":
		return forwardCmd(ctx, args[1:], stdout, stderr, getenv)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "tagway %s\n", version)
		return nil
	case "help", "-h", "--help":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr, getenv)
		}
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "tagway: unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}
