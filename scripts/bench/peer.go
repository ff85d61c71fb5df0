package main

// The peer scenario: NATS JetStream Key-Value, three servers, a bucket
// with three replicas, measured the way write_to_all and throughput
// measure this project, so that the rows compare.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/superhero-cluster/superhero/internal/localcluster"
)

const (
	peerServers = 3
	peerBucket  = "bench"
	peerValue   = 200 // bytes per value
)

// peerStorages are the bucket storages measured, one row each.
var peerStorages = []jetstream.StorageType{jetstream.FileStorage, jetstream.MemoryStorage}

func peerProtocol(st jetstream.StorageType) string {
	if st == jetstream.MemoryStorage {
		return "nats-kv-memory"
	}
	return "nats-kv-file"
}

// peer measures NATS JetStream KV (see peer_nats.go): a fresh three-node
// cluster per storage. Without a nats-server (no network to build one) it
// returns a row that says so, and the other scenarios run as usual.
func peer(ctx context.Context, e *env) []row {
	bin, err := natsServerBinary(ctx, e.log)
	if err != nil {
		e.log.Warn("peer skipped", "err", err)
		r := row{Scenario: "peer", Protocol: "skipped"}
		r.note("SKIPPED: %v", err)
		return []row{r}
	}
	var rows []row
	for _, st := range peerStorages {
		if ctx.Err() != nil {
			break
		}
		rows = append(rows, e.measurePeer(ctx, bin, st))
	}
	return rows
}

// measurePeer runs the peer measurements on a fresh cluster within a
// deadline; a failure or a panic becomes the row's error.
func (e *env) measurePeer(ctx context.Context, bin string, st jetstream.StorageType) (r row) {
	r = row{Scenario: "peer", Protocol: peerProtocol(st)}
	limit := e.pickDur(300*time.Second, 90*time.Second)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	log := e.log.With("scenario", "peer", "protocol", r.Protocol)
	out := newTail(256<<10, e.echo)
	defer func() {
		if v := recover(); v != nil {
			r.Err = fmt.Sprintf("panic: %v", v)
		}
		if r.Err != "" {
			log.Error("scenario failed", "err", r.Err)
			for _, l := range out.lines(30) {
				log.Info("nats output", "line", l)
			}
		}
	}()
	c, err := startNATS(ctx, bin, peerServers, log, out)
	if err != nil {
		r.Err = "nats cluster start: " + err.Error()
		return r
	}
	defer c.Stop()
	ours, err := startBeside(ctx, e, spec{Protocol: "default"}, log.With("side", "ours"), out)
	if err != nil {
		r.Err = "our cluster beside it: " + err.Error()
		return r
	}
	defer ours.Stop()
	if err := runPeer(ctx, e, c, ours, st, &r); err != nil {
		r.Err = err.Error()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.Err = fmt.Sprintf("deadline of %v: %v", limit, err)
		}
	}
	return r
}

// peerKV is the bucket as seen through each server.
type peerKV struct {
	c      *natsCluster
	stream string
	kvs    []jetstream.KeyValue // kvs[i] talks to server i
}

