package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/internal/proc"
	"github.com/superhero-cluster/superhero/messages"
)

// spec describes a cluster to start.
type spec struct {
	Protocol string   // "default" or "original"
	Cities   []string // default gotham, metropolis, capitol
	Slots    int      // layout slots; default 6 (dispatch, 3 cities, spare, bench member)
	CityArgs []string // extra city flags; default quiet timers
}

// quiet keeps the city rules from writing during a measurement.
var quiet = []string{"-patrol", "1h", "-fight", "1h"}

var defaultCities = []string{"gotham", "metropolis", "capitol"}

// cluster is one set of node processes on free loopback ports, plus this
// process joined as a cluster member for probes.
type cluster struct {
	spec       spec
	bin        string
	remoteBase int
	healthBase int
	httpAddr   string
	cookie     string
	out        *tail
	log        *slog.Logger
	api        *http.Client
	member     *node.Node

	mu       sync.Mutex
	procs    map[string]*proc.Proc
	slots    map[string]int
	nextSlot int
	stopOnce sync.Once
}

// startCluster starts dispatch and the cities of sp, joins as a member and
// waits until the member and dispatch both see every city.
func startCluster(ctx context.Context, bin string, sp spec, log *slog.Logger, out *tail) (*cluster, error) {
	if len(sp.Cities) == 0 {
		sp.Cities = defaultCities
	}
	if sp.Slots == 0 {
		sp.Slots = 6
	}
	if sp.CityArgs == nil {
		sp.CityArgs = quiet
	}
	c := &cluster{
		spec: sp, bin: bin, out: out, log: log,
		cookie:   randomCookie(),
		procs:    map[string]*proc.Proc{},
		slots:    map[string]int{},
		nextSlot: layout.FirstExtraSlot,
		api: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
		}},
	}
	base, err := layout.FreeRun(2*sp.Slots + 1)
	if err != nil {
		return nil, err
	}
	c.remoteBase, c.healthBase = base, base+sp.Slots
	c.httpAddr = "127.0.0.1:" + strconv.Itoa(base+2*sp.Slots)

	start := time.Now()
	joined := make(chan error, 1)
	go func() { joined <- c.join(ctx) }()
	for _, name := range sp.Cities {
		if _, err = c.startCity(name); err != nil {
			break
		}
	}
	if err == nil {
		err = c.startProc("dispatch", "dispatch", append([]string{"-http", c.httpAddr}, c.commonArgs(0)...))
	}
	if jerr := <-joined; err == nil {
		err = jerr
	}
	if err == nil {
		err = c.awaitUp(ctx, sp.Cities)
	}
	if err != nil {
		c.stop()
		return nil, err
	}
	log.Info("cluster up", "cities", len(sp.Cities), "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// commonArgs are the flags every node of the cluster gets.
func (c *cluster) commonArgs(slot int) []string {
	return []string{
		"-protocol", c.spec.Protocol, "-cookie", c.cookie, "-log-level", "warn",
		"-host", "127.0.0.1", "-slot", strconv.Itoa(slot), "-slots", strconv.Itoa(c.spec.Slots),
		"-remote-base", strconv.Itoa(c.remoteBase), "-health-base", strconv.Itoa(c.healthBase),
	}
}

// memberSlot is the bench member's slot: the last one.
func (c *cluster) memberSlot() int { return c.spec.Slots - 1 }

// startCity starts a city process on its slot (fixed for the original
// cities, else the next extra slot) and returns the slot.
func (c *cluster) startCity(name string) (int, error) {
	c.mu.Lock()
	slot, ok := c.slots[name]
	if !ok {
		switch name {
		case "gotham":
			slot = 1
		case "metropolis":
			slot = 2
		case "capitol":
			slot = 3
		default:
			slot = c.nextSlot
			c.nextSlot++
		}
		c.slots[name] = slot
	}
	c.mu.Unlock()
	if slot >= c.memberSlot() {
		return 0, fmt.Errorf("no free slot for city %s among %d", name, c.spec.Slots)
	}
	args := append([]string{"-city", name}, c.commonArgs(slot)...)
	return slot, c.startProc(name, "locations", append(args, c.spec.CityArgs...))
}

func (c *cluster) startProc(name, binary string, args []string) error {
	p := &proc.Proc{Name: name, Path: filepath.Join(c.bin, binary), Args: args}
	if err := p.Start(c.out); err != nil {
		return err
	}
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return nil
}

// join starts this process's cluster member on the last slot.
func (c *cluster) join(ctx context.Context) error {
	cfg := node.DefaultConfig("bench")
	lay := layout.Layout{Host: "127.0.0.1", RemoteBase: c.remoteBase, HealthBase: c.healthBase, Slots: c.spec.Slots}
	cfg.Port, cfg.HealthPort = lay.RemotePort(c.memberSlot()), lay.HealthPort(c.memberSlot())
	cfg.Peers = lay.Peers()
	cfg.Cookie = c.cookie
	cfg.RefreshInterval = 100 * time.Millisecond
	cfg.StopTimeout = 5 * time.Second
	cfg.LibraryLogLevel = slog.LevelError
	n, err := node.Start(ctx, cfg, slog.New(slog.NewTextHandler(c.out, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return fmt.Errorf("join as member: %w", err)
	}
	c.mu.Lock()
	c.member = n
	c.mu.Unlock()
	return nil
}

// awaitUp waits until the member sees every city's kind and dispatch
// reports every city up and itself ready.
func (c *cluster) awaitUp(ctx context.Context, cities []string) error {
	return poll(ctx, 20*time.Millisecond, func() (bool, error) {
		for _, name := range cities {
			if !c.member.HasKind(messages.CityKind(name)) {
				return false, nil
			}
		}
		st, err := c.status(ctx)
		if err != nil {
			return false, nil // dispatch not serving yet
		}
		for _, name := range cities {
			if !st.up(name) {
				return false, nil
			}
		}
		// Dispatch answers "catching up" until it has read a city.
		return st.Ready, nil
	})
}

// stop kills every node process; the member leaves the cluster in the
// background.
func (c *cluster) stop() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		procs := make([]*proc.Proc, 0, len(c.procs))
		for _, p := range c.procs {
			procs = append(procs, p)
		}
		member := c.member
		c.mu.Unlock()
		for _, p := range procs {
			p.Kill()
		}
		c.api.CloseIdleConnections()
		if member != nil {
			go func() { _ = member.Stop() }()
		}
	})
}

