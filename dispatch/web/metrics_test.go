package web

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/internal/metrics"
	"github.com/superhero-cluster/superhero/internal/metrics/metricstest"
)

// newMetricsEnv is newEnv with Config.Metrics over the env's hub.
func newMetricsEnv(t *testing.T, hcfg HubConfig) *env {
	t.Helper()
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t)
	hub := NewHub(hcfg, log)
	t.Cleanup(hub.Close)
	m, err := NewMetrics(metrics.NewRegistry("dispatch"), hub, log)
	if err != nil {
		t.Fatal(err)
	}
	fb := newFakeBackend(hub)
	srv, err := New(Config{Addr: ln.Addr().String(), Metrics: m}, fb, hub, log)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		cancel()
		<-done
		client.CloseIdleConnections()
	})
	addr := ln.Addr().String()
	return &env{t: t, srv: srv, hub: hub, backend: fb, url: "http://" + addr, addr: addr, client: client}
}

func TestMetricsCountRequestsByRoute(t *testing.T) {
	e := newMetricsEnv(t, HubConfig{})
	if r := e.doJSON(http.MethodPost, "/api/superheroes", `{"name":"Counted"}`); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	for range 2 {
		if r := e.do(http.MethodGet, "/api/superheroes/"+uuid.NewString(), nil, nil); r.status != http.StatusNotFound {
			t.Fatalf("unknown hero: %d", r.status)
		}
	}
	if r := e.do(http.MethodGet, "/no/such/page", nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("no route: %d", r.status)
	}
	if r := e.do(http.MethodGet, "/api/superheroes", nil, http.Header{"Host": {"evil.example"}}); r.status != http.StatusMisdirectedRequest {
		t.Fatalf("foreign Host: %d", r.status)
	}
	if r := e.do("BREW", "/api/superheroes", nil, nil); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("BREW: %d", r.status)
	}

	s := metricstest.Scrape(t, e.url+"/metrics")
	const requests = "superhero_http_requests_total"
	for _, c := range []struct {
		method, route, code string
		want                float64
	}{
		{"POST", "/api/superheroes", "201", 1},
		{"GET", "/api/superheroes/:id", "404", 2},
		{"GET", "unmatched", "404", 1},
		// Refused before routing: no route is known.
		{"GET", "unmatched", "421", 1},
		// An unknown method, on a route that exists.
		{"other", "/api/superheroes", "405", 1},
	} {
		if v := s.Value(requests, "node", "dispatch", "method", c.method, "route", c.route, "code", c.code); v != c.want {
			t.Errorf("%s{method=%s,route=%s,code=%s} = %v, want %v", requests, c.method, c.route, c.code, v, c.want)
		}
	}
	// Routes are patterns, never request paths (which are unbounded).
	patterns := map[string]bool{"unmatched": true}
	for _, r := range e.srv.echo.Routes() {
		patterns[r.Path] = true
	}
	for _, smp := range s {
		if r := smp.Labels["route"]; smp.Name == requests && !patterns[r] {
			t.Errorf("route label %q is not a route pattern", r)
		}
	}
	if v := s.Value("superhero_http_request_duration_seconds_count", "method", "POST", "route", "/api/superheroes"); v != 1 {
		t.Errorf("create latencies observed = %v, want 1", v)
	}
	// The scrape above was counted once answered.
	s = metricstest.Scrape(t, e.url+"/metrics")
	if v := s.Value(requests, "method", "GET", "route", "/metrics", "code", "200"); v != 1 {
		t.Errorf("scrapes counted = %v, want 1", v)
	}
}

func TestMetricsCountSubscribers(t *testing.T) {
	e := newMetricsEnv(t, HubConfig{MaxPendingFrames: 2})
	slow, err := e.hub.Subscribe(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.Subscribe(nil); err != nil {
		t.Fatal(err)
	}
	s := metricstest.Scrape(t, e.url+"/metrics")
	if v := s.Value("superhero_websocket_subscribers", "node", "dispatch"); v != 2 {
		t.Fatalf("subscribers = %v, want 2", v)
	}
	if v := s.Value("superhero_websocket_dropped_subscribers_total"); v != 0 {
		t.Fatalf("dropped = %v before any overflow", v)
	}

	// Neither reads: the third frame overflows both queues.
	for _, m := range []string{"one", "two", "three"} {
		e.hub.Publish(service.FlashEvent(m))
	}
	select {
	case <-slow.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the slow subscriber was not dropped")
	}
	s = metricstest.Scrape(t, e.url+"/metrics")
	if v := s.Value("superhero_websocket_dropped_subscribers_total"); v != 2 {
		t.Errorf("dropped = %v, want 2", v)
	}
	if v := s.Value("superhero_websocket_subscribers"); v != 0 {
		t.Errorf("subscribers = %v after both were dropped, want 0", v)
	}
}

// Without Config.Metrics there is no /metrics.
func TestNoMetricsByDefault(t *testing.T) {
	e := newEnv(t)
	if r := e.do(http.MethodGet, "/metrics", nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("GET /metrics = %d without Config.Metrics, want 404", r.status)
	}
}
