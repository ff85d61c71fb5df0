package e2e

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/metrics/metricstest"
)

// TestMetrics scrapes dispatch's /metrics and a city's -metrics endpoint
// of real processes: a create shows as dispatch's pushes and the city's
// merges, a bomb as the city's restart, dispatch's timed Bomb request and
// the city's new incarnation, and the city's counters carry on across its
// restart.
func TestMetrics(t *testing.T) {
	port, err := layout.FreeRun(1)
	if err != nil {
		t.Fatal(err)
	}
	gotham := "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"
	c := newCluster(t)
	c.startCity("gotham", append(quiet, "-metrics", "127.0.0.1:"+strconv.Itoa(port))...)
	c.startCity("metropolis", quiet...)
	c.startDispatch()
	a := c.api()
	dispatch := c.url("/metrics")

	awaitScrape := func(url, what string, cond func(metricstest.Samples) bool) metricstest.Samples {
		t.Helper()
		var s metricstest.Samples
		await(t, 30*time.Second, what, func() bool {
			var err error
			s, err = metricstest.TryScrape(url)
			return err == nil && cond(s)
		})
		return s
	}
	before := awaitScrape(dispatch, "dispatch ready with both cities up", func(s metricstest.Samples) bool {
		return s.Value("superhero_dispatch_ready", "node", "dispatch") == 1 &&
			s.Value("superhero_city_up", "city", "gotham") == 1 && s.Value("superhero_city_up", "city", "metropolis") == 1
	})
	if v := before.Value("superhero_city_request_duration_seconds_count", "kind", "GetDigest", "city", "gotham", "outcome", "ok"); v == 0 {
		t.Errorf("no status probe of gotham timed")
	}
	cityBefore := metricstest.Scrape(t, gotham)
	if v := cityBefore.Value("superhero_supervisor_restarts_total", "node", "gotham", "supervisor", "city-gotham-supervisor"); v != 0 {
		t.Fatalf("gotham restarts = %v before any bomb", v)
	}

	var h hero
	if code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": "Metered"}, &h); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	after := metricstest.Scrape(t, dispatch)
	const pushes = "superhero_replication_sent_messages_total"
	if got, was := after.Value(pushes, "kind", "push"), before.Value(pushes, "kind", "push"); got < was+2 {
		t.Errorf("dispatch pushes %v -> %v after a create, want one more per city", was, got)
	}
	if v := after.Value("superhero_http_requests_total", "method", "POST", "route", "/api/superheroes", "code", "201"); v != 1 {
		t.Errorf("creates counted = %v, want 1", v)
	}
	merged := awaitScrape(gotham, "gotham merging the create", func(s metricstest.Samples) bool {
		return s.Value("superhero_replication_merged_entries_total") >= 1
	}).Value("superhero_replication_merged_entries_total")

	if code, _ := a.do("POST", "/api/bomb", map[string]string{"city": "gotham"}, nil); code != http.StatusAccepted {
		t.Fatalf("bomb: %d", code)
	}
	// The restarted city is refilled by metropolis: more merges, counted
	// on from before the restart.
	awaitScrape(gotham, "gotham's restart and refill", func(s metricstest.Samples) bool {
		return s.Value("superhero_supervisor_restarts_total", "supervisor", "city-gotham-supervisor") == 1 &&
			s.Value("superhero_replication_merged_entries_total") > merged
	})
	s := awaitScrape(dispatch, "dispatch seeing gotham's new incarnation", func(s metricstest.Samples) bool {
		return s.Value("superhero_city_incarnation", "city", "gotham") == 2
	})
	if v := s.Value("superhero_city_request_duration_seconds_count", "kind", "Bomb", "city", "gotham", "outcome", "ok"); v != 1 {
		t.Errorf("bombs of gotham timed = %v, want 1", v)
	}
	if v := s.Value("superhero_supervisor_restarts_total", "node", "dispatch"); v != 0 {
		t.Errorf("dispatch's replica restarted %v times", v)
	}
}
