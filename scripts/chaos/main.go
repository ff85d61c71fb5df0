// Command chaos is the cluster's Jepsen-style soak: it starts dispatch and
// the cities as real processes on free loopback ports, runs clients that
// create, assign, terminate and read heroes through dispatch's HTTP API and
// WebSocket, while a nemesis on a seeded schedule bombs and kills cities,
// kills dispatch and freezes nodes. It records every operation (invoke,
// then ok, fail or unknown) and every fault window, measures how long the
// replicas take to converge after the last fault, reads every replica
// whole, and hands the run to the checker (internal/chaos).
//
//	go run ./scripts/chaos [-duration 60s] [-seed N] [-clients 8] [-rate 200] [-out DIR] [-json] [-net]
//
// With -net (as root, with nftables and etcd) the same soak runs in the
// network lab (internal/netlab; lab.go): a host per node, etcd discovery,
// mutual TLS, and network faults besides (a city cut away, dispatch cut
// away, the cluster split in two, packets dropped) and a node restarted
// with a skewed clock. The cities' replicas are read by a member agent,
// this binary run again inside the lab (agent.go).
//
// The checker's table (or -json, its summary) goes to stdout, progress to
// stderr. The exit status is 1 when the checker reports an anomaly or the
// soak itself fails, 2 for bad flags.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/superhero-cluster/superhero/internal/chaos"
	"github.com/superhero-cluster/superhero/internal/localcluster"
	"github.com/superhero-cluster/superhero/internal/proc"
)

