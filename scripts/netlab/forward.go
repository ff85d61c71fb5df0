package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// forwarder relays TCP connections accepted on a local address to
// dispatch's page inside the lab, so a browser on this machine can show it.
// The root namespace gets no route or interface: only this process listens.
type forwarder struct {
	ln    net.Listener
	log   *slog.Logger
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (s *session) startForward(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	f := &forwarder{ln: ln, log: s.log.With("forward", ln.Addr().String()), conns: map[net.Conn]struct{}{}}
	s.forwarder, s.forwardAddr = f, ln.Addr().String()
	target := s.httpAddr()
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() {
				f.relay(c, func(ctx context.Context) (net.Conn, error) { return s.dialDispatch(ctx, "tcp", target) })
			})
		}
	})
	return nil
}

func (f *forwarder) track(c net.Conn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !add {
		delete(f.conns, c)
		return true
	}
	if f.conns == nil { // closed
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) relay(c net.Conn, dial func(context.Context) (net.Conn, error)) {
	defer c.Close()
	if !f.track(c, true) {
		return
	}
	defer f.track(c, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	up, err := dial(ctx)
	cancel()
	if err != nil {
		f.log.Warn("relay: dispatch unreachable", "err", err)
		return
	}
	defer up.Close()
	if !f.track(up, true) {
		return
	}
	defer f.track(up, false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, c)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(c, up)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
}

// close stops accepting, closes every relayed connection and waits for the
// relays to end.
func (f *forwarder) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.wg.Wait()
}
