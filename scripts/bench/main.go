// Command bench measures the Superhero Cluster on this machine: it builds
// the node binaries once, starts a fresh cluster of real node processes on
// free loopback ports for every scenario and protocol, joins it as a
// cluster member for probes, and prints a table of results (or, with
// -json, one JSON object per line and row).
//
//	go run ./scripts/bench [-quick] [-json] [-scenarios write_to_all,limit]
//
// The peer scenario (NATS JetStream KV, see peer.go) builds nats-server
// first, so a -quick run leaves it out unless -scenarios names it.
//
// Progress goes to stderr. Every scenario has a hard deadline; one that
// misses it reports an error row and the run goes on. The exit status is
// non-zero only when the harness itself fails (cannot build, cannot start
// a cluster), never for a missed target.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/superhero-cluster/superhero/internal/proc"
)

// scenarios in the order they run.
var scenarios = []struct {
	name string
	run  func(context.Context, *env) []row
}{
	{"write_to_all", writeToAll},
	{"city_change_to_page", cityChangeToPage},
	{"bomb_refill", bombRefill},
	{"kill_restart", killRestart},
	{"limit", limit},
	{"http_floor", httpFloor},
	{"throughput", throughput},
	{"write_to_all_loaded", writeToAllLoaded},
	{"scale", scale},
	{"fanout", fanout},
	{"peer", peer},
}

// notQuick are the scenarios a -quick run leaves out unless -scenarios
// names them.
var notQuick = []string{"peer"}

func main() {
	// The library's health server prints a banner to os.Stdout when a
	// member starts; keep stdout for the results alone.
	stdout := os.Stdout
	os.Stdout = os.Stderr
	os.Exit(run(os.Args[1:], stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "small, fast run (CI)")
	asJSON := fs.Bool("json", false, "print one JSON object per line instead of a table")
	only := fs.String("scenarios", "", "comma-separated scenarios to run (default all)")
	verbose := fs.Bool("v", false, "copy the node processes' output to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	selected, err := selectScenarios(*only, *quick)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	e := &env{quick: *quick, log: log}
	if *verbose {
		e.echo = stderr
	}
	if e.bin, err = build(ctx, log); err != nil {
		log.Error("build failed", "err", err)
		return 1
	}
	defer os.RemoveAll(e.bin)

	var rows []row
	for _, sc := range scenarios {
		if !slices.Contains(selected, sc.name) || ctx.Err() != nil {
			continue
		}
		t := time.Now()
		log.Info("scenario", "name", sc.name)
		rows = append(rows, sc.run(ctx, e)...)
		log.Info("scenario done", "name", sc.name, "took", time.Since(t).Round(time.Millisecond))
	}
	rows = append(rows, peerRatios(rows)...)
	log.Info("bench done", "took", time.Since(start).Round(time.Millisecond), "rows", len(rows))

	if *asJSON {
		err = writeJSON(stdout, rows)
	} else if err = writeTable(stdout, rows); err == nil {
		err = writeSideBySide(stdout, rows)
	}
	if err != nil {
		log.Error("output", "err", err)
		return 1
	}
	if e.startFailures.Load() > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}

func selectScenarios(list string, quick bool) ([]string, error) {
	var all, def []string
	for _, sc := range scenarios {
		all = append(all, sc.name)
		if !quick || !slices.Contains(notQuick, sc.name) {
			def = append(def, sc.name)
		}
	}
	if list == "" {
		return def, nil
	}
	var out []string
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(all, name) {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", name, strings.Join(all, ", "))
		}
		out = append(out, name)
	}
	return out, nil
}

// build compiles the node binaries into a new temporary directory.
func build(ctx context.Context, log *slog.Logger) (string, error) {
	root, err := proc.ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "superhero-bench-")
	if err != nil {
		return "", err
	}
	start := time.Now()
	log.Info("building node binaries", "dir", dir)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := proc.Build(ctx, root, dir, floorBinary); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	log.Info("built", "took", time.Since(start).Round(time.Millisecond))
	return dir, nil
}

// env is what every scenario shares.
type env struct {
	bin           string
	quick         bool
	log           *slog.Logger
	echo          io.Writer // node output copy, or nil
	startFailures atomic.Int32

	floor *row    // the HTTP floor's row, once measured
	rate  float64 // the throughput row's acknowledged creates per second, once measured
}

// pick returns full, or quick in a -quick run.
func (e *env) pick(full, quick int) int {
	if e.quick {
		return quick
	}
	return full
}

func (e *env) pickDur(full, quick time.Duration) time.Duration {
	if e.quick {
		return quick
	}
	return full
}

// protocols returns the protocols to run: the original one too unless this
// is a -quick run and the comparison is not needed there.
func (e *env) protocols(originalInQuick bool) []string {
	if e.quick && !originalInQuick {
		return []string{"default"}
	}
	return []string{"default", "original"}
}

// grace is how long past its deadline a scenario may take to return
// before it is abandoned.
const grace = 5 * time.Second

// measure starts a fresh cluster of sp, runs fn on it with a deadline of
// limit (cluster start included), tears the cluster down and returns the
// row fn filled. A failure, a panic or a missed deadline becomes the row's
// error; a scenario that does not return within grace after its deadline
// is abandoned with its cluster killed.
func (e *env) measure(ctx context.Context, name string, sp spec, limit time.Duration, fn func(context.Context, *cluster, *row) error) row {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	log := e.log.With("scenario", name, "protocol", sp.Protocol)
	out := newTail(256<<10, e.echo)
	var (
		mu sync.Mutex
		cl *cluster
	)
	result := make(chan row, 1)
	go func() {
		r := row{Scenario: name, Protocol: sp.Protocol}
		defer func() {
			if v := recover(); v != nil {
				r.Err = fmt.Sprintf("panic: %v\n%s", v, debug.Stack())
			}
			result <- r
		}()
		c, err := startCluster(ctx, e.bin, sp, log, out)
		if err != nil && ctx.Err() == nil {
			log.Warn("cluster start failed; retrying once on other ports", "err", err)
			c, err = startCluster(ctx, e.bin, sp, log, out)
		}
		if err != nil {
			e.startFailures.Add(1)
			r.Err = "cluster start: " + err.Error()
			return
		}
		mu.Lock()
		cl = c
		mu.Unlock()
		defer c.Stop()
		if err := fn(ctx, c, &r); err != nil {
			r.Err = err.Error()
		}
	}()
	var r row
	select {
	case r = <-result:
	case <-time.After(limit + grace):
		r = row{Scenario: name, Protocol: sp.Protocol, Err: fmt.Sprintf("missed the hard deadline of %v", limit)}
		mu.Lock()
		if cl != nil {
			cl.Stop()
		}
		mu.Unlock()
	}
	if ctx.Err() != nil && r.Err == "" {
		r.Err = fmt.Sprintf("deadline of %v: %v", limit, ctx.Err())
	}
	if r.Err != "" {
		log.Error("scenario failed", "err", r.Err)
		for _, l := range out.lines(30) {
			log.Info("node output", "line", l)
		}
	}
	return r
}

// progress logs at most every 2 s.
type progress struct {
	log  *slog.Logger
	last time.Time
}

func (p *progress) log2s(msg string, args ...any) {
	if time.Since(p.last) >= 2*time.Second {
		p.last = time.Now()
		p.log.Info(msg, args...)
	}
}