func main() {
	// The cluster library's health server prints a banner to os.Stdout
	// when the member starts; keep stdout for the report.
	stdout := os.Stdout
	os.Stdout = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == agentCommand {
		err = runAgent(ctx, os.Args[2:], os.Stderr)
	} else {
		err = run(ctx, os.Args[1:], stdout, os.Stderr)
	}
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

// usageError is a bad flag.
type usageError struct{ error }

// errAnomalies is returned when the checker found anomalies.
var errAnomalies = errors.New("the checker reported anomalies")

// options are the command's flags.
type options struct {
	duration, heal, timeout, progress time.Duration
	seed                              uint64
	clients, wsClients, heroes        int
	rate                              float64
	out                               string
	asJSON, net, verbose              bool
	bin, check                        string
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "how long the clients run")
	fs.DurationVar(&o.heal, "heal", 20*time.Second, "faults stop this long before the end; the cluster then has as long to converge")
	fs.Uint64Var(&o.seed, "seed", uint64(time.Now().UnixNano()), "seed of the nemesis's schedule and the clients' choices")
	fs.IntVar(&o.clients, "clients", 8, "workload clients")
	fs.IntVar(&o.wsClients, "ws-clients", -1, "how many of the clients send their writes over the WebSocket (default a quarter)")
	fs.Float64Var(&o.rate, "rate", 200, "target operations per second, all clients together")
	fs.IntVar(&o.heroes, "heroes", 100, "live heroes the workload aims to keep (more contention with fewer)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "per-request timeout of the clients")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "how often to log progress")
	fs.StringVar(&o.out, "out", "", "directory for history.jsonl, run.json, latency.svg and nodes.log")
	fs.BoolVar(&o.asJSON, "json", false, "print the checker's JSON summary instead of its table")
	fs.BoolVar(&o.net, "net", false, "run in the network lab (root, nftables, etcd): the nodes on hosts of their own, with etcd and mutual TLS, and network faults and skewed clocks besides")
	fs.BoolVar(&o.verbose, "v", false, "copy the nodes' output to stderr")
	fs.StringVar(&o.check, "check", "", "check the run saved in this -out directory again, without running anything")
	fs.StringVar(&o.bin, "bin", "", "where to build the node binaries (default: a cache folder of this checkout)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return o, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	case o.duration <= 0 || o.heal < 0 || o.heal >= o.duration:
		return o, usageError{fmt.Errorf("-heal (%v) must be shorter than -duration (%v)", o.heal, o.duration)}
	case o.clients <= 0 || o.rate <= 0 || o.timeout <= 0 || o.heroes <= 0:
		return o, usageError{errors.New("-clients, -rate, -timeout and -heroes must be positive")}
	}
	if o.wsClients < 0 {
		o.wsClients = o.clients / 4
	}
	o.wsClients = min(o.wsClients, o.clients)
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if o.check != "" {
		result, err := load(o.check)
		if err != nil {
			return err
		}
		return output(stdout, o, result, append([]string{dispatchName}, localcluster.DefaultCities...))
	}
	if o.net {
		// Before the build: say at once what the lab lacks.
		if err := labAvailable(); err != nil {
			return err
		}
	}
	log.Info("chaos", "seed", o.seed, "duration", o.duration, "heal", o.heal, "clients", o.clients, "ws_clients", o.wsClients, "rate", o.rate, "net", o.net)

	bin, err := build(ctx, o.bin, log)
	if err != nil {
		return err
	}
	var env soakEnv
	if o.net {
		dir := filepath.Join(o.out, "lab")
		if o.out == "" {
			if dir, err = os.MkdirTemp("", "chaos-lab-"); err != nil {
				return err
			}
		}
		lc, err := startLab(ctx, bin, dir, localcluster.DefaultCities, log)
		if err != nil {
			return err
		}
		defer func() {
			if err := lc.close(); err != nil {
				log.Error("removing the lab", "err", err)
			}
			log.Info("lab removed", "logs", dir)
		}()
		env = soakEnv{
			cities: lc.cities, base: "http://" + lc.httpAddr(), token: lc.token, dial: lc.dial,
			target: lc.target(), obs: lc.observer(), net: true, notRunning: lc.notRunning,
		}
	} else {
		nodeOut, closeOut, err := nodeOutput(o, stderr)
		if err != nil {
			return err
		}
		defer closeOut()
		c, err := localcluster.Start(ctx, bin, localcluster.Spec{Member: "chaos", LogLevel: "info"}, log, nodeOut)
		if err != nil {
			return fmt.Errorf("start the cluster: %w", err)
		}
		defer func() {
			c.Stop()
			<-c.Left()
		}()
		env = soakEnv{
			cities: c.Spec().Cities, base: "http://" + c.HTTPAddr(),
			target: newLocalTarget(c), obs: newLocalObserver(c), notRunning: func() map[string]string {
				out := map[string]string{}
				for name, p := range c.Procs() {
					select {
					case <-p.Done():
						out[name] = fmt.Sprintf("exit %d", p.ExitCode())
					default:
					}
				}
				return out
			},
		}
	}

	result, err := soak(ctx, o, env, log)
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := save(o.out, result); err != nil {
			return err
		}
		log.Info("saved", "dir", o.out)
	}
	return output(stdout, o, result, append([]string{dispatchName}, env.cities...))
}

// soakEnv is the cluster a soak runs against: on loopback, or in the lab.
type soakEnv struct {
	cities []string
	// base is dispatch's URL; token its API token ("" for none); dial
	// connects the clients (nil: this process's network).
	base, token string
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	target      Target
	obs         *observer
	// net draws the lab's faults too.
	net bool
	// notRunning names the nodes whose process has exited, with how.
	notRunning func() map[string]string
}

