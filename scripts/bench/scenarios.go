package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/internal/localcluster"
	"github.com/superhero-cluster/superhero/internal/metrics/metricstest"
)

// writeToAll: a create through the API until every city replica holds it,
// probed with GetHero. Both protocols are measured the same way, one write
// after another, and the ratio compares those. The original protocol also
// gets a run of overlapping writes (one every 100 ms), reported apart: its
// pushes carry dispatch's whole replica, so a write there also delivers
// the ones before it and the figure says more about load than about a
// write.
func writeToAll(ctx context.Context, e *env) []row {
	def := e.measure(ctx, "write_to_all", spec{Protocol: "default"}, 40*time.Second, func(ctx context.Context, c *cluster, r *row) error {
		r.Targets = []target{atMost("p50_ms", 3), atMost("p99_ms", 10), atLeast("ratio", 100)}
		lat, api, err := writeOneByOne(ctx, c, e.pick(200, 20))
		if err != nil {
			return err
		}
		r.setLatency(lat)
		r.set("api_p50_ms", ms(summarize(api).P50))
		return nil
	})
	orig := e.measure(ctx, "write_to_all", spec{Protocol: "original"}, 80*time.Second, func(ctx context.Context, c *cluster, r *row) error {
		n, bound := e.pick(20, 5), e.pickDur(10*time.Second, 8*time.Second)
		lat, api := make([]time.Duration, n), make([]time.Duration, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			if err := sleepUntil(ctx, start.Add(time.Duration(i)*100*time.Millisecond)); err != nil {
				return err
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, bound)
				defer cancel()
				w, err := writeEverywhere(ctx, c, i, 20*time.Millisecond)
				lat[i], api[i], errs[i] = w.all, w.api, err
			})
		}
		c.log.Info("writes issued; waiting for them to reach every city", "writes", n, "bound", bound)
		wg.Wait()
		late := 0
		for i, err := range errs {
			switch {
			case err == nil:
			case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && api[i] > 0:
				late++
				lat[i] = bound // censored: counted as the bound
			default:
				return err
			}
		}
		if late > 0 {
			r.note("%d of %d writes not in every city within %v, counted as %v", late, n, bound, bound)
		}
		overlapped := summarize(lat)
		r.set("overlapped_p50_ms", ms(overlapped.P50))
		r.set("overlapped_p99_ms", ms(overlapped.P99))
		r.note("overlapped_*: %d writes, one every 100 ms; each original push carries dispatch's whole replica, so later writes also carry earlier ones", n)
		r.set("api_p50_ms", ms(summarize(api).P50))

		// A few writes one at a time, each after the previous one is
		// everywhere, so none carries another: a single write's own cost.
		var isolated []time.Duration
		for i := range e.pick(6, 2) {
			wctx, cancel := context.WithTimeout(ctx, bound)
			w, err := writeEverywhere(wctx, c, n+i, 20*time.Millisecond)
			cancel()
			switch {
			case err == nil:
				isolated = append(isolated, w.all)
			case ctx.Err() == nil && w.api > 0:
				isolated = append(isolated, bound) // censored
			default:
				return err
			}
		}
		r.setLatency(isolated)
		r.note("p50/p99/max_ms: %d writes one at a time, as the default protocol's", len(isolated))
		return nil
	})
	d, okd := def.get("p50_ms")
	if o, ok := orig.get("p50_ms"); ok && okd && d > 0 {
		def.set("ratio", o/d)
	}
	return []row{def, orig}
}

// writeOneByOne makes n writes through the API, each after the previous
// one reached every city (probed every 1 ms), and returns the times until
// every city held each and until the API acknowledged it.
func writeOneByOne(ctx context.Context, c *cluster, n int) (all, api []time.Duration, err error) {
	p := progress{log: c.log}
	for i := range n {
		w, err := writeEverywhere(ctx, c, i, time.Millisecond)
		if err != nil {
			return nil, nil, err
		}
		all, api = append(all, w.all), append(api, w.api)
		p.log2s("writes", "done", i+1, "of", n)
	}
	return all, api, nil
}

type written struct {
	api time.Duration // until the API acknowledged
	all time.Duration // until every city held it
}

