// Package localcluster starts a whole cluster of real node processes
// (dispatch and the cities, each its own OS process) on free loopback
// ports, and joins it itself as a cluster member, so that a harness can ask
// every city directly (its digest, its whole replica) besides going
// through dispatch's API. The benchmark (scripts/bench) and the chaos soak
// (scripts/chaos) use it; the node binaries come from proc.Build.
package localcluster

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/internal/proc"
	"github.com/superhero-cluster/superhero/messages"
)

// Spec describes a cluster to start. Zero fields take the defaults.
type Spec struct {
	// Protocol is every node's -protocol: "default" (the default) or
	// "original".
	Protocol string
	// Cities are started in this order; default DefaultCities.
	Cities []string
	// Slots is the number of layout slots: dispatch, the cities, spares
	// for cities started later, and the member's (the last). Default 6.
	Slots int
	// CityArgs are extra flags for every city (e.g. -patrol 1h).
	CityArgs []string
	// DispatchArgs are extra flags for dispatch.
	DispatchArgs []string
	// Member is the name this process joins under. Default "probe".
	Member string
	// LogLevel is every node's -log-level. Default "warn".
	LogLevel string
}

// DefaultCities are the cities of the original cluster.
var DefaultCities = []string{"gotham", "metropolis", "capitol"}

func (sp Spec) withDefaults() Spec {
	if sp.Protocol == "" {
		sp.Protocol = "default"
	}
	if len(sp.Cities) == 0 {
		sp.Cities = DefaultCities
	}
	if sp.Slots == 0 {
		sp.Slots = 6
	}
	if sp.Member == "" {
		sp.Member = "probe"
	}
	if sp.LogLevel == "" {
		sp.LogLevel = "warn"
	}
	return sp
}

// launch is how a node process was started, to start it again the same way.
type launch struct {
	binary string
	args   []string
}

// Cluster is one set of node processes on free loopback ports, plus this
// process joined as a cluster member for probes. Its methods are safe for
// concurrent use.
type Cluster struct {
	spec       Spec
	bin        string
	remoteBase int
	healthBase int
	httpAddr   string
	cookie     string
	out        io.Writer
	log        *slog.Logger
	api        *API
	member     *node.Node

	mu         sync.Mutex
	procs      map[string]*proc.Proc
	launches   map[string]launch
	slots      map[string]int
	nextSlot   int
	stopOnce   sync.Once
	memberLeft chan struct{}
}

// Start starts the cities and dispatch of sp from the binaries in bin, joins
// as a member and waits until the member and dispatch both see every city
// and dispatch is ready. The nodes' output goes to out, each line prefixed
// with the node's name.
func Start(ctx context.Context, bin string, sp Spec, log *slog.Logger, out io.Writer) (*Cluster, error) {
	sp = sp.withDefaults()
	c := &Cluster{
		spec: sp, bin: bin, out: out, log: log,
		cookie:     randomCookie(),
		procs:      map[string]*proc.Proc{},
		launches:   map[string]launch{},
		slots:      map[string]int{},
		nextSlot:   layout.FirstExtraSlot,
		memberLeft: make(chan struct{}),
	}
	base, err := layout.FreeRun(2*sp.Slots + 1)
	if err != nil {
		return nil, err
	}
	c.remoteBase, c.healthBase = base, base+sp.Slots
	c.httpAddr = "127.0.0.1:" + strconv.Itoa(base+2*sp.Slots)
	c.api = NewAPI(c.httpAddr)

	start := time.Now()
	joined := make(chan error, 1)
	go func() { joined <- c.join(ctx) }()
	for _, name := range sp.Cities {
		if _, err = c.StartCity(name); err != nil {
			break
		}
	}
	if err == nil {
		args := append([]string{"-http", c.httpAddr}, c.commonArgs(0)...)
		err = c.startProc("dispatch", "dispatch", append(args, sp.DispatchArgs...))
	}
	if jerr := <-joined; err == nil {
		err = jerr
	}
	if err == nil {
		err = c.AwaitUp(ctx, sp.Cities)
	}
	if err != nil {
		c.Stop()
		return nil, err
	}
	log.Info("cluster up", "cities", len(sp.Cities), "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// Spec returns the cluster's spec, defaults filled in.
func (c *Cluster) Spec() Spec { return c.spec }

// API is the client of dispatch's API that Call and Create use.
func (c *Cluster) API() *API { return c.api }

// HTTPAddr is dispatch's web address (host:port).
func (c *Cluster) HTTPAddr() string { return c.httpAddr }

// Member is this process's cluster member.
func (c *Cluster) Member() *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member
}

// commonArgs are the flags every node of the cluster gets.
func (c *Cluster) commonArgs(slot int) []string {
	return []string{
		"-protocol", c.spec.Protocol, "-cookie", c.cookie, "-log-level", c.spec.LogLevel,
		"-host", "127.0.0.1", "-slot", strconv.Itoa(slot), "-slots", strconv.Itoa(c.spec.Slots),
		"-remote-base", strconv.Itoa(c.remoteBase), "-health-base", strconv.Itoa(c.healthBase),
	}
}

// memberSlot is the member's slot: the last one.
func (c *Cluster) memberSlot() int { return c.spec.Slots - 1 }

// StartCity starts a city process on its slot (fixed for the original
// cities, else the next extra slot) and returns the slot.
func (c *Cluster) StartCity(name string) (int, error) {
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

func (c *Cluster) startProc(name, binary string, args []string) error {
	p := &proc.Proc{Name: name, Path: filepath.Join(c.bin, binary), Args: args}
	if err := p.Start(c.out); err != nil {
		return err
	}
	c.mu.Lock()
	c.procs[name] = p
	c.launches[name] = launch{binary: binary, args: args}
	c.mu.Unlock()
	return nil
}

// Restart starts the named node (a city or dispatch) again with the same
// binary and flags as before. The previous process must have exited.
func (c *Cluster) Restart(name string) error {
	c.mu.Lock()
	l, ok := c.launches[name]
	p := c.procs[name]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("restart %s: never started", name)
	}
	select {
	case <-p.Done():
	default:
		return fmt.Errorf("restart %s: still running (pid %d)", name, p.Pid())
	}
	return c.startProc(name, l.binary, l.args)
}

// Proc returns the named node's current process.
func (c *Cluster) Proc(name string) *proc.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

// Procs returns every node's current process by name.
func (c *Cluster) Procs() map[string]*proc.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*proc.Proc, len(c.procs))
	for k, v := range c.procs {
		out[k] = v
	}
	return out
}