// runPeer measures the peer, and our default cluster running beside it
// (ours), the same way and in turns: a polled write of one, then of the
// other, and the loads in alternating slices. This machine's speed swings
// by 1.5x and more from one minute to the next; measured in turns, a
// spell falls on both, and the ratios hold. Our figures go into r as
// ours_<metric>.
func runPeer(ctx context.Context, e *env, c *natsCluster, ours *cluster, st jetstream.StorageType, r *row) error {
	b, err := createBucket(ctx, c, st)
	if err != nil {
		return err
	}
	leader, err := b.ready(ctx)
	if err != nil {
		return err
	}
	r.note("stream leader %s; single writes through %s; throughput clients spread over the %d servers", leader, c.names[0], len(c.names))
	value := bytes.Repeat([]byte("v"), peerValue)
	n := e.pick(200, 20)

	// Write → every node, each node's replica read every 1 ms, as
	// write_to_all probes every city.
	p := progress{log: c.log}
	var lat, api, olat, oapi []time.Duration
	for i := range n {
		for turn := range 2 {
			if (turn == 0) == (i%2 == 0) { // who goes first alternates
				w, err := b.putEverywhere(ctx, fmt.Sprintf("p.%d", i), value)
				if err != nil {
					return err
				}
				lat, api = append(lat, w.all), append(api, w.api)
				continue
			}
			w, err := writeEverywhere(ctx, ours, i, time.Millisecond)
			if err != nil {
				return fmt.Errorf("ours: %w", err)
			}
			olat, oapi = append(olat, w.all), append(oapi, w.api)
		}
		p.log2s("polled writes", "done", i+1, "of", n)
	}
	r.setLatency(lat)
	s := summarize(api)
	r.set("api_p50_ms", ms(s.P50))
	r.set("api_p99_ms", ms(s.P99))
	s = summarize(olat)
	r.set("ours_p50_ms", ms(s.P50))
	r.set("ours_p99_ms", ms(s.P99))
	s = summarize(oapi)
	r.set("ours_api_p50_ms", ms(s.P50))
	r.set("ours_api_p99_ms", ms(s.P99))

	// The same with a watcher through each server instead of reads.
	watched, err := b.watchEverywhere(ctx, n, value)
	if err != nil {
		return err
	}
	s = summarize(watched)
	r.set("watch_p50_ms", ms(s.P50))
	r.set("watch_p99_ms", ms(s.P99))

	return b.throughput(ctx, e, ours, len(olat), value, r)
}

// createBucket creates the bucket with three replicas, retrying while the
// fresh cluster is not yet ready to place it.
func createBucket(ctx context.Context, c *natsCluster, st jetstream.StorageType) (*peerKV, error) {
	cfg := jetstream.KeyValueConfig{Bucket: peerBucket, Replicas: peerServers, Storage: st, History: 1}
	var lastErr error
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := localcluster.Poll(cctx, 100*time.Millisecond, func() (bool, error) {
		js, err := jetstream.New(c.conns[0])
		if err != nil {
			return false, err
		}
		_, lastErr = js.CreateKeyValue(cctx, cfg)
		return lastErr == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket: %w (last: %v)", err, lastErr)
	}
	b := &peerKV{c: c, stream: "KV_" + peerBucket}
	for _, nc := range c.conns {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, err
		}
		kv, err := js.KeyValue(ctx, peerBucket)
		if err != nil {
			return nil, err
		}
		b.kvs = append(b.kvs, kv)
	}
	return b, nil
}

// ready waits until every replica answers reads of a first write (a
// follower serves direct gets only once it has caught up) and returns the
// stream leader's name.
func (b *peerKV) ready(ctx context.Context) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// A follower that has not caught up yet has no responder for direct
	// gets: that is "not yet", until the bound.
	err := localcluster.Poll(rctx, 10*time.Millisecond, func() (bool, error) {
		_, err := b.putEverywhere(rctx, "warmup", []byte("x"))
		if errors.Is(err, nats.ErrNoResponders) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return "", fmt.Errorf("replicas not serving reads: %w", err)
	}
	js, err := jetstream.New(b.c.conns[0])
	if err != nil {
		return "", err
	}
	s, err := js.Stream(ctx, b.stream)
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return "", fmt.Errorf("stream info: %w", err)
	}
	return info.Cluster.Leader, nil
}

