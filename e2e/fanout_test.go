package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/metrics/metricstest"
)

// Bounds of TestFanout, for CI's 2 cores (dispatch, the cities and the
// crowd of pages are built without the race detector).
const (
	fanoutSubscribers = 2000
	fanoutHeroes      = 2000
	// Every page holds its snapshot within this.
	fanoutSnapshotBound = 60 * time.Second
	// /healthz answers within this, at the 99th percentile, while the
	// pages connect.
	fanoutHealthzBound = 500 * time.Millisecond
)

// TestFanout is the front door's crowd: 2,000 pages (e2e/crowd) connect
// at once to a dispatch holding 2,000 heroes, while heroes are created. Every
// page gets its whole snapshot (in order, nothing between its parts)
// within a bound and every hero created meanwhile, in the snapshot or in a
// delta; dispatch reads and encodes a handful of snapshots, not one per
// page; /healthz stays fast; and dispatch's own actors keep their
// deadlines, as its /metrics show: no restart of its replica actor, no
// engine deadline handled more than 250 ms late, no exchange timed out, no
// write unconfirmed, and hardly a status probe unanswered.
func TestFanout(t *testing.T) {
	c := newCluster(t)
	for _, city := range []string{"gotham", "metropolis", "capitol"} {
		c.startCity(city, quiet...)
	}
	c.startDispatch("-max-websockets", strconv.Itoa(fanoutSubscribers+8), "-max-conns", strconv.Itoa(fanoutSubscribers+64))
	a := c.api()
	await(t, 30*time.Second, "dispatch ready with three cities up", func() bool {
		cs := a.cluster()
		return cs.Ready && cs.InSync && len(cs.Cities) == 3
	})
	createHeroes(t, a, fanoutHeroes)
	metricsURL := c.url("/metrics")
	before := metricstest.Scrape(t, metricsURL)

	// The pages are a crowd process of their own (see e2e/crowd).
	crowd := exec.Command(filepath.Join(binDir, "crowd"), "-url", "ws://"+c.httpAddr+"/ws",
		"-pages", strconv.Itoa(fanoutSubscribers), "-timeout", fanoutSnapshotBound.String())
	crowd.Stderr = c.log
	stdin, err := crowd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := crowd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := crowd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		if err := crowd.Wait(); err != nil {
			t.Errorf("crowd: %v", err)
		}
	}()
	lines := bufio.NewScanner(stdout)
	next := func() string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("crowd ended: %v", lines.Err())
		}
		return lines.Text()
	}

	// While the pages connect: create a hero every 100 ms, and probe
	// /healthz every 50 ms on a warm connection.
	connected := make(chan struct{})
	downBefore := c.log.count("city status changed", "up=false")
	var bg sync.WaitGroup
	var markers []string // heroes created while the pages connect
	var healthz []time.Duration
	bg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-connected:
				return
			case <-tick.C:
			}
			var h hero
			if code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": "Marker " + strconv.Itoa(i)}, &h); code == http.StatusCreated {
				markers = append(markers, h.ID)
			}
		}
	})
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	probe := func() time.Duration {
		t0 := time.Now()
		resp, err := client.Get(c.url("/healthz"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return time.Since(t0)
	}
	probe()
	bg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-connected:
				return
			case <-tick.C:
			}
			healthz = append(healthz, probe())
		}
	})
	held := next()
	close(connected)
	bg.Wait()
	if !strings.HasPrefix(held, "held ") {
		t.Fatalf("crowd: %s", held)
	}
	slices.Sort(healthz)
	hz99 := healthz[(len(healthz)*99+99)/100-1]
	t.Logf("%d pages held a snapshot of %d+ heroes after %s ms; /healthz p99 %v, max %v over %d probes; %d heroes created meanwhile",
		fanoutSubscribers, fanoutHeroes, strings.Fields(held)[2], hz99.Round(time.Microsecond), healthz[len(healthz)-1].Round(time.Microsecond), len(healthz), len(markers))
	if hz99 > fanoutHealthzBound {
		t.Errorf("/healthz p99 %v while the pages connected, want at most %v", hz99, fanoutHealthzBound)
	}

	// One more hero after every snapshot: every page gets it, and every
	// hero created while they connected.
	var last hero
	if code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": "Marker after"}, &last); code != http.StatusCreated {
		t.Fatalf("create after the snapshots: %d", code)
	}
	if _, err := fmt.Fprintln(stdin, "expect", strings.Join(append(markers, last.ID), " ")); err != nil {
		t.Fatal(err)
	}
	if saw := next(); !strings.HasPrefix(saw, "saw ") {
		t.Fatalf("crowd: %s (of %d heroes created)", saw, len(markers)+1)
	} else {
		t.Logf("every page saw all %d heroes created %s ms after the last", len(markers)+1, strings.Fields(saw)[1])
	}

	after := metricstest.Scrape(t, metricsURL)
	diff := func(name string, kv ...string) float64 { return after.Value(name, kv...) - before.Value(name, kv...) }
	reads := diff("superhero_websocket_snapshot_reads_total")
	t.Logf("dispatch read %v snapshots for %v pages", reads, diff("superhero_websocket_snapshots_sent_total"))
	if reads < 1 || reads > 50 {
		t.Errorf("dispatch read %v snapshots for %d pages: want them shared", reads, fanoutSubscribers)
	}
	const lateness = "superhero_replication_timer_lateness_seconds"
	late := diff(lateness+"_count") - diff(lateness+"_bucket", "le", "0.25")
	t.Logf("engine deadlines handled: %v, more than 100 ms late: %v, more than 250 ms late: %v",
		diff(lateness+"_count"), diff(lateness+"_count")-diff(lateness+"_bucket", "le", "0.1"), late)
	for what, v := range map[string]float64{
		"restarts of dispatch's replica actor":      diff("superhero_supervisor_restarts_total", "node", "dispatch"),
		"engine deadlines handled over 250 ms late": late,
		"exchanges timed out":                       diff("superhero_replication_exchanges_ended_total", "outcome", "timed_out"),
		"writes not confirmed in time":              diff("superhero_replication_writes_total", "outcome", "unknown"),
	} {
		if v != 0 {
			t.Errorf("%s while the pages connected: %v", what, v)
		}
	}
	// A status probe waits 200 ms for a city's answer, which dispatch must
	// read while it writes the snapshots and the crowd parses them, all on
	// the same 2 cores: some answers come late. Late probes are bounded;
	// a city shown down meanwhile (two late probes in a row) is reported
	// as a figure, not failed: on CI's machine it happens in about half
	// the runs, for 200 ms, while dispatch's replica actor stays on time.
	const probes = "superhero_city_request_duration_seconds_count"
	sent := diff(probes, "kind", "GetDigest")
	missed := sent - diff(probes, "kind", "GetDigest", "outcome", "ok")
	t.Logf("status probes: %v, not answered in time: %v", sent, missed)
	if sent == 0 || missed > 0.10*sent {
		t.Errorf("%v of %v status probes not answered in time while the pages connected", missed, sent)
	}
	t.Logf("FIGURE cities shown down while 2,000 pages connected: %d", c.log.count("city status changed", "up=false")-downBefore)
	if diff(lateness+"_count") == 0 {
		t.Error("no engine deadline measured")
	}
}

// createHeroes creates n heroes through the API, 16 at a time.
func createHeroes(t *testing.T, a *api, n int) {
	t.Helper()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": fmt.Sprintf("Crowd %05d", i)}, nil); code != http.StatusCreated {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d creates failed", f, n)
	}
}
