package main

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/metrics/metricstest"
	"github.com/superhero-cluster/superhero/internal/testkit"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/locations/cityactor"
	"github.com/superhero-cluster/superhero/messages"
)

// TestCityMetrics runs a city with the metrics main serves: a merge shows
// as merged entries, a bomb as a restart of the city's supervisor.
func TestCityMetrics(t *testing.T) {
	stats := &cityactor.Stats{}
	ep, err := serveMetrics("127.0.0.1:0", "gotham", stats, logx.Test(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.Close)
	url := "http://" + ep.Addr() + "/metrics"

	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	c, err := cityactor.Spawn(system, cityactor.Config{
		City:   crdt.Gotham,
		Clock:  crdt.NewClock("gotham", func() int64 { return time.Now().UnixNano() }),
		Rules:  city.Config{PatrolInterval: time.Hour, FightInterval: time.Hour},
		Logger: logx.Test(t),
		Stats:  stats,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)

	s := metricstest.Scrape(t, url)
	const restarts = "superhero_supervisor_restarts_total"
	if !s.Has(restarts, "node", "gotham", "supervisor", "city-gotham-supervisor") {
		t.Fatalf("%s for city-gotham-supervisor missing; have %v", restarts, s.Names())
	}
	if v := s.Value(restarts); v != 0 {
		t.Fatalf("restarts before any bomb = %v", v)
	}

	r := crdt.NewReplica(crdt.NewClock(messages.DispatchName, func() int64 { return time.Now().UnixNano() }))
	_, d, err := r.Create(uuid.New(), "Counted")
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := system.Root.RequestFuture(c.State(), &messages.MergeDelta{Delta: b, From: messages.DispatchName}, 5*time.Second).Result(); err != nil {
		t.Fatal(err)
	}
	if v := metricstest.Scrape(t, url).Value("superhero_replication_merged_entries_total"); v != 1 {
		t.Fatalf("merged entries = %v after merging one hero, want 1", v)
	}

	if _, err := system.Root.RequestFuture(c.State(), &messages.Bomb{}, 5*time.Second).Result(); err != nil {
		t.Fatal(err)
	}
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		return metricstest.Scrape(t, url).Value(restarts, "supervisor", "city-gotham-supervisor") == 1
	}, "the bomb's restart not in %s", restarts)
	// The merged entry is still counted: the restarted actor's new engine
	// adds to the totals instead of starting over.
	if v := metricstest.Scrape(t, url).Value("superhero_replication_merged_entries_total"); v != 1 {
		t.Fatalf("merged entries = %v after the restart, want 1", v)
	}
}

// TestMetricsPortTaken: a city asked to serve metrics on a taken port says
// so and does not start.
func TestMetricsPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = run(ctx, []string{"-city", "gotham", "-metrics", ln.Addr().String()}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "-metrics "+ln.Addr().String()) {
		t.Fatalf("run = %v, want an error naming -metrics %s", err, ln.Addr())
	}
}

// TestMaxProcs: a negative -maxprocs is refused before anything starts,
// and run gives the process its GOMAXPROCS back when it returns.
func TestMaxProcs(t *testing.T) {
	// Hold 2 for the test, so a run that set 1 and forgot to restore it
	// fails here even on a 1-core machine.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	before := runtime.GOMAXPROCS(0)
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-city", "gotham", "-maxprocs", "-1"}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "-maxprocs -1") {
		t.Fatalf("run = %v, want an error naming -maxprocs -1", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Fails at the taken metrics port, after -maxprocs took effect.
	if err := run(context.Background(), []string{"-city", "gotham", "-maxprocs", "1", "-metrics", ln.Addr().String()}, &stderr); err == nil {
		t.Fatal("run started with its metrics port taken")
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS after run = %d, want %d as before", got, before)
	}
}
