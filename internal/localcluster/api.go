package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// API is a JSON client of dispatch's HTTP API at one address, with the
// keep-alive pool every load of the benchmark and the soak uses. The
// benchmark's HTTP floor measures a bare server through the same client, so
// the two rates compare like with like. Safe for concurrent use.
type API struct {
	addr   string
	client *http.Client
}

// NewAPI returns a client of the API at addr (host:port).
func NewAPI(addr string) *API {
	return &API{addr: addr, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
	}}}
}

// Close closes the idle connections.
func (a *API) Close() { a.client.CloseIdleConnections() }

// Call sends a JSON request and decodes a 2xx answer into out (if not nil).
// It returns the status code.
func (a *API) Call(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+a.addr+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Create creates a hero.
func (a *API) Create(ctx context.Context, name string) (APIHero, error) {
	var h APIHero
	_, err := a.Call(ctx, http.MethodPost, "/api/superheroes", map[string]string{"name": name}, &h)
	if err == nil && h.ID == "" {
		err = errors.New("create: answer without an id")
	}
	return h, err
}
