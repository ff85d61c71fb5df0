package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/superhero-cluster/superhero/internal/localcluster"
	"github.com/superhero-cluster/superhero/internal/metrics/metricstest"
)

// fanout: many pages on a large replica. S WebSocket subscribers connect
// at once to a dispatch holding N heroes: the time until every one holds
// its whole snapshot; then how long a city's write (the fights of heroes
// sent to the cities) takes to reach each subscriber; meanwhile /healthz's
// latency, and whether dispatch's own actors kept their deadlines, read
// from its /metrics before and after (see missedDeadlines).
func fanout(ctx context.Context, e *env) []row {
	subs, heroes := e.pick(1000, 100), e.pick(10_000, 1000)
	sp := spec{
		Protocol: "default",
		CityArgs: []string{"-patrol", "100ms", "-fight", "300ms"}, // as city_change_to_page
		DispatchArgs: []string{
			"-max-websockets", strconv.Itoa(subs + 16),
			"-max-conns", strconv.Itoa(subs + 128),
		},
	}
	return []row{e.measure(ctx, "fanout", sp, e.pickDur(150*time.Second, 60*time.Second), func(ctx context.Context, c *cluster, r *row) error {
		r.Targets = []target{atMost("snapshots_ms", 5000), atMost("p99_ms", 100), atMost("healthz_max_ms", 50), atMost("missed", 0)}
		if _, err := fill(ctx, c, heroes); err != nil {
			return err
		}
		if err := awaitDispatchHolds(ctx, c, heroes); err != nil {
			return err
		}
		// Heroes patrol and fight in the cities (about 10 writes a
		// second) during the whole run, snapshots included.
		var list struct {
			Superheroes []localcluster.APIHero `json:"superheroes"`
		}
		if _, err := c.Call(ctx, http.MethodGet, "/api/superheroes", nil, &list); err != nil {
			return err
		}
		for i := range min(150, len(list.Superheroes)) {
			city := c.spec.Cities[i%len(c.spec.Cities)]
			if _, err := c.Call(ctx, http.MethodPut, "/api/superheroes/"+list.Superheroes[i].ID+"/location", map[string]string{"location": city}, nil); err != nil {
				return err
			}
		}
		metricsURL := "http://" + c.HTTPAddr() + "/metrics"
		before, err := metricstest.TryScrape(metricsURL)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}

		hz := startHealthz(ctx, c.HTTPAddr())
		cpuBefore := c.cpu()
		cities := map[string]bool{}
		for _, city := range c.spec.Cities {
			cities[city] = true
		}
		start := time.Now()
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		pages := make([]*fanoutPage, subs)
		dialErrs := make(chan error, subs)
		var wg sync.WaitGroup
		defer func() {
			cancel()
			wg.Wait()
		}()
		for i := range pages {
			pages[i] = &fanoutPage{cities: cities, snapshotDone: make(chan struct{})}
			wg.Go(func() { dialErrs <- pages[i].run(sctx, c.HTTPAddr()) })
		}
		c.log.Info("subscribers connecting", "subscribers", subs, "heroes", heroes)
		// Every page's snapshot, within a bound; past it, the row says
		// how many held theirs, and what dispatch's metrics showed.
		bound := time.After(e.pickDur(60*time.Second, 20*time.Second))
		var last time.Time
		held := 0
	wait:
		for _, p := range pages {
			select {
			case <-p.snapshotDone:
			case err := <-dialErrs:
				cancel()
				wg.Wait()
				return fmt.Errorf("subscriber: %w (%d of %d held their snapshot)", err, held, subs)
			case <-bound:
				break wait
			case <-ctx.Done():
				return ctx.Err()
			}
			held++
			if at := p.snapshotAt(); at.After(last) {
				last = at
			}
		}
		retries := 0
		for _, p := range pages {
			p.mu.Lock()
			retries += p.retries
			p.mu.Unlock()
		}
		r.set("retries", float64(retries))
		if held < subs {
			hs := summarize(hz.stop())
			r.set("healthz_p99_ms", ms(hs.P99))
			r.set("healthz_max_ms", ms(hs.Max))
			r.set("held", float64(held))
			r.note("only %d of %d subscribers held their snapshot after %v", held, subs, time.Since(start).Round(time.Second))
			return setMissed(r, c, metricsURL, before)
		}
		r.set("snapshots_ms", ms(last.Sub(start)))
		used := c.cpu().since(cpuBefore)
		r.set("cpu_dispatch_s", used["dispatch"])
		r.set("cpu_bench_s", used["bench"])
		c.log.Info("every subscriber holds its snapshot", "took", last.Sub(start).Round(time.Millisecond))

		// The pages that got their snapshot last take the changes made
		// since its read as their first delta: let those pass.
		if err := sleepUntil(ctx, time.Now().Add(500*time.Millisecond)); err != nil {
			return err
		}
		window := e.pickDur(5*time.Second, 2*time.Second)
		for _, p := range pages {
			p.record(true)
		}
		err = sleepUntil(ctx, time.Now().Add(window))
		for _, p := range pages {
			p.record(false)
		}
		hs := summarize(hz.stop())
		r.set("healthz_p99_ms", ms(hs.P99))
		r.set("healthz_max_ms", ms(hs.Max))
		if err != nil {
			return err
		}
		var lat []time.Duration
		deltas := 0
		for _, p := range pages {
			lat = append(lat, p.latencies()...)
			p.mu.Lock()
			deltas += p.deltas
			p.mu.Unlock()
		}
		r.set("deltas_per_page", float64(deltas)/float64(subs))
		cancel()
		wg.Wait()
		close(dialErrs)
		for err := range dialErrs {
			if err != nil {
				return fmt.Errorf("subscriber: %w", err)
			}
		}
		if len(lat) == 0 {
			_ = setMissed(r, c, metricsURL, before)
			return fmt.Errorf("no city write reached the pages during the window (%d delta frames)", deltas)
		}
		r.setLatency(lat)
		r.set("per_page", float64(len(lat))/float64(subs))

		return setMissed(r, c, metricsURL, before)
	})}
}