// join starts this process's cluster member on the last slot.
func (c *Cluster) join(ctx context.Context) error {
	cfg := node.DefaultConfig(c.spec.Member)
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

// AwaitUp waits until the member sees every city's kind and dispatch
// reports every city up and itself ready.
func (c *Cluster) AwaitUp(ctx context.Context, cities []string) error {
	return Poll(ctx, 20*time.Millisecond, func() (bool, error) {
		for _, name := range cities {
			if !c.member.HasKind(messages.CityKind(name)) {
				return false, nil
			}
		}
		st, err := c.Status(ctx)
		if err != nil {
			return false, nil // dispatch not serving yet
		}
		for _, name := range cities {
			if !st.Up(name) {
				return false, nil
			}
		}
		// Dispatch answers "catching up" until it has read a city.
		return st.Ready, nil
	})
}

// Stop kills every node process (SIGKILL, which also ends a frozen one)
// and makes the member leave the cluster in the background; Left is closed
// once it has.
func (c *Cluster) Stop() {
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
		c.api.Close()
		go func() {
			defer close(c.memberLeft)
			if member != nil {
				_ = member.Stop()
			}
		}()
	})
}

// Left is closed once Stop has made the member leave.
func (c *Cluster) Left() <-chan struct{} { return c.memberLeft }

// --- dispatch API ---

// APIHero is a hero in the API's and the WebSocket's JSON, as far as the
// benchmark reads it.
type APIHero struct {
	ID         string `json:"id"`
	Location   string `json:"location"`
	Patrolling bool   `json:"is_patrolling"`
	Health     int    `json:"health"`
	Dead       bool   `json:"dead"`
	UpdatedAt  string `json:"updated_at"`
	UpdatedBy  string `json:"updated_by"`
}

// Status is GET /api/cluster.
type Status struct {
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

// Up reports whether dispatch shows city up.
func (s Status) Up(city string) bool {
	for _, c := range s.Cities {
		if c.Name == city {
			return c.Up
		}
	}
	return false
}

// Call sends a JSON request to dispatch and decodes a 2xx answer into out
// (if not nil). It returns the status code.
func (c *Cluster) Call(ctx context.Context, method, path string, body, out any) (int, error) {
	return c.api.Call(ctx, method, path, body, out)
}

// Create creates a hero through the API.
func (c *Cluster) Create(ctx context.Context, name string) (APIHero, error) {
	return c.api.Create(ctx, name)
}

// Status reads /api/cluster.
func (c *Cluster) Status(ctx context.Context) (Status, error) {
	var st Status
	_, err := c.Call(ctx, http.MethodGet, "/api/cluster", nil, &st)
	return st, err
}

// --- helpers ---

// Poll calls cond every interval until it returns true or an error, or
// ctx ends.
func Poll(ctx context.Context, every time.Duration, cond func() (bool, error)) error {
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

// Transient drops request errors that only mean "not yet" (a city that is
// restarting, a timed-out probe) while ctx is still live.
func Transient(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, node.ErrStopped) || errors.Is(err, node.ErrInvalidRequest) || errors.Is(err, node.ErrUnexpectedReply) {
		return err
	}
	return nil
}

// randomCookie gives each cluster its own secret, so that a node left
// over from one cluster can never join the next.
func randomCookie() string {
	b := make([]byte, 12)
	_, _ = crand.Read(b)
	return "local-" + hex.EncodeToString(b)
}
