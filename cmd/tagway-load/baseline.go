package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/tagway/tagway/gateway/bus"
)

// baseline204 is a bare fasthttp handler that reads the body and answers
// 204: what the edge alone costs.
func baseline204() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		_ = ctx.PostBody()
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	}, MaxRequestBodySize: 4 << 20}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Shutdown() }, nil
}

// baselinePipeline is a bare durable pipeline: parse the batch with the fast
// decoder, publish every event to JetStream asynchronously, answer after the
// last PubAck. What Tagway is measured against: its own work on top.
func baselinePipeline(dataDir string) (url string, stop func(), err error) {
	b, err := bus.Open(context.Background(), bus.Config{Listen: "off"}, dataDir, nil)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close()
		return "", nil, err
	}
	var seq atomic.Int64
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		var batch struct {
			Data []json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(ctx.PostBody(), &batch); err != nil {
			ctx.SetStatusCode(400)
			return
		}
		msgs := make([]bus.Msg, len(batch.Data))
		for i, raw := range batch.Data {
			msgs[i] = bus.Msg{Subject: "tw.events.bench.E", MsgID: strconv.FormatInt(seq.Add(1), 10), Data: append([]byte(nil), raw...)}
		}
		acks := make([]bus.Ack, len(msgs))
		b.PublishBatch(context.Background(), msgs, acks)
		for _, a := range acks {
			if a.Err != nil {
				ctx.SetStatusCode(503)
				return
			}
		}
		ctx.SetStatusCode(200)
		ctx.SetBodyString(`{"accepted":` + strconv.Itoa(len(msgs)) + `}`)
	}, MaxRequestBodySize: 4 << 20}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Shutdown(); _ = b.Close() }, nil
}

var _ = fmt.Sprint
