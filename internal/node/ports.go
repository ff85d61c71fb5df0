package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// checkPortFree binds host:port and releases it at once. host "" means all
// interfaces (the health server binds 0.0.0.0). The check is racy by nature
// (another process can take the port right after), so Start also recovers
// the library's panic and verifies the health endpoint after start.
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

// healthNode is the part of the automanaged /_health answer Start checks.
type healthNode struct {
	ID          string `json:"id"`
	ClusterName string `json:"cluster_name"`
}

// awaitOwnHealth polls http://addr/_health until it answers with this
// member's id, proving the health server that peers will poll is ours.
func awaitOwnHealth(ctx context.Context, addr, wantID string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	client := &http.Client{Timeout: 500 * time.Millisecond}
	url := "http://" + addr + "/_health"
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			var hn healthNode
			err = json.NewDecoder(resp.Body).Decode(&hn)
			_ = resp.Body.Close()
			if err == nil && hn.ID == wantID {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("answered by another member (id %q)", hn.ID)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("health endpoint %s: %w", url, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