// writeEverywhere creates a hero through the API and probes every city
// every interval until all hold it. Both times count from the request.
func writeEverywhere(ctx context.Context, c *cluster, i int, every time.Duration) (written, error) {
	start := time.Now()
	h, err := c.Create(ctx, fmt.Sprintf("Bench %d", i))
	if err != nil {
		return written{}, err
	}
	w := written{api: time.Since(start)}
	seen := make([]time.Time, len(c.spec.Cities))
	errs := make([]error, len(c.spec.Cities))
	var wg sync.WaitGroup
	for j, city := range c.spec.Cities {
		wg.Go(func() { seen[j], errs[j] = c.AwaitHolds(ctx, city, h.ID, every) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return w, err
	}
	w.all = slices.MaxFunc(seen, func(a, b time.Time) int { return a.Compare(b) }).Sub(start)
	return w, nil
}

// cityChangeToPage: a city's own write (patrol, fight) until a WebSocket
// client of dispatch sees it, measured from the write's HLC wall time.
func cityChangeToPage(ctx context.Context, e *env) []row {
	var rows []row
	for _, proto := range e.protocols(false) {
		sp := spec{Protocol: proto, CityArgs: []string{"-patrol", "100ms", "-fight", "300ms"}}
		rows = append(rows, e.measure(ctx, "city_change_to_page", sp, 40*time.Second, func(ctx context.Context, c *cluster, r *row) error {
			if proto == "default" {
				r.Targets = []target{atMost("p99_ms", 150)}
			}
			feed, err := dialFeed(ctx, c)
			if err != nil {
				return err
			}
			defer feed.close()
			heroes := e.pick(60, 30)
			for i := range heroes {
				h, err := c.Create(ctx, fmt.Sprintf("Bench %d", i))
				if err != nil {
					return err
				}
				city := c.spec.Cities[i%len(c.spec.Cities)]
				if _, err := c.Call(ctx, http.MethodPut, "/api/superheroes/"+h.ID+"/location", map[string]string{"location": city}, nil); err != nil {
					return err
				}
			}
			warmup := 500 * time.Millisecond
			if proto == "original" {
				warmup = 2 * time.Second // the poll's first round
			}
			if err := sleepUntil(ctx, time.Now().Add(warmup)); err != nil {
				return err
			}
			window := e.pickDur(6*time.Second, 2*time.Second)
			c.log.Info("measuring city writes seen on the page", "heroes", heroes, "window", window)
			feed.record(true)
			err = sleepUntil(ctx, time.Now().Add(window))
			feed.record(false)
			if err != nil {
				return err
			}
			lat, frames, ferr := feed.results()
			if ferr != nil {
				return fmt.Errorf("websocket: %w", ferr)
			}
			if len(lat) == 0 {
				return errors.New("no city write reached the page during the window")
			}
			r.setLatency(lat)
			r.set("frames", float64(frames))
			return nil
		}))
	}
	return rows
}

// bombRefill: a city holding N heroes is bombed; time from the bomb's 202
// until its fresh replica's fingerprint equals the others'. Each round
// bombs the next city.
func bombRefill(ctx context.Context, e *env) []row {
	var rows []row
	for _, proto := range e.protocols(false) {
		rows = append(rows, e.measure(ctx, "bomb_refill", spec{Protocol: proto}, 60*time.Second, func(ctx context.Context, c *cluster, r *row) error {
			bound := 5 * time.Second
			if proto == "default" {
				r.Targets = []target{atMost("max_ms", 1000)}
			} else {
				bound = 15 * time.Second
			}
			n, rounds := e.pick(1000, 200), e.pick(3, 1)
			fp, err := fill(ctx, c, n)
			if err != nil {
				return err
			}
			var lat []time.Duration
			for i := range rounds {
				city := c.spec.Cities[i%len(c.spec.Cities)]
				before, err := c.Digest(ctx, city, time.Second)
				if err != nil {
					return err
				}
				if _, err := c.Call(ctx, http.MethodPost, "/api/bomb", map[string]string{"city": city}, nil); err != nil {
					return err
				}
				bombed := time.Now()
				rctx, cancel := context.WithTimeout(ctx, bound)
				// Only the restarted incarnation counts, never the old replica.
				_, matched, err := c.AwaitReplica(rctx, city, 2*time.Millisecond, func(info localcluster.ReplicaInfo) (bool, error) {
					return info.Incarnation != before.Incarnation && info.Fingerprint == fp, nil
				})
				cancel()
				if err != nil {
					r.setLatency(lat)
					return fmt.Errorf("%s not refilled within %v: %w", city, bound, err)
				}
				lat = append(lat, matched.Sub(bombed))
				c.log.Info("refilled", "city", city, "took", matched.Sub(bombed).Round(time.Millisecond))
			}
			r.setLatency(lat)
			r.set("heroes", float64(n))
			return nil
		}))
	}
	return rows
}

// fill puts n new heroes straight into every city and returns the common
// fingerprint.
func fill(ctx context.Context, c *cluster, n int) (uint64, error) {
	if err := c.Inject(ctx, c.spec.Cities, newHeroes(n), 10_000); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fp, err := c.AwaitConverged(wctx, c.spec.Cities, 10*time.Millisecond)
	if err != nil {
		return 0, fmt.Errorf("cities not equal after filling them: %w", err)
	}
	return fp, nil
}

// killRestart: SIGKILL a city holding N heroes, see dispatch report it
// down, start it again, time until its replica equals the others'.
func killRestart(ctx context.Context, e *env) []row {
	var rows []row
	for _, proto := range e.protocols(false) {
		rows = append(rows, e.measure(ctx, "kill_restart", spec{Protocol: proto}, 60*time.Second, func(ctx context.Context, c *cluster, r *row) error {
			bound := 15 * time.Second
			if proto == "default" {
				r.Targets = []target{atMost("max_ms", 2000)}
			} else {
				bound = 30 * time.Second
			}
			n := e.pick(1000, 200)
			fp, err := fill(ctx, c, n)
			if err != nil {
				return err
			}
			const city = "gotham"
			killed := time.Now()
			c.Proc(city).Kill() // SIGKILL, then wait for the exit
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = localcluster.Poll(dctx, 10*time.Millisecond, func() (bool, error) {
				st, err := c.Status(dctx)
				return err == nil && len(st.Cities) > 0 && !st.Up(city), nil
			})
			cancel()
			if err != nil {
				return fmt.Errorf("dispatch never reported %s down: %w", city, err)
			}
			r.set("down_ms", ms(time.Since(killed)))

			restarted := time.Now()
			if err := c.Restart(city); err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, bound)
			answered, matched, err := c.AwaitReplica(cctx, city, 5*time.Millisecond, localcluster.HasFingerprint(fp))
			cancel()
			if !answered.IsZero() {
				r.set("up_ms", ms(answered.Sub(restarted)))
			}
			if err != nil {
				return fmt.Errorf("%s not converged within %v of its restart: %w", city, bound, err)
			}
			r.setLatency([]time.Duration{matched.Sub(restarted)})
			r.set("heroes", float64(n))
			r.note("max_ms: process start to replica equal to the others'; up_ms: to its first answer")
			return nil
		}))
	}
	return rows
}

// limit: bare request round trip from a cluster member to a city grain.
func limit(ctx context.Context, e *env) []row {
	return []row{e.measure(ctx, "limit", spec{Protocol: "default"}, 30*time.Second, func(ctx context.Context, c *cluster, r *row) error {
		n := e.pick(1000, 200)
		probe := func(i int) (time.Duration, error) {
			start := time.Now()
			_, err := c.Holds(ctx, c.spec.Cities[i%len(c.spec.Cities)], uuid.NewString())
			return time.Since(start), err
		}
		for i := range 30 { // warm connections and grain lookups
			if _, err := probe(i); err != nil {
				return err
			}
		}
		lat := make([]time.Duration, 0, n)
		for i := range n {
			d, err := probe(i)
			if err != nil {
				return err
			}
			lat = append(lat, d)
		}
		r.setLatency(lat)
		return nil
	})}
}

// throughput: acknowledged creates per second through the API from 16
// keep-alive clients, then 64; then every acknowledged hero must reach
// every city.
//
// A full run also measures the same loads with dispatch acknowledging from
// its own memory (-write-quorum 0): what waiting for a city costs in rate.
// Both clusters run side by side and the loads alternate between them in
// slices, so that a slow spell of the machine (its speed swings by 1.5x
// and more from one minute to the next) falls on both and their ratio
// holds.
func throughput(ctx context.Context, e *env) []row {
	floor, rows := e.floorRate(ctx)
	q1spec := spec{Protocol: "default"}
	if e.quick {
		return append(rows, e.measure(ctx, "throughput", q1spec, 90*time.Second, func(ctx context.Context, c *cluster, r *row) error {
			return e.throughputLoads(ctx, floor, []side{{c, r, "ours"}})
		}))
	}
	// The quorum-0 row comes back through a channel: a scenario that
	// misses its hard deadline is abandoned, not stopped.
	q0c := make(chan row, 1)
	q1 := e.measure(ctx, "throughput", q1spec, 240*time.Second, func(ctx context.Context, c *cluster, r *row) error {
		q0 := row{Scenario: "throughput", Protocol: "quorum-0"}
		defer func() { q0c <- q0 }()
		log := e.log.With("scenario", "throughput", "protocol", q0.Protocol)
		out := newTail(256<<10, e.echo)
		c0, err := startBeside(ctx, e, spec{Protocol: "default", DispatchArgs: []string{"-write-quorum", "0"}}, log, out)
		if err != nil {
			q0.Err = "cluster start: " + err.Error()
			log.Error("scenario failed", "err", q0.Err)
			return e.throughputLoads(ctx, floor, []side{{c, r, "ours"}}) // ours alone
		}
		defer c0.Stop()
		err = e.throughputLoads(ctx, floor, []side{{c, r, "ours"}, {c0, &q0, "quorum-0"}})
		if err != nil && q0.Err == "" {
			q0.Err = "measured beside ours, which failed: " + err.Error()
			for _, l := range out.lines(30) {
				log.Info("node output", "line", l)
			}
		}
		return err
	})
	var q0 row
	select {
	case q0 = <-q0c:
	default:
		q0 = row{Scenario: "throughput", Protocol: "quorum-0", Err: "no result: the scenario missed its deadline"}
	}
	q0.Targets = nil
	q0.note("dispatch acknowledges from its own memory (-write-quorum 0): can lose acknowledged writes; the comparison only")
	for _, sfx := range []string{"", suffix(saturatingClients)} {
		a, ok1 := q1.get("per_s" + sfx)
		b, ok2 := q0.get("per_s" + sfx)
		if ok1 && ok2 && b > 0 && q0.Err == "" {
			q1.set("vs_quorum0"+sfx, a/b)
		}
	}
	// The group commit's promise is about a saturated server: with 16
	// clients each waiting out a city's round trip, the rate is bounded by
	// the clients (see saturatingClients), so the target is on the load
	// with saturatingClients.
	if _, ok := q1.get("vs_quorum0" + suffix(saturatingClients)); ok {
		q1.Targets = append(q1.Targets, atLeast("vs_quorum0"+suffix(saturatingClients), 0.9))
		q1.note("vs_quorum0*: per_s over quorum-0's, the two clusters running side by side, loads alternating in %d slices each", throughputSlices)
	}
	return append(rows, q1, q0)
}

// startBeside starts a cluster of sp to measure beside another, retrying
// once on other ports as measure does.
func startBeside(ctx context.Context, e *env, sp spec, log *slog.Logger, out *tail) (*cluster, error) {
	c, err := startCluster(ctx, e.bin, sp, log, out)
	if err != nil && ctx.Err() == nil {
		log.Warn("cluster start failed; retrying once on other ports", "err", err)
		c, err = startCluster(ctx, e.bin, sp, log, out)
	}
	if err != nil {
		for _, l := range out.lines(30) {
			log.Info("node output", "line", l)
		}
	}
	return c, err
}

// throughputSlices is how many slices each load is cut into when two
// clusters take turns; even, so that the ABBA order gives each the first
// turn as often.
const throughputSlices = 4

// suffix names the metrics of the load with n clients, when n is not
// loadClients.
func suffix(n int) string {
	if n == loadClients {
		return ""
	}
	return fmt.Sprintf("_%d", n)
}

// loadTotal sums the slices of one cluster's load.
type loadTotal struct {
	res  loadResult
	used cpuUse
	repl replDiff
}

// replDiff is what dispatch's replication metrics rose by during a load:
// its pushes and their entries, and the confirmations of its pushes by
// the write quorum (their count and time, summed).
type replDiff struct {
	pushes, entries, confirms, confirmSecs float64
}

// dispatchRepl scrapes dispatch's replication metrics; ok is false when
// /metrics could not be read (that slice is then left out of
// writes_per_push and confirm_ms).
func dispatchRepl(c *cluster) (replDiff, bool) {
	s, err := metricstest.TryScrape("http://" + c.HTTPAddr() + "/metrics")
	if err != nil {
		c.log.Warn("metrics not read", "err", err)
		return replDiff{}, false
	}
	const confirm = "superhero_replication_push_confirm_seconds"
	return replDiff{
		pushes:      s.Value("superhero_replication_sent_messages_total", "kind", "push"),
		entries:     s.Value("superhero_replication_push_entries_total"),
		confirms:    s.Value(confirm + "_count"),
		confirmSecs: s.Value(confirm + "_sum"),
	}, true
}

func (d replDiff) add(o replDiff) replDiff {
	return replDiff{d.pushes + o.pushes, d.entries + o.entries, d.confirms + o.confirms, d.confirmSecs + o.confirmSecs}
}

func (d replDiff) sub(o replDiff) replDiff {
	return replDiff{d.pushes - o.pushes, d.entries - o.entries, d.confirms - o.confirms, d.confirmSecs - o.confirmSecs}
}

func (t *loadTotal) add(res loadResult, used cpuUse) {
	t.res.ids = append(t.res.ids, res.ids...)
	t.res.lat = append(t.res.lat, res.lat...)
	t.res.failed += res.failed
	t.res.elapsed += res.elapsed
	if t.used == nil {
		t.used = cpuUse{}
	}
	for k, v := range used {
		t.used[k] += v
	}
}

// side is one cluster a load runs against, the row its figures go into,
// and its name for errors.
type side struct {
	c    *cluster
	r    *row
	name string
}

// throughputLoads loads each side's cluster with loadClients clients for
// 10 s in all, then with saturatingClients for 10 s; with more than one
// side the loads take turns in throughputSlices slices (in the order
// ABBA..., so a spell that starts or ends mid-way favours neither). The
// first side is this run's own (its rate paces the loaded write_to_all).
// Then every acknowledged create must be in every city of its cluster.
func (e *env) throughputLoads(ctx context.Context, floor float64, sides []side) error {
	ids := make([][]string, len(sides))
	for _, sd := range sides {
		sd.r.Targets = []target{atLeast("floor_ratio", 0.5), atMost("lost", 0)}
	}
	for _, clients := range []int{loadClients, saturatingClients} {
		n := 1
		if len(sides) > 1 {
			n = throughputSlices
		}
		slice := e.pickDur(10*time.Second, 2*time.Second) / time.Duration(n)
		tot := make([]loadTotal, len(sides))
		for s := range n {
			for k := range sides {
				i := k
				if s%2 == 1 {
					i = len(sides) - 1 - k
				}
				c := sides[i].c
				repl0, ok0 := dispatchRepl(c)
				cpu0 := c.cpu()
				res := runLoad(ctx, c.log, c.API(), clients, slice, 0)
				tot[i].add(res, c.cpu().since(cpu0))
				if repl1, ok1 := dispatchRepl(c); ok0 && ok1 {
					tot[i].repl = tot[i].repl.add(repl1.sub(repl0))
				}
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("%s: %w", sides[i].name, err)
				}
			}
		}
		for i, sd := range sides {
			e.setLoad(sd.r, clients, tot[i], floor, i == 0)
			ids[i] = append(ids[i], tot[i].res.ids...)
			sd.c.log.Info("load done", "clients", clients, "acked", len(tot[i].res.ids), "per_s", int(tot[i].res.perSecond()), "errors", tot[i].res.failed)
		}
	}
	for i, sd := range sides {
		sd.r.note("%d clients, then %d (metrics ending _%d); p50/p99/max_ms: API create latency under load; floor_ratio: per_s over the HTTP floor's; cpu_us_per_write: CPU of every node per acknowledged create; cores_*: CPU used during the load, in cores; writes_per_push: entries per push dispatch sent; confirm_ms: mean time from a push leaving dispatch to its confirmation by the write quorum", loadClients, saturatingClients, saturatingClients)
		if err := e.checkDelivered(ctx, sd.c, sd.r, ids[i], 0); err != nil {
			return fmt.Errorf("%s: %w", sd.name, err)
		}
	}
	return nil
}

