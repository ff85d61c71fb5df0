package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// maxRefusing bounds the connections being refused at once (each is
// answered 503 by a goroutine of its own for up to refuseTimeout); beyond
// it, a connection over the cap is closed without an answer.
const (
	maxRefusing   = 32
	refuseTimeout = time.Second
)

// limitListener accepts at most max connections at a time. A connection
// over the cap is answered 503 (a JSON error, Connection: close) and
// closed, without reaching the HTTP server. A connection's slot is given
// back when it closes, including after a WebSocket upgrade.
type limitListener struct {
	net.Listener
	slots    chan struct{}
	refusing chan struct{}
	body     []byte // the 503 response
	onRefuse func(remote string, answered bool)
	wg       sync.WaitGroup // refusing goroutines
}

func newLimitListener(ln net.Listener, max int, onRefuse func(remote string, answered bool)) *limitListener {
	msg := fmt.Sprintf(`{"error":"too many connections (at most %d): try again later"}`, max)
	resp := "HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/json\r\n" +
		"Retry-After: 1\r\n" +
		"Connection: close\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(msg)) + msg
	return &limitListener{
		Listener: ln,
		slots:    make(chan struct{}, max),
		refusing: make(chan struct{}, maxRefusing),
		body:     []byte(resp),
		onRefuse: onRefuse,
	}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
		}
		select {
		case l.refusing <- struct{}{}:
			l.onRefuse(c.RemoteAddr().String(), true)
			l.wg.Go(func() {
				defer func() { <-l.refusing }()
				l.refuse(c)
			})
		default:
			l.onRefuse(c.RemoteAddr().String(), false)
			_ = c.Close()
		}
	}
}

// refuse waits for the end of the request's headers (a client such as
// Go's takes an answer that comes before its request for a fault), answers
// 503, and reads what the client still sends for a while before closing:
// closing with unread data would reset the connection, and the client
// might not see the answer. All within refuseTimeout.
func (l *limitListener) refuse(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	if !readHeaders(c, 16<<10) {
		return
	}
	if _, err := c.Write(l.body); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// readHeaders reads from r until the blank line that ends a request's
// headers, at most limit bytes; it reports whether it got there.
func readHeaders(r io.Reader, limit int) bool {
	buf := make([]byte, 0, 1024)
	chunk := make([]byte, 1024)
	for len(buf) < limit {
		n, err := r.Read(chunk)
		// The end may straddle two reads: look from 3 bytes back.
		from := max(0, len(buf)-3)
		buf = append(buf, chunk[:n]...)
		if bytes.Contains(buf[from:], []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// Close stops accepting and waits for the refusals in progress.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.wg.Wait()
	return err
}

// inUse returns the number of connections holding a slot.
func (l *limitListener) inUse() int { return len(l.slots) }

// limitConn gives its slot back once, when closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite lets the HTTP server half-close the connection after an
// error answer, as it does with a bare TCP connection, so that the client
// reads the answer rather than a reset.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// errTooManyWebSockets answers an upgrade beyond Config.MaxWebSockets.
var errTooManyWebSockets = errors.New("too many WebSocket connections: try again later")

// reserveWebSocket takes one of the Config.MaxWebSockets places; the
// caller gives it back with s.active.Add(-1).
func (s *Server) reserveWebSocket() bool {
	if s.active.Add(1) > int64(s.cfg.MaxWebSockets) {
		s.active.Add(-1)
		return false
	}
	return true
}
