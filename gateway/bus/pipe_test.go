package bus

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// Writes return at once while the reader is slow (up to the buffer), and
// the reader gets every byte, in order.
func TestBufferedPipeDecouplesWriterFromReader(t *testing.T) {
	client, server := net.Pipe()
	p := newBufferedPipe(client, 64<<10)
	defer p.Close()
	var want bytes.Buffer
	start := time.Now()
	for i := range 200 { // 200 × 100 B: within the buffer
		msg := bytes.Repeat([]byte{byte(i)}, 100)
		want.Write(msg)
		if n, err := p.Write(msg); n != len(msg) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("writes took %v with nobody reading: they waited for the reader", d)
	}
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("the reader got other bytes, or in another order")
	}
}

// A full buffer makes a write wait for the reader, and gives up at its write
// deadline; writes larger than the buffer arrive whole.
func TestBufferedPipeFullBufferWaits(t *testing.T) {
	client, server := net.Pipe()
	p := newBufferedPipe(client, 1024)
	defer p.Close()
	big := bytes.Repeat([]byte("x"), 5000) // more than both buffers
	_ = p.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := p.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n >= len(big) {
		t.Fatalf("nobody reading: wrote %d of %d, %v; want a deadline error", n, len(big), err)
	}
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(server)
		done <- b
	}()
	_ = p.SetWriteDeadline(time.Time{})
	rest := big[n:]
	if m, err := p.Write(rest); m != len(rest) || err != nil {
		t.Fatalf("with a reader: %d of %d, %v", m, len(rest), err)
	}
	if err := p.Close(); err != nil { // hands over what is buffered first
		t.Fatal(err)
	}
	if got := <-done; !bytes.Equal(got, big) {
		t.Fatalf("the reader got %d bytes, want %d", len(got), len(big))
	}
}

// Once closed, or once the pipe fails, writes fail and do not hang.
func TestBufferedPipeClosed(t *testing.T) {
	client, server := net.Pipe()
	p := newBufferedPipe(client, 1024)
	server.Close() // the server went away
	var err error
	for range 100 {
		if _, err = p.Write(make([]byte, 512)); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes kept succeeding after the server's end closed")
	}
	_ = p.Close()
	if _, err := p.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}
