package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/metrics"
	"github.com/superhero-cluster/superhero/internal/metrics/metricstest"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/replication"
)

// toMetropolis is a transport to one city that takes every message.
type toMetropolis struct{}

func (toMetropolis) Peers() []replication.Peer {
	return []replication.Peer{{Name: "metropolis", City: true}}
}
func (toMetropolis) Send(replication.Message) int { return 42 }

// push makes a city engine push one write through a driver counting into
// totals.
func push(t *testing.T, totals *wire.Totals) {
	t.Helper()
	clock := crdt.NewClock("gotham", func() int64 { return time.Now().UnixNano() })
	r := crdt.NewReplica(clock)
	cfg := replication.DefaultCityConfig("gotham")
	cfg.AntiEntropyInterval = -1
	e, err := replication.New(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	d := wire.NewDriver(e, toMetropolis{}, totals)
	defer d.Stop()
	d.Tick()
	_, delta, err := r.Create(uuid.New(), "Metric")
	if err != nil {
		t.Fatal(err)
	}
	e.LocalWrite(delta)
	d.Flush(nil, nil, func() {})
}

func TestEndpointServesTheNodesMetrics(t *testing.T) {
	reg := metrics.NewRegistry("gotham")
	var totals wire.Totals
	var restarts atomic.Uint64
	if err := reg.Register(metrics.Replication(&totals), metrics.Restarts("city-gotham-supervisor", &restarts)); err != nil {
		t.Fatal(err)
	}
	ep, err := metrics.Listen("127.0.0.1:0", reg, logx.Test(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.Close)
	url := "http://" + ep.Addr() + "/metrics"

	before := metricstest.Scrape(t, url)
	for _, name := range []string{
		"superhero_replication_sent_messages_total", "superhero_replication_sent_bytes_total",
		"superhero_replication_dropped_messages_total", "superhero_replication_sync_rounds_total",
		"superhero_replication_exchanges_ended_total", "superhero_replication_merged_entries_total",
		"superhero_replication_refused_total", "superhero_replication_tombstones_collected_total",
		"superhero_replication_writes_total", "superhero_supervisor_restarts_total",
		"superhero_replication_timer_lateness_seconds_count", "superhero_replication_timer_lateness_seconds_bucket",
		"superhero_replication_push_confirm_seconds_count", "superhero_replication_push_confirm_seconds_bucket",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !before.Has(name, "node", "gotham") {
			t.Errorf("%s with node=gotham missing; have %v", name, before.Names())
		}
	}
	for _, s := range before {
		if s.Labels["node"] != "gotham" {
			t.Fatalf("%s%v has no node label", s.Name, s.Labels)
		}
	}
	if v := before.Value("superhero_replication_sent_messages_total", "kind", "push"); v != 0 {
		t.Fatalf("pushes before any write = %v", v)
	}

	push(t, &totals)
	restarts.Add(2)
	after := metricstest.Scrape(t, url)
	if v := after.Value("superhero_replication_sent_messages_total", "kind", "push"); v != 1 {
		t.Errorf("pushes = %v, want 1", v)
	}
	if v := after.Value("superhero_replication_sent_bytes_total", "kind", "push"); v != 42 {
		t.Errorf("push bytes = %v, want 42", v)
	}
	if v := after.Value("superhero_replication_push_entries_total"); v != 1 {
		t.Errorf("push entries = %v, want 1", v)
	}
	if v := after.Value("superhero_supervisor_restarts_total", "supervisor", "city-gotham-supervisor"); v != 2 {
		t.Errorf("restarts = %v, want 2", v)
	}

	// /metrics is all it serves.
	resp, err := http.Get("http://" + ep.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / = %d, want 404", resp.StatusCode)
	}
}

func TestListenFailsOnATakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ep, err := metrics.Listen(ln.Addr().String(), metrics.NewRegistry("gotham"), logx.Test(t)); err == nil {
		ep.Close()
		t.Fatalf("listening on the taken %s succeeded", ln.Addr())
	}
}

// Two nodes in one process (as in tests) have registries of their own.
func TestRegistriesAreSeparate(t *testing.T) {
	var a, b wire.Totals
	ra, rb := metrics.NewRegistry("gotham"), metrics.NewRegistry("metropolis")
	if err := ra.Register(metrics.Replication(&a)); err != nil {
		t.Fatal(err)
	}
	if err := rb.Register(metrics.Replication(&b)); err != nil {
		t.Fatal(err)
	}
	if err := ra.Register(metrics.Replication(&b)); err == nil {
		t.Fatal("registering the replication metrics twice in one registry succeeded")
	}
}

func TestRequestsByKindCityAndOutcome(t *testing.T) {
	reg := metrics.NewRegistry("dispatch")
	req := metrics.NewRequests()
	if err := reg.Register(req); err != nil {
		t.Fatal(err)
	}
	req.Observe("GetDigest", "gotham", 2*time.Millisecond, nil)
	req.Observe("GetDigest", "gotham", 200*time.Millisecond, fmt.Errorf("probe: %w", context.DeadlineExceeded))
	req.Observe("Bomb", "metropolis", time.Millisecond, fmt.Errorf("kind unavailable"))
	srv := newServer(t, reg)
	s := metricstest.Scrape(t, srv+"/metrics")
	const name = "superhero_city_request_duration_seconds_count"
	for _, c := range []struct {
		kind, city, outcome string
		want                float64
	}{
		{"GetDigest", "gotham", "ok", 1},
		{"GetDigest", "gotham", "timeout", 1},
		{"Bomb", "metropolis", "error", 1},
		{"Bomb", "gotham", "ok", 0},
	} {
		if v := s.Value(name, "kind", c.kind, "city", c.city, "outcome", c.outcome); v != c.want {
			t.Errorf("%s{kind=%s,city=%s,outcome=%s} = %v, want %v", name, c.kind, c.city, c.outcome, v, c.want)
		}
	}
	// 2 ms falls in the 2.5 ms bucket, not in the 1 ms one.
	if v := s.Value("superhero_city_request_duration_seconds_bucket", "kind", "GetDigest", "outcome", "ok", "le", "0.001"); v != 0 {
		t.Errorf("2 ms counted at or below 1 ms")
	}
	if v := s.Value("superhero_city_request_duration_seconds_bucket", "kind", "GetDigest", "outcome", "ok", "le", "0.0025"); v != 1 {
		t.Errorf("2 ms not counted at or below 2.5 ms")
	}
}

func TestParseReadsLabelsWithEscapes(t *testing.T) {
	s, err := metricstest.Parse(strings.Join([]string{
		"# HELP x A help.",
		`x{a="1",b="say \"hi\"\n"} 3`,
		"y 2.5",
	}, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v := s.Value("x", "b", "say \"hi\"\n"); v != 3 {
		t.Errorf("x = %v, want 3", v)
	}
	if v := s.Value("y"); v != 2.5 {
		t.Errorf("y = %v, want 2.5", v)
	}
}

// newServer serves reg's handler on a loopback port and returns its URL.
func newServer(t *testing.T, reg *metrics.Registry) string {
	t.Helper()
	ep, err := metrics.Listen("127.0.0.1:0", reg, logx.Test(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.Close)
	return "http://" + ep.Addr()
}

// The profiles endpoint serves pprof and nothing else; a heap profile is
// a real profile, not an empty answer.
func TestProfilesEndpoint(t *testing.T) {
	ep, err := metrics.ListenProfiles("127.0.0.1:0", logx.Test(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	get := func(path string) (int, []byte) {
		resp, err := http.Get("http://" + ep.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	if code, b := get("/debug/pprof/heap"); code != http.StatusOK || len(b) == 0 {
		t.Fatalf("GET /debug/pprof/heap: %d, %d bytes", code, len(b))
	}
	if code, _ := get("/metrics"); code != http.StatusNotFound {
		t.Fatalf("GET /metrics on the profiles endpoint: %d, want 404", code)
	}
}