// setLoad records one load's figures in r; main says r is this run's own
// cluster (its 16 clients' rate paces the loaded write_to_all).
func (e *env) setLoad(r *row, clients int, t loadTotal, floor float64, main bool) {
	sfx := suffix(clients)
	res := t.res
	nodes := 0.0
	for _, name := range slices.Sorted(maps.Keys(t.used)) {
		r.set("cores_"+name+sfx, t.used[name]/res.elapsed.Seconds())
		if name != "bench" {
			nodes += t.used[name]
		}
	}
	r.set("per_s"+sfx, res.perSecond())
	if clients == loadClients {
		r.N = len(res.ids)
		if main {
			e.rate = res.perSecond()
		}
		if floor > 0 {
			r.set("floor_ratio", res.perSecond()/floor)
		}
	}
	if n := len(res.ids); n > 0 {
		r.set("cpu_us_per_write"+sfx, nodes*1e6/float64(n))
	}
	if t.repl.pushes > 0 {
		r.set("writes_per_push"+sfx, t.repl.entries/t.repl.pushes)
	}
	if t.repl.confirms > 0 {
		r.set("confirm_ms"+sfx, t.repl.confirmSecs/t.repl.confirms*1000)
	}
	s := summarize(res.lat)
	r.set("p50_ms"+sfx, ms(s.P50))
	r.set("p99_ms"+sfx, ms(s.P99))
	r.set("max_ms"+sfx, ms(s.Max))
	r.set("errors"+sfx, float64(res.failed))
}

