package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/superhero-cluster/superhero/internal/membership"
)

// checkPortFree binds host:port and releases it at once. The check is racy
// by nature (another process can take the port right after), so Start also
// recovers the library's panic and verifies the health endpoint after
// start.
func checkPortFree(host string, port int, what string) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %s port %s: %w", ErrPortInUse, what, addr, err)
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("%w: %s port %s: close probe: %w", ErrPortInUse, what, addr, err)
	}
	return nil
}

// awaitOwnHealth challenges this node's health endpoint (Host:HealthPort)
// until it answers as member wantID with a MAC that verifies, proving the
// endpoint peers will poll is ours and speaks for us.
func awaitOwnHealth(ctx context.Context, cfg Config, wantID string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	prober, err := membership.New(membership.Config{
		HealthHost:  cfg.Host,
		Key:         membership.DeriveKey(cfg.Cookie),
		ClusterName: cfg.ClusterName,
		PollTimeout: 500 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer func() { _ = prober.Shutdown(false) }()
	addr := cfg.healthAddress()
	var last error
	for {
		m, err := prober.Probe(ctx, addr)
		if err == nil && m.ID == wantID {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("answered by another member (id %q)", m.ID)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("health endpoint %s: %w", addr, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
