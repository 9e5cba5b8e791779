package bus

import (
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// pipeBuffer bounds the bytes a connection to the embedded server holds
// written but not yet read by the server (twice this at most: one buffer
// filling while the other is handed over).
const pipeBuffer = 1 << 20

// inProcess dials the embedded server in process, with a write buffer in
// front of each connection (bufferedPipe).
type inProcess struct{ ns *server.Server }

func (p inProcess) InProcessConn() (net.Conn, error) {
	c, err := p.ns.InProcessConn()
	if err != nil {
		return nil, err
	}
	return newBufferedPipe(c, pipeBuffer), nil
}

// bufferedPipe is the client's end of an in-process connection with a
// write buffer in front of it. The connection is a net.Pipe, which has none:
// a write returns only once the server's read loop has read it all, and
// nats.go writes holding the connection's lock, so every publisher waited on
// the server's reading (an execution trace of a load run's open-loop stall
// had requests waiting 28 s of goroutine time in 4.5 s on that lock, the most
// of any wait). Here a write is a copy into the buffer; a goroutine of its
// own hands the bytes to the pipe, in order. A full buffer makes a write wait
// (until its write deadline, as on a socket). Reads go straight to the pipe.
type bufferedPipe struct {
	net.Conn // the pipe: reads, addresses, read deadlines

	mu       sync.Mutex
	buf      []byte // written, not yet handed to the pipe
	spare    []byte // the buffer the pump last handed over, for reuse
	sending  bool   // the pump is handing a buffer over
	max      int
	err      error     // sticky: the pipe's write error, or net.ErrClosed
	deadline time.Time // for writes

	more   chan struct{} // (1) bytes are waiting for the pump
	room   chan struct{} // (1) the pump handed a buffer over
	closed chan struct{}
	once   sync.Once
}

func newBufferedPipe(c net.Conn, max int) *bufferedPipe {
	p := &bufferedPipe{Conn: c, max: max, more: make(chan struct{}, 1), room: make(chan struct{}, 1), closed: make(chan struct{})}
	go p.pump()
	return p
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Write copies b into the buffer, waiting for room while it is full.
func (p *bufferedPipe) Write(b []byte) (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	n := 0
	for {
		p.mu.Lock()
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return n, err
		}
		if k := min(p.max-len(p.buf), len(b)-n); k > 0 {
			p.buf = append(p.buf, b[n:n+k]...)
			n += k
		}
		deadline := p.deadline
		p.mu.Unlock()
		signal(p.more)
		if n == len(b) {
			return n, nil
		}
		var expired <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return n, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			expired = timer.C
		}
		select {
		case <-p.room:
		case <-expired:
			return n, os.ErrDeadlineExceeded
		case <-p.closed:
		}
	}
}

// pump hands the buffered bytes to the pipe until the connection closes or
// a write to the pipe fails.
func (p *bufferedPipe) pump() {
	for {
		select {
		case <-p.more:
		case <-p.closed:
			return
		}
		p.mu.Lock()
		out := p.buf
		p.buf, p.sending = p.spare[:0], len(out) > 0
		p.mu.Unlock()
		if len(out) > 0 {
			if _, err := p.Conn.Write(out); err != nil {
				p.fail(err)
				return
			}
		}
		p.mu.Lock()
		p.spare, p.sending = out, false
		p.mu.Unlock()
		signal(p.room)
	}
}

func (p *bufferedPipe) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.once.Do(func() { close(p.closed) })
}

// Close hands over what is buffered (waiting up to a second for the server
// to read it), then closes the pipe.
func (p *bufferedPipe) Close() error {
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		p.mu.Lock()
		idle := (len(p.buf) == 0 && !p.sending) || p.err != nil
		p.mu.Unlock()
		if idle {
			break
		}
		select {
		case <-p.room:
		case <-p.closed:
		case <-time.After(time.Millisecond):
		}
	}
	p.fail(net.ErrClosed)
	return p.Conn.Close()
}

// SetWriteDeadline bounds writes waiting for room in the buffer.
func (p *bufferedPipe) SetWriteDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	p.mu.Unlock()
	return nil
}

// SetDeadline sets the read deadline on the pipe and the write deadline here.
func (p *bufferedPipe) SetDeadline(t time.Time) error {
	_ = p.SetWriteDeadline(t)
	return p.Conn.SetReadDeadline(t)
}