// checkDelivered waits, bounded, for every city to hold at least the
// acknowledged heroes (and the others more the cluster was given before)
// with equal replicas, then checks every id in every city: lost counts
// the acknowledged creates missing from any.
func (e *env) checkDelivered(ctx context.Context, c *cluster, r *row, ids []string, others int) error {
	waited := time.Now()
	cctx, cancel := context.WithTimeout(ctx, e.pickDur(20*time.Second, 10*time.Second))
	err := localcluster.Poll(cctx, 100*time.Millisecond, func() (bool, error) {
		infos, _ := c.Digests(cctx, c.spec.Cities)
		_, equal := localcluster.Converged(infos, c.spec.Cities)
		for _, info := range infos {
			equal = equal && info.Heroes >= len(ids)+others
		}
		return equal, nil
	})
	cancel()
	if err == nil {
		r.set("converge_ms", ms(time.Since(waited)))
	} else {
		r.note("replicas not equal within the wait")
	}
	infos, err := c.Digests(ctx, c.spec.Cities)
	if err != nil {
		return err
	}
	_, equal := localcluster.Converged(infos, c.spec.Cities)
	r.set("replicas_equal", b2f(equal))
	missing := map[string]bool{}
	for _, city := range c.spec.Cities {
		hs, err := c.Entries(ctx, city)
		if err != nil {
			return err
		}
		live := make(map[string]bool, len(hs))
		for _, h := range hs {
			live[h.ID.String()] = !h.Dead
		}
		for _, id := range ids {
			if !live[id] {
				missing[id] = true
			}
		}
	}
	r.set("lost", float64(len(missing)))
	return nil
}