// output checks the run and prints the checker's table or JSON summary;
// with -out it saves the summary and the latency picture too. The
// replicas are dispatch and the cities; they must converge within the
// heal period.
func output(stdout io.Writer, o options, result chaos.Run, replicas []string) error {
	report := chaos.Check(result, chaos.CheckConfig{Replicas: replicas, ConvergeBound: o.heal})
	if dir := o.out; dir != "" {
		b, err := json.MarshalIndent(report.Summary(), "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644); err != nil {
			return err
		}
		if err := chaos.Plot(result, filepath.Join(dir, "latency.svg")); err != nil {
			return err
		}
	}
	var err error
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(report.Summary())
	} else {
		if o.check != "" {
			fmt.Fprintf(stdout, "chaos soak: seed %d, checked again from %s\n", result.Seed, o.check)
		} else {
			fmt.Fprintf(stdout, "chaos soak: seed %d, %v, %d clients (%d WebSocket), %.0f ops/s target\n", result.Seed, o.duration, o.clients, o.wsClients, o.rate)
		}
		err = report.Table(stdout)
	}
	if err != nil {
		return err
	}
	if !report.OK() {
		return errAnomalies
	}
	return nil
}

// soak runs the workload and the nemesis, then measures convergence and
// reads every replica.
func soak(ctx context.Context, o options, env soakEnv, log *slog.Logger) (chaos.Run, error) {
	start := time.Now()
	now := func() time.Duration { return time.Since(start) }
	rec := chaos.NewRecorder(now)
	cities := env.cities

	w := newWorkload(workloadConfig{
		Base: env.base, Clients: o.clients, WSClients: o.wsClients, Rate: o.rate,
		Timeout: o.timeout, Heroes: o.heroes, Cities: cities, Seed: o.seed,
		Token: env.token, Dial: env.dial,
	}, rec)
	faultsUntil := o.duration - o.heal
	steps := plan(o.seed, cities, 3*time.Second, faultsUntil, env.net)
	log.Info("schedule", "steps", len(steps), "first", firstSteps(steps, 3))
	nem := newNemesis(env.target, log.With("part", "nemesis"), now, 30*time.Second)

	wctx, stopWorkload := context.WithTimeout(ctx, o.duration)
	defer stopWorkload()
	var wg sync.WaitGroup
	wg.Go(func() { w.run(wctx) })
	nemDone := make(chan struct{})
	wg.Go(func() {
		defer close(nemDone)
		nem.run(ctx, steps, faultsUntil)
	})
	progressDone := make(chan struct{})
	var pg sync.WaitGroup
	pg.Go(func() { reportProgress(ctx, progressDone, o.progress, now, rec, nem, log) })
	defer func() {
		close(progressDone)
		pg.Wait()
	}()

	// Every replica is compared all through the run; after the last
	// fault, the first time they were equal is the convergence.
	obs := env.obs
	var cv convergence
	cctx, stopWatching := context.WithCancel(ctx)
	var watcher sync.WaitGroup
	watcher.Go(func() { cv.watch(cctx, obs, cities, now, 200*time.Millisecond) })
	defer func() {
		stopWatching()
		watcher.Wait()
	}()
	var lastHeal, converged time.Duration
	select {
	case <-nemDone:
	case <-ctx.Done():
	}
	faults, _ := nem.record()
	for _, f := range faults {
		lastHeal = max(lastHeal, f.End)
	}
	if ctx.Err() == nil {
		bctx, cancel := context.WithTimeout(ctx, o.heal+5*time.Second)
		var diffs []string
		err := localcluster.Poll(bctx, 100*time.Millisecond, func() (bool, error) {
			at, d, ok := cv.since(lastHeal)
			converged, diffs = at, d
			return ok, nil
		})
		cancel()
		if err == nil {
			log.Info("converged", "after_last_heal", (converged - lastHeal).Round(time.Millisecond))
		} else if ctx.Err() == nil {
			log.Error("not converged", "after_last_heal", (now() - lastHeal).Round(time.Millisecond), "differences", len(diffs), "first", firstOf(diffs, 5))
		}
	}
	stopWatching()
	watcher.Wait()
	wg.Wait()
	rec.CloseOpen()
	if err := ctx.Err(); err != nil {
		return chaos.Run{}, fmt.Errorf("interrupted: %w", err)
	}
	log.Info("workload done", "ops", len(rec.Events())/2)

	// The workload has stopped: read every replica whole.
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	finals, diffs, err := obs.finals(fctx, cities, w.pool.ids(), now)
	cancel()
	if err != nil {
		return chaos.Run{}, fmt.Errorf("final reads: %w", err)
	}
	if len(diffs) > 0 {
		log.Error("final replicas differ", "differences", len(diffs), "first", firstOf(diffs, 5))
	}
	for name, how := range env.notRunning() {
		log.Error("node not running at the end", "node", name, "exit", how)
	}
	faults, _ = nem.record()
	return chaos.Run{
		Seed: o.seed, History: rec.Events(), Faults: faults,
		LastHeal: lastHeal, Converged: converged, Finals: finals,
	}, nil
}

