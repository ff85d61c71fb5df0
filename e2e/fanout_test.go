package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/superhero-cluster/superhero/internal/metrics/metricstest"
)

// Bounds of TestFanout, for CI's 2 cores with this process under -race
// (dispatch and the cities are built without it).
const (
	fanoutSubscribers = 2000
	fanoutHeroes      = 2000
	// Every page holds its snapshot within this.
	fanoutSnapshotBound = 30 * time.Second
	// /healthz answers within this, at the 99th percentile, while the
	// pages connect.
	fanoutHealthzBound = 250 * time.Millisecond
)

// TestFanout is the front door's crowd: 2,000 pages connect at once to a
// dispatch holding thousands of heroes, while heroes are created. Every
// page gets its whole snapshot (in order, nothing between its parts)
// within a bound and every hero created meanwhile, in the snapshot or in a
// delta; dispatch reads and encodes a handful of snapshots, not one per
// page; /healthz stays fast; and dispatch's own actors keep their
// deadlines, as its /metrics show: no restart of its replica actor, no
// engine deadline handled more than 250 ms late, no exchange timed out, no
// write unconfirmed, no status probe unanswered.
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

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		markersMu sync.Mutex
		markers   []string // heroes created while the pages connect
	)
	pages := make([]*crowdPage, fanoutSubscribers)
	errs := make(chan error, fanoutSubscribers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range pages {
		pages[i] = &crowdPage{snapshot: make(chan struct{})}
		wg.Go(func() {
			if err := pages[i].run(ctx, c.httpAddr); err != nil {
				errs <- err
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
	}()

	// While they connect: create a hero every 100 ms, and probe /healthz
	// every 50 ms.
	connected := make(chan struct{})
	var bg sync.WaitGroup
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
				markersMu.Lock()
				markers = append(markers, h.ID)
				markersMu.Unlock()
			}
		}
	})
	bg.Go(func() {
		client := &http.Client{Timeout: 5 * time.Second}
		defer client.CloseIdleConnections()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-connected:
				return
			case <-tick.C:
			}
			t0 := time.Now()
			resp, err := client.Get(c.url("/healthz"))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			healthz = append(healthz, time.Since(t0))
		}
	})

	deadline := time.After(fanoutSnapshotBound)
	var slowest time.Duration
	for i, p := range pages {
		select {
		case <-p.snapshot:
		case err := <-errs:
			close(connected)
			bg.Wait()
			t.Fatalf("page failed after %d of %d held their snapshot: %v", i, len(pages), err)
		case <-deadline:
			close(connected)
			bg.Wait()
			t.Fatalf("%d of %d pages held their snapshot after %v", i, len(pages), fanoutSnapshotBound)
		}
		slowest = max(slowest, p.snapshotTook(start))
	}
	close(connected)
	bg.Wait()
	slices.Sort(healthz)
	hz99 := healthz[(len(healthz)*99+99)/100-1]
	t.Logf("%d pages held a snapshot of %d+ heroes after %v; /healthz p99 %v, max %v over %d probes; %d heroes created meanwhile",
		len(pages), fanoutHeroes, slowest.Round(time.Millisecond), hz99.Round(time.Microsecond), healthz[len(healthz)-1].Round(time.Microsecond), len(healthz), len(markers))
	if hz99 > fanoutHealthzBound {
		t.Errorf("/healthz p99 %v while the pages connected, want at most %v", hz99, fanoutHealthzBound)
	}

	// One more hero after every snapshot: every page gets it, and every
	// hero created while they connected.
	var last hero
	if code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": "Marker after"}, &last); code != http.StatusCreated {
		t.Fatalf("create after the snapshots: %d", code)
	}
	want := append(slices.Clone(markers), last.ID)
	await(t, 20*time.Second, "every page seeing every hero created", func() bool {
		select {
		case err := <-errs:
			t.Fatalf("page failed: %v", err)
		default:
		}
		for _, p := range pages {
			if !p.saw(want) {
				return false
			}
		}
		return true
	})

	after := metricstest.Scrape(t, metricsURL)
	diff := func(name string, kv ...string) float64 { return after.Value(name, kv...) - before.Value(name, kv...) }
	reads := diff("superhero_websocket_snapshot_reads_total")
	t.Logf("dispatch read %v snapshots for %v pages", reads, diff("superhero_websocket_snapshots_sent_total"))
	if reads < 1 || reads > 50 {
		t.Errorf("dispatch read %v snapshots for %d pages: want them shared", reads, len(pages))
	}
	const lateness = "superhero_replication_timer_lateness_seconds"
	late := diff(lateness+"_count") - diff(lateness+"_bucket", "le", "0.25")
	t.Logf("engine deadlines handled: %v, more than 100 ms late: %v, more than 250 ms late: %v",
		diff(lateness+"_count"), diff(lateness+"_count")-diff(lateness+"_bucket", "le", "0.1"), late)
	const probes = "superhero_city_request_duration_seconds_count"
	for what, v := range map[string]float64{
		"restarts of dispatch's replica actor":      diff("superhero_supervisor_restarts_total", "node", "dispatch"),
		"engine deadlines handled over 250 ms late": late,
		"exchanges timed out":                       diff("superhero_replication_exchanges_ended_total", "outcome", "timed_out"),
		"writes not confirmed in time":              diff("superhero_replication_writes_total", "outcome", "unknown"),
		"status probes not answered":                diff(probes, "kind", "GetDigest") - diff(probes, "kind", "GetDigest", "outcome", "ok"),
	} {
		if v != 0 {
			t.Errorf("%s while the pages connected: %v", what, v)
		}
	}
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