// scale: many cities and heroes. N heroes go into one city and the cluster
// spreads them; then the bytes an idle anti-entropy round costs, the time
// a new city takes to fill, and every node's memory.
func scale(ctx context.Context, e *env) []row {
	cities := make([]string, e.pick(10, 5))
	for i := range cities {
		cities[i] = fmt.Sprintf("city%02d", i+1)
	}
	sp := spec{Protocol: "default", Cities: cities, Slots: 16}
	return []row{e.measure(ctx, "scale", sp, e.pickDur(110*time.Second, 45*time.Second), func(ctx context.Context, c *cluster, r *row) error {
		r.Targets = []target{atMost("bytes", 2048), atMost("rss_mb", 300)}
		n := e.pick(100_000, 10_000)
		r.N = n
		heroes := newHeroes(n)
		start := time.Now()
		if err := c.Inject(ctx, cities[:1], heroes, 10_000); err != nil {
			return err
		}
		c.log.Info("injected", "heroes", n, "city", cities[0], "took", time.Since(start).Round(time.Millisecond))
		want, err := c.Digest(ctx, cities[0], 5*time.Second)
		if err != nil {
			return err
		}
		// Spread by the cluster, within a bound; what has not arrived by
		// then is injected directly so the rest can still be measured.
		sctx, cancel := context.WithTimeout(ctx, e.pickDur(40*time.Second, 12*time.Second))
		p := progress{log: c.log}
		st := stall{d: 8 * time.Second}
		err = localcluster.Poll(sctx, 100*time.Millisecond, func() (bool, error) {
			infos, _ := c.Digests(sctx, cities)
			done, total := 0, 0
			for _, info := range infos {
				total += info.Heroes
				if info.Fingerprint == want.Fingerprint {
					done++
				}
			}
			p.log2s("spreading", "cities_complete", done, "of", len(cities), "heroes_held", total)
			return done == len(cities), st.check(total)
		})
		cancel()
		if err == nil {
			r.set("spread_ms", ms(time.Since(start)))
		} else if ctx.Err() == nil {
			c.log.Warn("not spread; injecting into the other cities directly", "err", err)
			r.note("heroes not spread to every city (%v); injected into the rest directly", err)
			if err := c.Inject(ctx, cities[1:], heroes, 10_000); err != nil {
				return err
			}
			if _, err := c.AwaitConverged(ctx, cities, 100*time.Millisecond); err != nil {
				return err
			}
		}
		if err := idleBytes(ctx, e, c, r); err != nil {
			return err
		}

		// A new city joins and fills.
		name := fmt.Sprintf("city%02d", len(cities)+1)
		joined := time.Now()
		if _, err := c.StartCity(name); err != nil {
			return err
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		fst := stall{d: 8 * time.Second}
		answered, matched, err := c.AwaitReplica(fctx, name, 10*time.Millisecond, func(info localcluster.ReplicaInfo) (bool, error) {
			return info.Fingerprint == want.Fingerprint, fst.check(info.Heroes)
		})
		cancel()
		if !answered.IsZero() {
			r.set("join_ms", ms(answered.Sub(joined)))
		}
		if err != nil {
			r.note("new city %s did not fill: %v", name, err)
		} else {
			r.set("fill_ms", ms(matched.Sub(joined)))
		}

		var total, peak float64
		var count int
		var top string
		for _, nm := range append(append([]string{"dispatch"}, cities...), name) {
			mb, err := rss(c.Proc(nm).Pid())
			if err != nil {
				continue
			}
			if mb > peak {
				peak, top = mb, nm
			}
			if nm == "dispatch" {
				r.set("rss_dispatch_mb", mb)
			}
			total, count = total+mb, count+1
		}
		if count > 0 {
			r.set("rss_mb", peak)
			r.set("rss_mean_mb", total/float64(count))
			r.note("rss_mb is %s's", top)
		}
		r.note("join_ms/fill_ms: new city's process start to first answer / to a full replica")
		return nil
	})}
}

// idleBytes records the crdt bytes per anti-entropy round over a window
// with no writes: the cost of keeping equal replicas equal.
func idleBytes(ctx context.Context, e *env, c *cluster, r *row) error {
	window := e.pickDur(5*time.Second, 2*time.Second)
	before, err := sumStats(ctx, c)
	if err != nil {
		r.note("GetStats: %v", err)
		return nil
	}
	if err := sleepUntil(ctx, time.Now().Add(window)); err != nil {
		return err
	}
	after, err := sumStats(ctx, c)
	if err != nil {
		r.note("GetStats: %v", err)
		return nil
	}
	rounds, bytes := after.rounds-before.rounds, after.bytes-before.bytes
	r.set("idle_rounds", float64(rounds))
	r.set("idle_push_bytes", float64(after.pushBytes-before.pushBytes))
	if rounds == 0 {
		r.note("no anti-entropy round between cities in the %v idle window", window)
		return nil
	}
	r.set("bytes", float64(bytes)/float64(rounds))
	r.note("bytes: crdt payload per idle anti-entropy round between two cities (both directions)")
	return nil
}

type statSum struct{ rounds, bytes, pushBytes uint64 }

func sumStats(ctx context.Context, c *cluster) (statSum, error) {
	var s statSum
	for _, city := range c.spec.Cities {
		st, err := c.Stats(ctx, city)
		if err != nil {
			return s, fmt.Errorf("%s: %w", city, err)
		}
		s.rounds += st.GetSyncRounds()
		s.bytes += st.GetSyncBytes()
		s.pushBytes += st.GetPushBytes()
	}
	return s, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sleepUntil sleeps until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
