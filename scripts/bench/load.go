package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/localcluster"
	"github.com/superhero-cluster/superhero/internal/proc"
)

// loadClients is how many keep-alive clients a load uses by default: the
// throughput row, the HTTP floor and the background of the loaded
// write_to_all.
const loadClients = 16

// saturatingClients is the throughput rows' second load: enough clients
// that a write concern's group commit has writes to group. With
// loadClients, a write that waits for a city's acknowledgement holds its
// client for that round trip too, so the rate is bounded by the clients'
// count over the latency (Little's law) before the CPU is.
const saturatingClients = 64

// floorBinary is the bare Echo server of the HTTP floor, built with the
// node binaries (scripts/bench/floor).
const floorBinary = "scripts/bench/floor"

// loadResult is what a load did.
type loadResult struct {
	ids     []string        // acknowledged creates
	lat     []time.Duration // their latencies
	failed  int
	elapsed time.Duration
}

func (l loadResult) perSecond() float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(len(l.ids)) / l.elapsed.Seconds()
}

// runLoad runs clients clients creating heroes through api until dur
// has passed or ctx ends. With rate > 0 the clients together start at most
// rate creates a second, each on its own schedule (client w's i-th create
// at (i*clients+w)/rate after the start; one that falls behind catches up
// without waiting); with rate 0 each client goes as fast as its answers
// come. Progress is logged every 2 s.
func runLoad(ctx context.Context, log *slog.Logger, api *localcluster.API, clients int, dur time.Duration, rate float64) loadResult {
	var (
		mu    sync.Mutex
		res   loadResult
		acked atomic.Int64
		wg    sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(dur)
	for w := range clients {
		wg.Go(func() {
			var mine []string
			var times []time.Duration
			bad := 0
			for i := 0; ctx.Err() == nil; i++ {
				if rate > 0 {
					at := start.Add(time.Duration(float64(i*clients+w) / rate * float64(time.Second)))
					if !at.Before(stop) || sleepUntil(ctx, at) != nil {
						break
					}
				} else if !time.Now().Before(stop) {
					break
				}
				t := time.Now()
				h, err := api.Create(ctx, fmt.Sprintf("Load %d-%d", w, i))
				if err != nil {
					if ctx.Err() == nil {
						bad++ // not one cut short by the end of the load
					}
					continue
				}
				mine, times = append(mine, h.ID), append(times, time.Since(t))
				acked.Add(1)
			}
			mu.Lock()
			res.ids, res.lat, res.failed = append(res.ids, mine...), append(res.lat, times...), res.failed+bad
			mu.Unlock()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for last, lastN := start, int64(0); ; {
		select {
		case <-done:
			res.elapsed = time.Since(start)
			return res
		case now := <-tick.C:
			n := acked.Load()
			log.Info("load running", "clients", clients, "acked", n, "per_s", int(float64(n-lastN)/now.Sub(last).Seconds()))
			last, lastN = now, n
		}
	}
}

// httpFloor: the same clients against the bare Echo server of
// scripts/bench/floor, with no cluster running. Its rate is what HTTP and
// JSON alone allow on this machine; the throughput row divides by it. It
// is measured once per run and shared.
func httpFloor(ctx context.Context, e *env) []row {
	if e.floor != nil {
		return nil // measured already in this run (throughput asked first)
	}
	r := row{Scenario: "http_floor", Protocol: "-"}
	e.floor = &r
	if err := e.measureFloor(ctx, &r); err != nil {
		r.Err = err.Error()
		e.log.Error("scenario failed", "scenario", "http_floor", "err", err)
	}
	return []row{r}
}

func (e *env) measureFloor(ctx context.Context, r *row) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	base, err := layout.FreeRun(1)
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(base)
	p := &proc.Proc{Name: "floor", Path: filepath.Join(e.bin, filepath.Base(floorBinary)), Args: []string{"-addr", addr}}
	out := newTail(16<<10, e.echo)
	if err := p.Start(out); err != nil {
		return err
	}
	defer p.Kill()
	api := localcluster.NewAPI(addr)
	defer api.Close()
	if err := localcluster.Poll(ctx, 20*time.Millisecond, func() (bool, error) {
		code, _ := api.Call(ctx, http.MethodPost, "/api/superheroes", map[string]string{"name": "Warm Up"}, nil)
		return code == http.StatusCreated, nil
	}); err != nil {
		return fmt.Errorf("floor server did not answer: %w (output: %v)", err, out.lines(5))
	}
	log := e.log.With("scenario", "http_floor")
	cpu0, err := cpuSeconds(p.Pid())
	if err != nil {
		return err
	}
	res := runLoad(ctx, log, api, loadClients, e.pickDur(10*time.Second, 2*time.Second), 0)
	cpu1, err := cpuSeconds(p.Pid())
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.N = len(res.ids)
	r.set("per_s", res.perSecond())
	s := summarize(res.lat)
	r.set("p50_ms", ms(s.P50))
	r.set("p99_ms", ms(s.P99))
	r.set("max_ms", ms(s.Max))
	r.set("errors", float64(res.failed))
	r.set("cores_server", (cpu1-cpu0)/res.elapsed.Seconds())
	if r.N > 0 {
		r.set("cpu_us_per_req", (cpu1-cpu0)*1e6/float64(r.N))
	}
	r.note("%d keep-alive clients against a bare Echo handler answering 201 with a hero-sized body, no cluster: what HTTP alone allows here", loadClients)
	log.Info("floor measured", "per_s", int(res.perSecond()), "p50_ms", ms(s.P50))
	return nil
}

// floorRate is the HTTP floor's rate in this run, measuring it first if no
// scenario has; 0 if it could not be measured.
func (e *env) floorRate(ctx context.Context) (float64, []row) {
	rows := httpFloor(ctx, e)
	v, _ := e.floor.get("per_s")
	return v, rows
}

// writeToAllLoaded: write_to_all measured while a background load of
// creates runs at half the rate the throughput row reached in this run (or,
// without that row, half of what a short load of its own reaches).
func writeToAllLoaded(ctx context.Context, e *env) []row {
	return []row{e.measure(ctx, "write_to_all_loaded", spec{Protocol: "default"}, 60*time.Second, func(ctx context.Context, c *cluster, r *row) error {
		r.Targets = []target{atMost("p50_ms", 5), atMost("p99_ms", 25)}
		full := e.rate
		if full == 0 {
			full = runLoad(ctx, c.log, c.API(), loadClients, e.pickDur(3*time.Second, time.Second), 0).perSecond()
			r.note("background rate from a load of its own (throughput not in this run)")
		}
		if full == 0 {
			return fmt.Errorf("no throughput to take half of")
		}
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		bg := make(chan loadResult, 1)
		go func() { bg <- runLoad(lctx, c.log, c.API(), loadClients, time.Hour, full/2) }()
		if err := sleepUntil(ctx, time.Now().Add(500*time.Millisecond)); err != nil {
			return err
		}
		lat, api, err := writeOneByOne(ctx, c, e.pick(200, 20))
		if err != nil {
			return err
		}
		cancel()
		res := <-bg
		r.setLatency(lat)
		r.set("api_p50_ms", ms(summarize(api).P50))
		r.set("background_per_s", res.perSecond())
		r.set("background_target_per_s", full/2)
		r.set("background_errors", float64(res.failed))
		r.note("write_to_all while %d clients create at half the measured throughput in the background", loadClients)
		return nil
	})}
}
