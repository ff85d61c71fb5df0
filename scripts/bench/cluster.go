package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/localcluster"
)

// spec describes a cluster to start (see localcluster.Spec); the bench's
// cities run with quiet timers unless a scenario says otherwise.
type spec = localcluster.Spec

// quiet keeps the city rules from writing during a measurement.
var quiet = []string{"-patrol", "1h", "-fight", "1h"}

// cluster is a started cluster as a scenario sees it: the nodes, the
// member's probes and dispatch's API (localcluster.Cluster), the spec with
// its defaults, and the scenario's logger.
type cluster struct {
	*localcluster.Cluster
	spec spec
	log  *slog.Logger
}

// startCluster starts a cluster of sp with the bench's defaults.
func startCluster(ctx context.Context, bin string, sp spec, log *slog.Logger, out io.Writer) (*cluster, error) {
	if sp.CityArgs == nil {
		sp.CityArgs = quiet
	}
	sp.Member = "bench"
	c, err := localcluster.Start(ctx, bin, sp, log, out)
	if err != nil {
		return nil, err
	}
	return &cluster{Cluster: c, spec: c.Spec(), log: log}, nil
}

// errStalled means a replica stopped filling up.
var errStalled = errors.New("stalled: no new heroes")

// stall fails once the count it is fed has not changed for d.
type stall struct {
	d     time.Duration
	last  int
	since time.Time
}

func (s *stall) check(count int) error {
	if s.since.IsZero() || count != s.last {
		s.last, s.since = count, time.Now()
		return nil
	}
	if time.Since(s.since) > s.d {
		return fmt.Errorf("%w for %v (at %d)", errStalled, s.d, count)
	}
	return nil
}

// newHeroes returns n new heroes written by a local replica named bench.
func newHeroes(n int) crdt.Delta {
	r := crdt.NewReplica(crdt.NewClock("bench", func() int64 { return time.Now().UnixNano() }))
	for i := range n {
		if _, _, err := r.Create(uuid.New(), fmt.Sprintf("Bench Hero %06d", i)); err != nil {
			panic(err) // a fresh id and a short name cannot fail
		}
	}
	return r.State()
}

// cpuUse is CPU seconds used so far, by node name ("bench" is this
// process, "cities" all cities together).
type cpuUse map[string]float64

// cpu reads the CPU time of every node process and of this one.
func (c *cluster) cpu() cpuUse {
	use := cpuUse{}
	if s, err := cpuSeconds(os.Getpid()); err == nil {
		use["bench"] = s
	}
	for name, p := range c.Procs() {
		s, err := cpuSeconds(p.Pid())
		if err != nil {
			continue
		}
		if name != "dispatch" {
			name = "cities"
		}
		use[name] += s
	}
	return use
}

// since returns the CPU seconds used since before.
func (u cpuUse) since(before cpuUse) cpuUse {
	out := cpuUse{}
	for k, v := range u {
		out[k] = v - before[k]
	}
	return out
}

// rss returns a process's resident set size in MB.
func rss(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return float64(kb) / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuSeconds returns the user plus system CPU time a process has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command, which is in parentheses: state is the
	// first, utime the 12th and stime the 13th, in clock ticks.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) / ticks, errors.Join(err1, err2)
}

// tail keeps the last bytes of the node processes' output, to show when a
// scenario fails; with echo set it also copies them to stderr.
type tail struct {
	mu   sync.Mutex
	buf  []byte
	max  int
	echo io.Writer
}

func newTail(max int, echo io.Writer) *tail { return &tail{max: max, echo: echo} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.echo != nil {
		_, _ = t.echo.Write(p)
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// lines returns the last n lines.
func (t *tail) lines(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := strings.Split(strings.TrimRight(string(t.buf), "\n"), "\n")
	return all[max(len(all)-n, 0):]
}