// crowdPage is one page of the crowd: it reads every frame, checks the
// snapshot's framing, and remembers the ids of the heroes named "Marker
// ..." it saw, in the snapshot or a delta; it parses no hero.
type crowdPage struct {
	snapshot chan struct{} // closed when it holds its whole snapshot

	mu      sync.Mutex
	at      time.Time
	seen    map[string]bool // marker ids
	started bool
}

func (p *crowdPage) run(ctx context.Context, addr string) error {
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(16 << 20)
	parts, next := -1, 0
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		switch {
		case parts < 0:
			if !bytes.HasPrefix(b, []byte(`{"type":"snapshot",`)) {
				return fmt.Errorf("first frame %.80q, want the snapshot frame", b)
			}
			i := bytes.Index(b, []byte(`"parts":`))
			if i < 0 {
				return fmt.Errorf("snapshot frame without parts: %.200q", b)
			}
			j := i + len(`"parts":`)
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if parts, err = strconv.Atoi(string(b[i+len(`"parts":`) : j])); err != nil {
				return fmt.Errorf("snapshot frame: %w", err)
			}
			next = 1
		case next <= parts:
			head := `{"type":"snapshot_part","part":` + strconv.Itoa(next) + `,`
			if !bytes.HasPrefix(b, []byte(head)) {
				return fmt.Errorf("frame %.80q, want snapshot part %d of %d", b, next, parts)
			}
			next++
			p.keep(b)
		case bytes.HasPrefix(b, []byte(`{"type":"delta"`)):
			p.keep(b)
		case bytes.HasPrefix(b, []byte(`{"type":"snapshot`)):
			return errors.New("a second snapshot")
		}
		if parts >= 0 && next > parts {
			p.held()
		}
	}
}

// markerName is how a marker's entry goes on the wire, right after its id.
var markerName = []byte(`","name":"Marker `)

// keep notes the markers in a frame: the id is the 36 bytes before the
// name.
func (p *crowdPage) keep(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	for off := 0; ; {
		i := bytes.Index(b[off:], markerName)
		if i < 0 {
			return
		}
		if at := off + i; at >= 36 {
			p.seen[string(b[at-36:at])] = true
		}
		off += i + len(markerName)
	}
}

func (p *crowdPage) held() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.started, p.at = true, time.Now()
		close(p.snapshot)
	}
}

func (p *crowdPage) snapshotTook(start time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at.Sub(start)
}

// saw reports whether every id has been in a frame with heroes.
func (p *crowdPage) saw(ids []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if !p.seen[id] {
			return false
		}
	}
	return true
}