// setMissed scrapes dispatch's metrics again and sets what its actors
// missed since before (see missedDeadlines), the snapshots it read and
// its resident memory.
func setMissed(r *row, c *cluster, metricsURL string, before metricstest.Samples) error {
	after, err := metricstest.TryScrape(metricsURL)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	total := 0.0
	for _, m := range missedDeadlines(before, after) {
		r.set(m.Name, m.Value)
		total += max(m.Value, 0)
	}
	r.set("missed", total)
	if after.Has("superhero_websocket_snapshot_reads_total") {
		r.set("snapshot_reads", after.Value("superhero_websocket_snapshot_reads_total")-before.Value("superhero_websocket_snapshot_reads_total"))
	}
	if rs, err := rss(c.Proc("dispatch").Pid()); err == nil {
		r.set("rss_mb", rs)
	}
	return nil
}

// missedDeadlines compares two scrapes of dispatch's /metrics and returns
// what shows a deadline dispatch's actors missed: its replica actor's
// restarts, its engine's deadlines handled more than 100 ms late
// (late_timers; -1 when dispatch does not measure it), exchanges that
// timed out, writes not confirmed in time, and status probes that got no
// answer in time (each of which marks a city down).
func missedDeadlines(before, after metricstest.Samples) []metric {
	diff := func(name string, kv ...string) float64 { return after.Value(name, kv...) - before.Value(name, kv...) }
	late := -1.0
	const lateness = "superhero_replication_timer_lateness_seconds"
	if after.Has(lateness + "_count") {
		late = diff(lateness+"_count") - diff(lateness+"_bucket", "le", "0.1")
	}
	const probes = "superhero_city_request_duration_seconds_count"
	return []metric{
		{"restarts", diff("superhero_supervisor_restarts_total", "node", "dispatch")},
		{"late_timers", late},
		{"timed_out", diff("superhero_replication_exchanges_ended_total", "outcome", "timed_out")},
		{"unconfirmed", diff("superhero_replication_writes_total", "outcome", "unknown")},
		{"probes_failed", diff(probes, "kind", "GetDigest") - diff(probes, "kind", "GetDigest", "outcome", "ok")},
	}
}

// awaitDispatchHolds waits until dispatch's replica holds n heroes.
func awaitDispatchHolds(ctx context.Context, c *cluster, n int) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	held := 0
	err := localcluster.Poll(wctx, 250*time.Millisecond, func() (bool, error) {
		var list struct {
			Superheroes []json.RawMessage `json:"superheroes"`
		}
		if _, err := c.Call(wctx, http.MethodGet, "/api/superheroes", nil, &list); err != nil {
			return false, localcluster.Transient(wctx, err)
		}
		held = len(list.Superheroes)
		return held >= n, nil
	})
	if err != nil {
		return fmt.Errorf("dispatch holds %d of %d heroes: %w", held, n, err)
	}
	return nil
}

// fanoutPage is one subscriber. It reads every frame but parses only what
// it must: snapshot parts are counted and discarded, so that the bench's
// own CPU goes on reading rather than decoding.
type fanoutPage struct {
	cities       map[string]bool
	snapshotDone chan struct{}

	mu        sync.Mutex
	doneAt    time.Time
	recording bool
	lat       []time.Duration
	deltas    int // delta frames while recording
	retries   int // connections closed with 1013
}