// proc returns the named node process.
func (c *cluster) proc(name string) *proc.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

// restart starts the named city again with the same flags.
func (c *cluster) restart(name string) error {
	_, err := c.startCity(name)
	return err
}

// --- member probes ---

// ask sends msg to the city's grain and waits at most timeout for a reply.
func ask[T proto.Message](ctx context.Context, c *cluster, city string, msg proto.Message, timeout time.Duration) (T, error) {
	return node.RequestAs[T](ctx, c.member, city, messages.CityKind(city), msg, timeout)
}

// holds reports whether the city's replica has an entry for id.
func (c *cluster) holds(ctx context.Context, city, id string) (bool, error) {
	r, err := ask[*messages.HeroReply](ctx, c, city, &messages.GetHero{HeroId: id}, 500*time.Millisecond)
	if err != nil || len(r.GetDelta()) == 0 {
		return false, err
	}
	var d crdt.Delta
	if err := d.UnmarshalBinary(r.GetDelta()); err != nil {
		return false, err
	}
	return d.Len() == 1 && d.Heroes[0].ID.String() == id, nil
}

// awaitHolds probes the city every interval until it holds id, and
// returns when it was first seen.
func (c *cluster) awaitHolds(ctx context.Context, city, id string, every time.Duration) (time.Time, error) {
	var seen time.Time
	err := poll(ctx, every, func() (bool, error) {
		ok, err := c.holds(ctx, city, id)
		if ok {
			seen = time.Now()
		}
		return ok, transient(ctx, err)
	})
	return seen, err
}