// reportProgress logs elapsed time, operations, outcomes and faults every
// interval until done is closed.
func reportProgress(ctx context.Context, done <-chan struct{}, every time.Duration, now func() time.Duration, rec *chaos.Recorder, nem *nemesis, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		counts := map[chaos.Outcome]int{}
		for _, e := range rec.Events() {
			counts[e.Outcome]++
		}
		faults, active := nem.record()
		log.Info("progress", "elapsed", now().Round(time.Second), "ops", counts[chaos.Invoke],
			"ok", counts[chaos.OK], "fail", counts[chaos.Fail], "unknown", counts[chaos.Unknown],
			"faults", len(faults), "active", active, "now", nem.activeNames())
	}
}

// build compiles the node binaries into dir, by default a cache folder
// of this checkout (so worktrees do not share binaries); the go command
// rebuilds only what changed.
func build(ctx context.Context, dir string, log *slog.Logger) (string, error) {
	root, err := proc.ModuleRoot()
	if err != nil {
		return "", err
	}
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256([]byte(root))
		dir = filepath.Join(cache, "superhero-cluster", "chaos-"+hex.EncodeToString(sum[:6]))
	}
	start := time.Now()
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := proc.Build(bctx, root, dir); err != nil {
		return "", err
	}
	log.Info("built node binaries", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	return dir, nil
}

// nodeOutput is where the nodes' log lines go: DIR/nodes.log with -out,
// stderr with -v, else nowhere.
func nodeOutput(o options, stderr io.Writer) (io.Writer, func(), error) {
	var ws []io.Writer
	closeFn := func() {}
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return nil, nil, err
		}
		f, err := os.Create(filepath.Join(o.out, "nodes.log"))
		if err != nil {
			return nil, nil, err
		}
		ws, closeFn = append(ws, f), func() { _ = f.Close() }
	}
	if o.verbose {
		ws = append(ws, stderr)
	}
	return &lockedWriter{w: io.MultiWriter(ws...)}, closeFn, nil
}

// lockedWriter serialises writes from the nodes' output copiers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// save writes the history and the run into dir.
func save(dir string, run chaos.Run) error {
	f, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return err
	}
	if err := chaos.WriteHistory(f, run.History); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "run.json"), b, 0o644)
}

// load reads a run saved by save.
func load(dir string) (chaos.Run, error) {
	var run chaos.Run
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		return run, err
	}
	if err := json.Unmarshal(b, &run); err != nil {
		return run, fmt.Errorf("%s: %w", dir, err)
	}
	f, err := os.Open(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return run, err
	}
	defer f.Close()
	run.History, err = chaos.ReadHistory(f)
	return run, err
}

func firstSteps(steps []step, n int) string {
	var parts []string
	for _, s := range steps[:min(n, len(steps))] {
		var fs []string
		for _, f := range s.Faults {
			fs = append(fs, f.String())
		}
		parts = append(parts, fmt.Sprintf("%v: %s", s.At.Round(time.Millisecond), strings.Join(fs, " + ")))
	}
	return strings.Join(parts, "; ")
}

func firstOf(xs []string, n int) []string { return xs[:min(n, len(xs))] }