// putEverywhere puts key through server 0 and reads it through every
// server every millisecond until each one has it; both times count from
// the put.
func (b *peerKV) putEverywhere(ctx context.Context, key string, value []byte) (written, error) {
	start := time.Now()
	if _, err := b.kvs[0].Put(ctx, key, value); err != nil {
		return written{}, fmt.Errorf("put %s: %w", key, err)
	}
	w := written{api: time.Since(start)}
	seen := make([]time.Time, len(b.kvs))
	errs := make([]error, len(b.kvs))
	var wg sync.WaitGroup
	for j, kv := range b.kvs {
		wg.Go(func() {
			errs[j] = localcluster.Poll(ctx, time.Millisecond, func() (bool, error) {
				gctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond) // as our probes'
				_, err := kv.Get(gctx, key)
				cancel()
				switch {
				case err == nil:
					seen[j] = time.Now()
					return true, nil
				case errors.Is(err, jetstream.ErrKeyNotFound):
					return false, nil
				default:
					return false, fmt.Errorf("get %s through %s: %w", key, b.c.names[j], err)
				}
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return w, err
	}
	w.all = slices.MaxFunc(seen, func(a, b time.Time) int { return a.Compare(b) }).Sub(start)
	return w, nil
}

// sighting is a watcher's first sight of a key.
type sighting struct {
	server int
	key    string
	at     time.Time
}

// watchEverywhere starts a watcher through every server, then puts n keys
// one after another, each once every watcher has seen the one before, and
// returns the times from each put until the last watcher saw it.
//
// A watcher is an ephemeral ordered consumer; the server places it on a
// replica of its choosing, not necessarily the one it is connected to.
func (b *peerKV) watchEverywhere(ctx context.Context, n int, value []byte) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sightings := make(chan sighting, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for j, kv := range b.kvs {
		w, err := kv.Watch(ctx, "w.>", jetstream.UpdatesOnly())
		if err != nil {
			return nil, fmt.Errorf("watch through %s: %w", b.c.names[j], err)
		}
		wg.Go(func() {
			defer func() { _ = w.Stop() }()
			for {
				select {
				case <-ctx.Done():
					return
				case en, ok := <-w.Updates():
					if !ok {
						return
					}
					if en == nil {
						continue // the end of the initial values
					}
					select {
					case sightings <- sighting{server: j, key: en.Key(), at: time.Now()}:
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	lat := make([]time.Duration, 0, n)
	p := progress{log: b.c.log}
	for i := range n {
		key := fmt.Sprintf("w.%d", i)
		start := time.Now()
		if _, err := b.kvs[0].Put(ctx, key, value); err != nil {
			return nil, fmt.Errorf("put %s: %w", key, err)
		}
		seen := make([]time.Time, len(b.kvs))
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		for missing := len(seen); missing > 0; {
			select {
			case s := <-sightings:
				if s.key == key && seen[s.server].IsZero() {
					seen[s.server] = s.at
					missing--
				}
			case <-wctx.Done():
				wcancel()
				return nil, fmt.Errorf("watchers did not all see %s: %w", key, wctx.Err())
			}
		}
		wcancel()
		lat = append(lat, slices.MaxFunc(seen, func(a, b time.Time) int { return a.Compare(b) }).Sub(start))
		p.log2s("watched writes", "done", i+1, "of", n)
	}
	return lat, nil
}

// throughput: acknowledged puts per second from 16 clients, then from 64
// (as our throughput row), each its own connection, spread over the
// servers; server CPU per write; then every acknowledged key must be in
// every replica. Ours (which already holds polled heroes, counted in its
// delivery check) takes turns with it, slice by slice.
func (b *peerKV) throughput(ctx context.Context, e *env, ours *cluster, polled int, value []byte, r *row) error {
	dur := e.pickDur(10*time.Second, 2*time.Second)
	slice := dur / throughputSlices
	var (
		keys   []string
		ids    []string
		maxRev uint64
	)
	for _, clients := range []int{loadClients, saturatingClients} {
		var l peerLoad
		var o loadTotal
		for sl := range throughputSlices {
			for turn := range 2 {
				if (turn == 0) == (sl%2 == 0) { // ABBA...
					part, err := b.load(ctx, clients, slice, value)
					if err != nil {
						return err
					}
					l.add(part)
					continue
				}
				cpu0 := ours.cpu()
				res := runLoad(ctx, ours.log, ours.API(), clients, slice, 0)
				o.add(res, ours.cpu().since(cpu0))
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		keys, maxRev = append(keys, l.keys...), max(maxRev, l.maxRev)
		ids = append(ids, o.res.ids...)
		sfx := suffix(clients)
		r.set("per_s"+sfx, float64(len(l.keys))/l.elapsed.Seconds())
		s := summarize(l.lat)
		r.set("load_p50_ms"+sfx, ms(s.P50))
		r.set("load_p99_ms"+sfx, ms(s.P99))
		r.set("errors"+sfx, float64(l.failed))
		r.set("cores_servers"+sfx, l.servers/l.elapsed.Seconds())
		r.set("cores_bench"+sfx, l.bench/l.elapsed.Seconds())
		if len(l.keys) > 0 {
			r.set("cpu_us_per_write"+sfx, l.servers*1e6/float64(len(l.keys))) // as throughput's
		}
		b.c.log.Info("load done", "clients", clients, "acked", len(l.keys), "per_s", int(float64(len(l.keys))/l.elapsed.Seconds()), "errors", l.failed)

		r.set("ours_per_s"+sfx, o.res.perSecond())
		s = summarize(o.res.lat)
		r.set("ours_load_p50_ms"+sfx, ms(s.P50))
		r.set("ours_load_p99_ms"+sfx, ms(s.P99))
		r.set("ours_errors"+sfx, float64(o.res.failed))
		nodes := 0.0
		for name, v := range o.used {
			if name != "bench" {
				nodes += v
			}
		}
		if n := len(o.res.ids); n > 0 {
			r.set("ours_cpu_us_per_write"+sfx, nodes*1e6/float64(n))
		}
		ours.log.Info("load done", "clients", clients, "acked", len(o.res.ids), "per_s", int(o.res.perSecond()), "errors", o.res.failed)
	}
	var delivered row
	if err := e.checkDelivered(ctx, ours, &delivered, ids, polled); err != nil {
		return fmt.Errorf("ours: %w", err)
	}
	for _, name := range []string{"lost", "replicas_equal", "converge_ms"} {
		if v, ok := delivered.get(name); ok {
			r.set("ours_"+name, v)
		}
	}
	// Bounded wait until every replica holds the last acknowledged
	// sequence, then read each replica whole and look for every key.
	waited := time.Now()
	cctx, cancel := context.WithTimeout(ctx, e.pickDur(20*time.Second, 10*time.Second))
	err := localcluster.Poll(cctx, 100*time.Millisecond, func() (bool, error) {
		for _, nc := range b.c.conns {
			if ok, err := hasSeq(cctx, nc, b.stream, maxRev); !ok || err != nil {
				return false, nil
			}
		}
		return true, nil
	})
	cancel()
	if err == nil {
		r.set("converge_ms", ms(time.Since(waited)))
	} else {
		r.note("not every replica held the last acknowledged write within the wait")
	}
	missing := map[string]bool{}
	prefix := "$KV." + peerBucket + "."
	for i, nc := range b.c.conns {
		held := make(map[string]bool, len(keys))
		if err := scanReplica(ctx, nc, b.stream, func(subject string) { held[strings.TrimPrefix(subject, prefix)] = true }); err != nil {
			return fmt.Errorf("reading %s's replica: %w", b.c.names[i], err)
		}
		for _, k := range keys {
			if !held[k] {
				missing[k] = true
			}
		}
	}
	r.set("lost", float64(len(missing)))
	r.note("per_s/lost: %d clients' acknowledged puts for %v, then %d clients' (metrics ending _%d), each key then looked for in every replica", loadClients, dur, saturatingClients, saturatingClients)
	r.note("ours_*: our default cluster running beside it, measured the same way in turns (polled writes one each, loads in %d slices each, ABBA)", throughputSlices)
	return nil
}

// peerLoad is what one load of puts did.
type peerLoad struct {
	keys           []string // acknowledged puts
	lat            []time.Duration
	failed         int
	maxRev         uint64 // the highest acknowledged revision
	elapsed        time.Duration
	servers, bench float64 // CPU seconds used meanwhile
}

// add sums another slice of the same load into l.
func (l *peerLoad) add(o peerLoad) {
	l.keys, l.lat = append(l.keys, o.keys...), append(l.lat, o.lat...)
	l.failed += o.failed
	l.maxRev = max(l.maxRev, o.maxRev)
	l.elapsed += o.elapsed
	l.servers, l.bench = l.servers+o.servers, l.bench+o.bench
}

// load runs clients clients putting keys for dur, each on its own
// connection, spread over the servers.
func (b *peerKV) load(ctx context.Context, clients int, dur time.Duration, value []byte) (peerLoad, error) {
	var l peerLoad
	kvs := make([]jetstream.KeyValue, clients)
	for w := range kvs {
		nc, err := b.c.dial(ctx, w%len(b.c.conns))
		if err != nil {
			return l, err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return l, err
		}
		if kvs[w], err = js.KeyValue(ctx, peerBucket); err != nil {
			return l, err
		}
	}
	var (
		mu    sync.Mutex
		acked atomic.Int64
		wg    sync.WaitGroup
	)
	cpu0, err := procsCPU(b.c.pids())
	if err != nil {
		return l, err
	}
	bench0, _ := cpuSeconds(os.Getpid())
	start := time.Now()
	stop := start.Add(dur)
	for w, kv := range kvs {
		wg.Go(func() {
			var mine []string
			var times []time.Duration
			var top uint64
			bad := 0
			for i := 0; time.Now().Before(stop) && ctx.Err() == nil; i++ {
				key := fmt.Sprintf("l%d.%d.%d", clients, w, i)
				t := time.Now()
				rev, err := kv.Put(ctx, key, value)
				if err != nil {
					if ctx.Err() == nil {
						bad++ // not one cut short by the end of the run, as runLoad counts
					}
					continue
				}
				mine, times, top = append(mine, key), append(times, time.Since(t)), max(top, rev)
				acked.Add(1)
			}
			mu.Lock()
			l.keys, l.lat, l.failed, l.maxRev = append(l.keys, mine...), append(l.lat, times...), l.failed+bad, max(l.maxRev, top)
			mu.Unlock()
		})
	}
	for last, lastN := start, int64(0); time.Now().Before(stop) && ctx.Err() == nil; {
		if err := sleepUntil(ctx, time.Now().Add(100*time.Millisecond)); err != nil {
			break
		}
		if since := time.Since(last); since >= 2*time.Second {
			n := acked.Load()
			b.c.log.Info("load running", "clients", clients, "acked", n, "per_s", int(float64(n-lastN)/since.Seconds()))
			last, lastN = time.Now(), n
		}
	}
	wg.Wait()
	l.elapsed = time.Since(start)
	cpu1, err := procsCPU(b.c.pids())
	if err != nil {
		return l, err
	}
	bench1, _ := cpuSeconds(os.Getpid())
	l.servers, l.bench = cpu1-cpu0, bench1-bench0
	b.c.log.Debug("load slice done", "clients", clients, "acked", len(l.keys), "per_s", int(float64(len(l.keys))/l.elapsed.Seconds()), "errors", l.failed)
	return l, nil
}

// procsCPU returns the CPU seconds the processes have used together.
func procsCPU(pids []int) (float64, error) {
	var sum float64
	for _, pid := range pids {
		s, err := cpuSeconds(pid)
		if err != nil {
			return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
		}
		sum += s
	}
	return sum, nil
}

// comparison is one figure of the side-by-side table: its label, the
// scenario whose default-protocol row holds ours, and how to read it from
// a row (ours and the peer's alike), named for the ratio_<name> metric.
type comparison struct {
	label, ourScenario, name string
	value                    func(*row) (float64, bool)
}

func metricOf(name string) func(*row) (float64, bool) {
	return func(r *row) (float64, bool) { return r.get(name) }
}

// perCore is acknowledged writes per second of one server core: the
// inverse of the server CPU per write, of the load whose metrics end in
// sfx.
func perCore(sfx string) func(*row) (float64, bool) {
	return func(r *row) (float64, bool) {
		us, ok := r.get("cpu_us_per_write" + sfx)
		if !ok || us <= 0 {
			return 0, false
		}
		return 1e6 / us, true
	}
}

var comparisons = []comparison{
	{"create (ours) / put (peer) p50 ms, as acknowledged", "write_to_all", "api_p50_ms", metricOf("api_p50_ms")},
	{"write → every node p50 ms, read every 1 ms", "write_to_all", "p50_ms", metricOf("p50_ms")},
	{"write → every node p99 ms, read every 1 ms", "write_to_all", "p99_ms", metricOf("p99_ms")},
	{"acknowledged writes/s, 16 clients", "throughput", "per_s", metricOf("per_s")},
	{"acknowledged writes/s per server core, 16 clients", "throughput", "per_s_per_core", perCore("")},
	{"server CPU µs per acknowledged write, 16 clients", "throughput", "cpu_us_per_write", metricOf("cpu_us_per_write")},
	{"acknowledged writes/s, 64 clients", "throughput", "per_s_64", metricOf("per_s_64")},
	{"acknowledged writes/s per server core, 64 clients", "throughput", "per_s_per_core_64", perCore("_64")},
	{"server CPU µs per acknowledged write, 64 clients", "throughput", "cpu_us_per_write_64", metricOf("cpu_us_per_write_64")},
}

// peerRatios returns, for every peer row without an error, a row of the
// ratios ours / peer of the compared figures (ratio_<metric>), from our
// default-protocol write_to_all and throughput rows among rows. Figures
// either side lacks are left out, and so is a row without any.
func peerRatios(rows []row) []row {
	var out []row
	for _, p := range rows {
		if p.Scenario != "peer" || p.Err != "" || p.Protocol == "skipped" {
			continue
		}
		r := row{Scenario: "peer_ratio", Protocol: "ours/" + p.Protocol}
		for _, cmp := range comparisons {
			o, ok1 := ourFigure(rows, cmp, &p)
			v, ok2 := cmp.value(&p)
			if ok1 && ok2 && v > 0 {
				r.set("ratio_"+cmp.name, o/v)
			}
		}
		if len(r.Metrics) > 0 {
			r.note("ours / peer: below 1 favours ours for times and CPU, above 1 for writes/s")
			out = append(out, r)
		}
	}
	return out
}

// ourFigure returns our figure to set beside peer's: the one measured
// beside it (its ours_<metric> metrics) when it has them, else the one
// from our own scenario's row.
func ourFigure(rows []row, cmp comparison, peer *row) (float64, bool) {
	if beside, ok := oursBeside(peer); ok {
		return cmp.value(&beside)
	}
	for _, r := range rows {
		if r.Scenario == cmp.ourScenario && r.Protocol == "default" && r.Err == "" {
			return cmp.value(&r)
		}
	}
	return 0, false
}

// oursBeside returns our figures measured beside the peer row p (its
// ours_<metric> metrics, renamed <metric>), if it has any.
func oursBeside(p *row) (row, bool) {
	var out row
	for _, m := range p.Metrics {
		if name, ok := strings.CutPrefix(m.Name, "ours_"); ok {
			out.set(name, m.Value)
		}
	}
	return out, len(out.Metrics) > 0
}

// writeSideBySide prints the compared figures of every peer row beside
// ours (measured beside it when the row holds them, else from our own
// rows), with the ratio ours / peer; the peer's other figures (watchers,
// lost writes) are in its row.
func writeSideBySide(w io.Writer, rows []row) error {
	var peers []row
	for _, r := range rows {
		if r.Scenario == "peer" && r.Err == "" && r.Protocol != "skipped" {
			peers = append(peers, r)
		}
	}
	if len(peers) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"side by side"}
	for _, p := range peers {
		head = append(head, "ours", p.Protocol, "ours/peer")
	}
	fmt.Fprintln(tw, "\n"+strings.Join(head, "\t"))
	missing := false
	for _, cmp := range comparisons {
		cells := []string{cmp.label}
		for _, p := range peers {
			o, ok := ourFigure(rows, cmp, &p)
			missing = missing || !ok
			v, okp := cmp.value(&p)
			cells = append(cells, dash(ok, formatValue(o)), dash(okp, formatValue(v)), dash(ok && okp && v > 0, formatValue(o/v)))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if missing {
		_, err := fmt.Fprintln(w, "  ours: run with -scenarios peer,write_to_all,throughput for every figure")
		return err
	}
	return nil
}
