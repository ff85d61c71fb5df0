package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestAgentBeforeJoining: until its member has joined, the agent answers
// every read with an error the runner sees (so a nemesis waiting for a
// node to answer keeps waiting), and a request without ?city= is a bad
// request.
func TestAgentBeforeJoining(t *testing.T) {
	a := &agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(a.routes())
	defer srv.Close()
	c := newAgentClient(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, network, srv.Listener.Addr().String())
	})
	defer c.close()
	ctx := context.Background()
	if _, err := c.kinds(ctx); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Errorf("kinds before joining: %v", err)
	}
	if c.hasKind(ctx, "dispatch") {
		t.Error("a kind seen before joining")
	}
	if _, err := c.state(ctx, "gotham"); err == nil || !strings.Contains(err.Error(), "502") {
		t.Errorf("state before joining: %v", err)
	}
	if err := c.bomb(ctx, "gotham"); err == nil {
		t.Error("a bomb before joining went through")
	}
	if err := c.call(ctx, "GET", "/state", time.Second, nil); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("a state read without a city: %v", err)
	}
}
