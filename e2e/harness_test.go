package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/proc"
	"github.com/superhero-cluster/superhero/internal/testkit"
)

// binDir holds the node binaries built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "superhero-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	start := time.Now()
	err = proc.Build(ctx, "..", dir, "e2e/member", "e2e/crowd")
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e: built node binaries in %v\n", time.Since(start).Round(time.Millisecond))
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is a set of real node processes on free loopback ports.
type cluster struct {
	t          *testing.T
	remoteBase int
	healthBase int
	slots      int
	httpAddr   string
	spareAddr  string // a free port for a second web server
	log        *logBuffer

	mu    sync.Mutex
	procs map[string]*proc.Proc
}

// slots each test cluster uses: dispatch, three cities and spares.
const testSlots = 6

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if binDir == "" {
		t.Skip("end-to-end tests need the node binaries; not built in -short mode")
	}
	c := &cluster{t: t, slots: testSlots, procs: map[string]*proc.Proc{}, log: &logBuffer{t: t}}
	// Remote ports, health ports, dispatch's HTTP port and a spare one.
	base, err := layout.FreeRun(2*testSlots + 2)
	if err != nil {
		t.Fatal(err)
	}
	c.remoteBase, c.healthBase = base, base+testSlots
	c.httpAddr = "127.0.0.1:" + strconv.Itoa(base+2*testSlots)
	c.spareAddr = "127.0.0.1:" + strconv.Itoa(base+2*testSlots+1)
	t.Cleanup(c.stop)
	return c
}

func (c *cluster) layoutArgs() []string {
	return []string{
		"-remote-base", strconv.Itoa(c.remoteBase),
		"-health-base", strconv.Itoa(c.healthBase),
		"-slots", strconv.Itoa(c.slots),
	}
}

// quiet keeps the city timers out of the way of exact assertions.
var quiet = []string{"-patrol", "1h", "-fight", "1h"}

// startCity starts a city node process.
func (c *cluster) startCity(name string, extra ...string) *proc.Proc {
	c.t.Helper()
	args := append([]string{"-city", name}, c.layoutArgs()...)
	return c.start(name, filepath.Join(binDir, "locations"), append(args, extra...))
}

// startDispatch starts the dispatch node process.
func (c *cluster) startDispatch(extra ...string) *proc.Proc {
	c.t.Helper()
	args := append([]string{"-http", c.httpAddr}, c.layoutArgs()...)
	return c.start("dispatch", filepath.Join(binDir, "dispatch"), append(args, extra...))
}

func (c *cluster) start(name, path string, args []string) *proc.Proc {
	c.t.Helper()
	p := &proc.Proc{Name: name, Path: path, Args: args}
	if err := p.Start(c.log); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p
}

func (c *cluster) stop() {
	c.mu.Lock()
	var ps []*proc.Proc
	for _, p := range c.procs {
		ps = append(ps, p)
	}
	c.mu.Unlock()
	proc.StopAll(ps, 10*time.Second, slog.New(slog.DiscardHandler))
	if c.t.Failed() {
		c.log.dump()
	}
}

// url returns the dispatch URL of path.
func (c *cluster) url(path string) string { return "http://" + c.httpAddr + path }

// logBuffer keeps the processes' output and shows it when a test fails.
type logBuffer struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns how many lines of node output contain every substring.
func (l *logBuffer) count(substrings ...string) int { return len(l.lines(substrings...)) }

// lines returns the lines of node output that contain every substring.
func (l *logBuffer) lines(substrings ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return matchingLines(l.b.String(), substrings...)
}

// matchingLines returns the lines of text that contain every substring.
func matchingLines(text string, substrings ...string) []string {
	var out []string
outer:
	for _, line := range strings.Split(text, "\n") {
		for _, s := range substrings {
			if !strings.Contains(line, s) {
				continue outer
			}
		}
		out = append(out, line)
	}
	return out
}

func (l *logBuffer) dump() {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.b.String()
	if len(out) > 200_000 {
		out = "...\n" + out[len(out)-200_000:]
	}
	l.t.Logf("node output:\n%s", out)
}

// api is a small JSON client for dispatch's API.
type api struct {
	t     *testing.T
	base  string
	http  *http.Client
	token string // sent as a bearer token when set (dispatch's -api-token)
}

func (c *cluster) api() *api {
	return &api{t: c.t, base: "http://" + c.httpAddr, http: &http.Client{Timeout: 5 * time.Second}}
}

// do sends a request and decodes a JSON answer into out (if not nil). It
// returns the status code and how long the answer took.
func (a *api) do(method, path string, body any, out any) (int, time.Duration) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil || method == http.MethodPost || method == http.MethodPut {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	start := time.Now()
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, time.Since(start)
	}
	defer resp.Body.Close()
	took := time.Since(start)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	if out != nil && resp.StatusCode < 300 && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: decoding %q: %v", method, path, b, err)
		}
	}
	if resp.StatusCode >= 400 && !strings.Contains(string(b), `"error"`) {
		a.t.Errorf("%s %s: %d without a JSON error: %q", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, took
}

type hero struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Location   string `json:"location"`
	Patrolling bool   `json:"is_patrolling"`
	Health     int    `json:"health"`
	Dead       bool   `json:"dead"`
	UpdatedAt  string `json:"updated_at"`
	UpdatedBy  string `json:"updated_by"`
}

type heroList struct {
	Superheroes []hero `json:"superheroes"`
}

type cityStatus struct {
	Name   string `json:"name"`
	Up     bool   `json:"up"`
	Heroes int    `json:"heroes"`
	Digest string `json:"digest"`
}

type clusterStatus struct {
	Cities []cityStatus `json:"cities"`
	InSync bool         `json:"in_sync"`
	// Ready is false while dispatch catches up after its start.
	Ready bool `json:"ready"`
}

func (a *api) cluster() clusterStatus {
	a.t.Helper()
	var cs clusterStatus
	if code, _ := a.do("GET", "/api/cluster", nil, &cs); code != 200 {
		return clusterStatus{}
	}
	return cs
}

func (cs clusterStatus) city(name string) cityStatus {
	for _, c := range cs.Cities {
		if c.Name == name {
			return c
		}
	}
	return cityStatus{Name: name}
}

// cityHeroes returns a city's own replica, or false if it did not answer.
func (a *api) cityHeroes(city string) ([]hero, bool) {
	a.t.Helper()
	var l heroList
	if code, _ := a.do("GET", "/api/cities/"+city+"/superheroes", nil, &l); code != 200 {
		return nil, false
	}
	return l.Superheroes, true
}

func has(hs []hero, id string) (hero, bool) {
	for _, h := range hs {
		if h.ID == id {
			return h, true
		}
	}
	return hero{}, false
}

// await polls cond until it holds or fails the test after timeout, and
// returns how long it took.
func await(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	testkit.AwaitCondition(t, timeout, cond, what)
	return time.Since(start)
}