// replicaInfo is what GetDigest tells about a city's replica.
type replicaInfo struct {
	Fingerprint uint64
	Heroes      int
	Incarnation uint64
}

// digest asks a city for its replica's digest.
func (c *cluster) digest(ctx context.Context, city string, timeout time.Duration) (replicaInfo, error) {
	r, err := ask[*messages.DigestReply](ctx, c, city, &messages.GetDigest{}, timeout)
	if err != nil {
		return replicaInfo{}, err
	}
	var d crdt.Digest
	if err := d.UnmarshalBinary(r.GetDigest()); err != nil {
		return replicaInfo{}, err
	}
	return replicaInfo{Fingerprint: d.Fingerprint(), Heroes: int(r.GetHeroes()), Incarnation: r.GetIncarnation()}, nil
}

// digests asks every city in parallel.
func (c *cluster) digests(ctx context.Context, cities []string) (map[string]replicaInfo, error) {
	out := make(map[string]replicaInfo, len(cities))
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, city := range cities {
		wg.Go(func() {
			info, err := c.digest(ctx, city, 2*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("digest of %s: %w", city, err))
				return
			}
			out[city] = info
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// converged reports whether every city answered with the same fingerprint
// and returns it.
func converged(infos map[string]replicaInfo, cities []string) (uint64, bool) {
	var fp uint64
	for i, city := range cities {
		info, ok := infos[city]
		if !ok || (i > 0 && info.Fingerprint != fp) {
			return 0, false
		}
		fp = info.Fingerprint
	}
	return fp, len(cities) > 0
}

// awaitConverged waits until every city reports the same fingerprint and
// returns it.
func (c *cluster) awaitConverged(ctx context.Context, cities []string, every time.Duration) (uint64, error) {
	var fp uint64
	err := poll(ctx, every, func() (bool, error) {
		infos, _ := c.digests(ctx, cities)
		var ok bool
		fp, ok = converged(infos, cities)
		return ok, nil
	})
	return fp, err
}

// awaitReplica probes a city every interval until done accepts its
// answer (or fails), and returns when it first answered at all and when
// it was done.
func (c *cluster) awaitReplica(ctx context.Context, city string, every time.Duration, done func(replicaInfo) (bool, error)) (answered, matched time.Time, err error) {
	err = poll(ctx, every, func() (bool, error) {
		info, err := c.digest(ctx, city, 300*time.Millisecond)
		if err != nil {
			return false, transient(ctx, err)
		}
		if answered.IsZero() {
			answered = time.Now()
		}
		ok, err := done(info)
		if ok {
			matched = time.Now()
		}
		return ok, err
	})
	return answered, matched, err
}

// hasFingerprint accepts a replica whose fingerprint is fp.
func hasFingerprint(fp uint64) func(replicaInfo) (bool, error) {
	return func(info replicaInfo) (bool, error) { return info.Fingerprint == fp, nil }
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

// stats asks a city for its replication counters.
func (c *cluster) stats(ctx context.Context, city string) (*messages.Stats, error) {
	return ask[*messages.Stats](ctx, c, city, &messages.GetStats{}, time.Second)
}

// entries reads a city's whole replica, tombstones included, with
// anti-entropy steps that ask for ranges of the id space, so no single
// message grows with the replica (GetState answers in one).
func (c *cluster) entries(ctx context.Context, city string) ([]crdt.Hero, error) {
	var out []crdt.Hero
	// Ask for the whole id space; a reply carries at most
	// crdt.MaxSyncEntries entries and offers the ranges left over as
	// digests, which are asked for in turn.
	queue := []crdt.Range{crdt.FullRange()}
	for len(queue) > 0 {
		rg := queue[0]
		queue = queue[1:]
		b, err := crdt.SyncMsg{Want: []crdt.Range{rg}}.MarshalBinary()
		if err != nil {
			return nil, err
		}
		r, err := ask[*messages.SyncReply](ctx, c, city, &messages.SyncRequest{From: "bench", Msg: b}, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("range %v of %s: %w", rg, city, err)
		}
		if len(r.GetMsg()) == 0 {
			continue // nothing in the range
		}
		var m crdt.SyncMsg
		if err := m.UnmarshalBinary(r.GetMsg()); err != nil {
			return nil, err
		}
		out = append(out, m.Delta.Heroes...)
		for _, d := range m.Digests {
			queue = append(queue, d.Range)
		}
	}
	return out, nil
}

// inject merges d straight into the cities' replicas, chunk entries per
// message, as another replica would push them.
func (c *cluster) inject(ctx context.Context, cities []string, d crdt.Delta, chunk int) error {
	for lo := 0; lo < d.Len(); lo += chunk {
		b, err := crdt.Delta{Heroes: d.Heroes[lo:min(lo+chunk, d.Len())]}.MarshalBinary()
		if err != nil {
			return err
		}
		for _, city := range cities {
			if _, err := ask[*messages.MergeAck](ctx, c, city, &messages.MergeDelta{Delta: b, From: "bench"}, 15*time.Second); err != nil {
				return fmt.Errorf("inject into %s: %w", city, err)
			}
		}
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

// --- dispatch API ---

// apiHero is a hero in the API's and the WebSocket's JSON.
type apiHero struct {
	ID         string `json:"id"`
	Location   string `json:"location"`
	Patrolling bool   `json:"is_patrolling"`
	Health     int    `json:"health"`
	Dead       bool   `json:"dead"`
	UpdatedAt  string `json:"updated_at"`
	UpdatedBy  string `json:"updated_by"`
}

type clusterStatus struct {
	Cities []struct {
		Name   string `json:"name"`
		Up     bool   `json:"up"`
		Heroes int    `json:"heroes"`
		Digest string `json:"digest"`
	} `json:"cities"`
	InSync bool `json:"in_sync"`
	// Ready is false while dispatch catches up after a start.
	Ready bool `json:"ready"`
}

func (s clusterStatus) up(city string) bool {
	for _, c := range s.Cities {
		if c.Name == city {
			return c.Up
		}
	}
	return false
}

// call sends a JSON request to dispatch and decodes a 2xx answer into out
// (if not nil). It returns the status code.
func (c *cluster) call(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.httpAddr+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.api.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// create creates a hero through the API.
func (c *cluster) create(ctx context.Context, name string) (apiHero, error) {
	var h apiHero
	_, err := c.call(ctx, http.MethodPost, "/api/superheroes", map[string]string{"name": name}, &h)
	if err == nil && h.ID == "" {
		err = errors.New("create: answer without an id")
	}
	return h, err
}

// status reads /api/cluster.
func (c *cluster) status(ctx context.Context) (clusterStatus, error) {
	var st clusterStatus
	_, err := c.call(ctx, http.MethodGet, "/api/cluster", nil, &st)
	return st, err
}

// --- helpers ---

// poll calls cond every interval until it returns true or an error, or
// ctx ends.
func poll(ctx context.Context, every time.Duration, cond func() (bool, error)) error {
	for {
		start := time.Now()
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t := time.NewTimer(max(every-time.Since(start), 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// transient drops request errors that only mean "not yet" (a city that is
// restarting, a timed-out probe) while ctx is still live.
func transient(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, node.ErrStopped) || errors.Is(err, node.ErrInvalidRequest) || errors.Is(err, node.ErrUnexpectedReply) {
		return err
	}
	return nil
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
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, p := range c.procs {
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

// randomCookie gives each cluster its own secret, so that a node left
// over from one cluster can never join the next.
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

func randomCookie() string {
	b := make([]byte, 12)
	_, _ = crand.Read(b)
	return "bench-" + hex.EncodeToString(b)
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
