package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagway/tagway/gateway/bus"
)

// tail prints messages of a stream as JSON lines {"seq","subject","data"}:
// the last N (default 10) and, with --follow, new ones as they arrive. It is
// a plain NATS client, so it runs beside a serving gateway.
func tail(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("nats", "", "NATS URL (env TAGWAY_NATS; default nats://127.0.0.1:4222, the embedded server)")
	stream := fs.String("stream", bus.EventsStream, "stream to read")
	subject := fs.String("subject", bus.EventsSubjects, "subject filter, e.g. tw.events.demo.>")
	last := fs.Int("last", 10, "start with the last N messages of the stream (0: only new ones)")
	follow := fs.Bool("follow", false, "keep printing new messages until interrupted")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	if *url == "" {
		*url = getenv("TAGWAY_NATS")
	}
	if *url == "" {
		*url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(*url, nats.Name("tagway-tail"), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("tail: connecting to %s: %w (is `tagway serve` running?)", *url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, *stream)
	if err != nil {
		return fmt.Errorf("tail: stream %s: %w", *stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	lastSeq := info.State.LastSeq
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{*subject}, DeliverPolicy: jetstream.DeliverNewPolicy}
	if *last > 0 {
		start := uint64(1)
		if lastSeq > uint64(*last) {
			start = lastSeq - uint64(*last) + 1
		}
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	if !*follow && (*last == 0 || lastSeq == 0) {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, cc)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for {
		wait := time.Second
		if *follow {
			wait = 30 * time.Second
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(wait))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				if *follow {
					continue
				}
				return nil // filter matched nothing more
			}
			return err
		}
		md, _ := msg.Metadata()
		var seq uint64
		if md != nil {
			seq = md.Sequence.Stream
		}
		data := json.RawMessage(msg.Data())
		if !json.Valid(data) {
			b, _ := json.Marshal(string(msg.Data()))
			data = b
		}
		if err := enc.Encode(struct {
			Seq     uint64          `json:"seq"`
			Subject string          `json:"subject"`
			Data    json.RawMessage `json:"data"`
		}{seq, msg.Subject(), data}); err != nil {
			return err
		}
		if !*follow && seq >= lastSeq {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}