// run reads the feed until ctx ends. Like the page, it connects again
// when dispatch closes the feed asking to try again later (1013: no
// snapshot to give, or the page fell behind), after 0.5 s, 1 s, 2 s ... up
// to 10 s, ±20%.
func (p *fanoutPage) run(ctx context.Context, addr string) error {
	for attempt := 0; ; attempt++ {
		err := p.read(ctx, addr)
		if ctx.Err() != nil {
			return nil // the scenario is over
		}
		if websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
			return err
		}
		p.mu.Lock()
		p.retries++
		p.mu.Unlock()
		backoff := min(10*time.Second, 500*time.Millisecond<<min(attempt, 5))
		backoff = time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		if err := sleepUntil(ctx, time.Now().Add(backoff)); err != nil {
			return nil
		}
	}
}

func (p *fanoutPage) read(ctx context.Context, addr string) error {
	// A connection of its own, never one kept alive by another client.
	opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", opts)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 20)
	var (
		buf       bytes.Buffer
		head      [24]byte
		sink      = make([]byte, 256<<10) // few reads per snapshot part
		partsLeft = -1                    // snapshot_part frames still to come; -1 before the snapshot frame
	)
	discard := func(rd io.Reader) error {
		for {
			_, err := rd.Read(sink)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
		}
	}
	for {
		_, rd, err := conn.Reader(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		n, err := io.ReadFull(rd, head[:])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read: %w", err)
		}
		prefix := head[:n]
		switch {
		case bytes.HasPrefix(prefix, []byte(`{"type":"snapshot_part"`)):
			if err := discard(rd); err != nil {
				return err
			}
			if partsLeft--; partsLeft == 0 {
				p.snapshotHeld(time.Now())
			}
		case bytes.HasPrefix(prefix, []byte(`{"type":"snapshot"`)):
			// A snapshot frame, then its parts; or, from a dispatch that
			// sends the whole snapshot as one frame, that frame.
			buf.Reset()
			buf.Write(prefix)
			if bytes.HasPrefix(prefix, []byte(`{"type":"snapshot","hero`)) {
				if err := discard(rd); err != nil {
					return err
				}
				p.snapshotHeld(time.Now())
				continue
			}
			if _, err := buf.ReadFrom(rd); err != nil {
				return fmt.Errorf("read: %w", err)
			}
			var f struct {
				Parts int `json:"parts"`
			}
			if err := json.Unmarshal(buf.Bytes(), &f); err != nil {
				return fmt.Errorf("snapshot frame: %w", err)
			}
			if partsLeft = f.Parts; partsLeft == 0 {
				p.snapshotHeld(time.Now())
			}
		case bytes.HasPrefix(prefix, []byte(`{"type":"delta"`)):
			buf.Reset()
			buf.Write(prefix)
			if _, err := buf.ReadFrom(rd); err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if err := p.take(buf.Bytes(), time.Now()); err != nil {
				return err
			}
		default:
			if err := discard(rd); err != nil {
				return err
			}
		}
	}
}

func (p *fanoutPage) snapshotHeld(at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.doneAt.IsZero() {
		p.doneAt = at
		close(p.snapshotDone)
	}
}

func (p *fanoutPage) snapshotAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.doneAt
}

// take records, while recording, the latency of every city write in a
// delta frame: its arrival minus the write's updated_at (one machine, one
// clock).
func (p *fanoutPage) take(frame []byte, recv time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.recording {
		return nil
	}
	p.deltas++
	var f struct {
		Heroes []localcluster.APIHero `json:"heroes"`
	}
	if err := json.Unmarshal(frame, &f); err != nil {
		return fmt.Errorf("delta frame: %w", err)
	}
	for _, h := range f.Heroes {
		if !p.cities[h.UpdatedBy] {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, h.UpdatedAt)
		if err != nil {
			return fmt.Errorf("hero %s: updated_at: %w", h.ID, err)
		}
		p.lat = append(p.lat, recv.Sub(at))
	}
	return nil
}

func (p *fanoutPage) record(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recording = on
}

func (p *fanoutPage) latencies() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.lat...)
}

// healthz probes GET /healthz every 50 ms until stopped, recording how
// long each answer took.
type healthz struct {
	stopc chan struct{}
	done  chan struct{}
	lat   []time.Duration
}

func startHealthz(ctx context.Context, addr string) *healthz {
	h := &healthz{stopc: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	probe := func() (time.Duration, error) {
		start := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return time.Since(start), err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), nil
	}
	_, _ = probe() // a warm connection, as a monitor keeps
	go func() {
		defer close(h.done)
		defer client.CloseIdleConnections()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.stopc:
				return
			case <-t.C:
			}
			d, _ := probe() // a failed probe counts as slow as it was
			h.lat = append(h.lat, d)
		}
	}()
	return h
}

// stop ends probing and returns the latencies.
func (h *healthz) stop() []time.Duration {
	close(h.stopc)
	<-h.done
	return h.lat
}
