package backend_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/backend"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/metrics"
	"github.com/superhero-cluster/superhero/internal/metrics/metricstest"
	"github.com/superhero-cluster/superhero/internal/testkit"
	"github.com/superhero-cluster/superhero/replication"
)

// serveMetrics registers cs in a new registry for dispatch, serves it and
// returns its /metrics URL.
func serveMetrics(t *testing.T, cs ...prometheus.Collector) string {
	t.Helper()
	reg := metrics.NewRegistry("dispatch")
	if err := reg.Register(cs...); err != nil {
		t.Fatal(err)
	}
	ep, err := metrics.Listen("127.0.0.1:0", reg, logx.Test(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.Close)
	return "http://" + ep.Addr() + "/metrics"
}

// awaitMetric scrapes url until cond holds for the samples.
func awaitMetric(t *testing.T, url, what string, cond func(metricstest.Samples) bool) metricstest.Samples {
	t.Helper()
	var s metricstest.Samples
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		s = metricstest.Scrape(t, url)
		return cond(s)
	}, what)
	return s
}

func TestCreateRaisesDispatchPushes(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis, crdt.Capitol)
	stats := &backend.ReplicaStats{}
	url := serveMetrics(t, metrics.Replication(&stats.Replication), metrics.Restarts(backend.SupervisorName, &stats.Restarts))
	b, _, _ := newBackendWith(t, cities, setup{stats: stats})

	const pushes = "superhero_replication_sent_messages_total"
	before := metricstest.Scrape(t, url)
	if v := before.Value(pushes, "node", "dispatch", "kind", "push"); v != 0 {
		t.Fatalf("dispatch pushed %v times before any write", v)
	}
	if !before.Has("superhero_supervisor_restarts_total", "supervisor", backend.SupervisorName) {
		t.Fatalf("no restart counter for %s; have %v", backend.SupervisorName, before.Names())
	}
	if _, err := b.Create(context.Background(), "Counted"); err != nil {
		t.Fatal(err)
	}
	// Answered once a city confirmed it: by then the push to every city
	// has left and is counted.
	after := metricstest.Scrape(t, url)
	if v := after.Value(pushes, "kind", "push"); v != 3 {
		t.Errorf("pushes after one create = %v, want 3 (one per city)", v)
	}
	if v := after.Value("superhero_replication_sent_bytes_total", "kind", "push"); v <= 0 {
		t.Errorf("push bytes after one create = %v", v)
	}
	if v := after.Value("superhero_replication_writes_total", "outcome", "acked"); v != 1 {
		t.Errorf("acked writes = %v, want 1", v)
	}
	const confirm = "superhero_replication_push_confirm_seconds"
	if n, in1s := after.Value(confirm+"_count"), after.Value(confirm+"_bucket", "le", "1"); n != 1 || in1s != 1 {
		t.Errorf("push confirmations: %v, %v of them within 1 s; want 1", n, in1s)
	}
	// Dispatch caught up by reading every city: exchanges it started.
	if v := after.Value("superhero_replication_sync_rounds_total"); v < 3 {
		t.Errorf("sync rounds = %v, want at least one per city", v)
	}
}

func TestStatusMetrics(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis, crdt.Capitol)
	// No gossip: a city that differs stays so until dispatch's poll (every
	// 2 s) has read it and then another city, long after the status probe
	// (every 10 ms) has seen it differ.
	b, _, _ := newBackend(t, cities, func(rc *replication.Config) { rc.GossipInterval = -1 })
	url := serveMetrics(t, backend.StatusMetrics(b))

	awaitMetric(t, url, "every city up and in sync", func(s metricstest.Samples) bool {
		return s.Value("superhero_city_up", "node", "dispatch") == 3 && s.Value("superhero_cluster_in_sync") == 1 &&
			s.Value("superhero_dispatch_ready") == 1 && s.Value("superhero_city_lag_seconds") == 0
	})

	cities.write(t, crdt.Gotham, 2)
	s := awaitMetric(t, url, "gotham lagging", func(s metricstest.Samples) bool {
		return s.Value("superhero_city_lag_seconds", "city", "gotham") > 0
	})
	if v := s.Value("superhero_cluster_in_sync"); v != 0 {
		t.Errorf("in sync = %v while gotham differs", v)
	}
	if v := s.Value("superhero_city_lag_seconds", "city", "metropolis"); v != 0 {
		t.Errorf("metropolis lag = %v, want 0 (it holds what most cities hold)", v)
	}
	if v := s.Value("superhero_city_heroes", "city", "gotham"); v != 2 {
		t.Errorf("gotham heroes = %v, want 2", v)
	}

	cities.setDown(crdt.Capitol, true)
	awaitMetric(t, url, "capitol down", func(s metricstest.Samples) bool {
		return s.Value("superhero_city_up", "city", "capitol") == 0 && s.Value("superhero_city_up", "city", "gotham") == 1
	})
}

func TestRequestsToCitiesAreTimed(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis)
	requests := metrics.NewRequests()
	url := serveMetrics(t, requests)
	b, _, _ := newBackendWith(t, cities, setup{wrap: func(c backend.Cities) backend.Cities {
		return backend.TimedCities{Cities: c, Observe: requests.Observe}
	}})

	const count = "superhero_city_request_duration_seconds_count"
	if _, err := b.Bomb(context.Background(), crdt.Gotham); err != nil {
		t.Fatal(err)
	}
	if v := metricstest.Scrape(t, url).Value(count, "kind", "Bomb", "city", "gotham", "outcome", "ok"); v != 1 {
		t.Errorf("bombs of gotham timed = %v, want 1", v)
	}
	awaitMetric(t, url, "a status probe of metropolis", func(s metricstest.Samples) bool {
		return s.Value(count, "kind", "GetDigest", "city", "metropolis", "outcome", "ok") >= 1
	})

	cities.setDown(crdt.Metropolis, true)
	awaitMetric(t, url, "a failed probe of metropolis", func(s metricstest.Samples) bool {
		return s.Value(count, "kind", "GetDigest", "city", "metropolis", "outcome", "error") >= 1
	})
}
