// Command locations runs one city node of the Superhero Cluster:
//
//	go run ./locations -city gotham
//
// The node joins the cluster and hosts the city's grain (kind "city-<name>",
// messages.CityKind), which only this node offers. The city's state actor
// runs the patrol, fight and heal rules on its own timers under a
// one_for_one supervisor: a bomb crashes it and it restarts with an empty
// replica that gossip refills; a 4th crash within 5 s makes the node give
// up and exit 1.
//
// With -metrics ADDR the node serves its Prometheus metrics at
// http://ADDR/metrics (off by default). It runs Go code on one thread at a
// time unless -maxprocs says otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/metrics"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/locations/cityactor"
	"github.com/superhero-cluster/superhero/replication"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "locations:", err)
		os.Exit(1)
	}
}

// ErrGaveUp means the city crashed more often than its supervisor allows.
var ErrGaveUp = errors.New("city crashed too often and gave up")

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("locations", flag.ContinueOnError)
	fs.SetOutput(stderr)
	member := layout.DefaultMember()
	member.Register(fs)
	rules := city.DefaultConfig()
	var (
		name      = fs.String("city", "", "city name: gotham, metropolis, capitol, or a new one (required)")
		slot      = fs.Int("slot", -1, "node slot; default: fixed for the original cities, else the first free one")
		level     = fs.String("log-level", "info", "log level: debug, info, warn, error")
		protocol  = fs.String("protocol", "default", "replication protocol: default or original")
		seed      = fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed of the city's rules")
		metricsAt = fs.String("metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics, e.g. 127.0.0.1:4901; empty: off")
		pprofAt   = fs.String("pprof", "", "serve Go's profiles at http://`ADDR`/debug/pprof/ (keep it on loopback); empty: off")
		maxprocs  = fs.Int("maxprocs", 1, "threads running Go code at once (GOMAXPROCS) while the node runs; 0: Go's default (the CPU count). A GOMAXPROCS variable replaces the default 1")
	)
	def := replication.DefaultCityConfig("")
	var repl replication.Config
	fs.DurationVar(&repl.AntiEntropyInterval, "anti-entropy", def.AntiEntropyInterval, "anti-entropy period with a random peer city; negative turns it off")
	fs.DurationVar(&repl.PushWindow, "push-window", def.PushWindow, "how long local writes are coalesced before a push")
	var clockFlags layout.ClockFlags
	clockFlags.Register(fs)
	push := fs.Bool("push", true, "push every local write to the other replicas at once")
	fs.DurationVar(&rules.PatrolInterval, "patrol", rules.PatrolInterval, "patrol tick")
	fs.DurationVar(&rules.FightInterval, "fight", rules.FightInterval, "fight tick")
	if err := fs.Parse(args); err != nil {
		return err
	}
	loc, err := crdt.ParseLocation(*name)
	if err != nil || !loc.IsCity() {
		return fmt.Errorf("-city %q: want a city name such as gotham", *name)
	}
	if *maxprocs < 0 {
		return fmt.Errorf("-maxprocs %d: want 0 or more", *maxprocs)
	}
	if *maxprocs > 0 && (os.Getenv("GOMAXPROCS") == "" || flagSet(fs, "maxprocs")) {
		// A city's work is one actor; with more threads than it can use
		// they mostly spend CPU waking one another for each message, and
		// a city shares its machine with the other nodes (README,
		// "Metrics"). A GOMAXPROCS variable wins over the default, not
		// over the flag. Restored when run returns, for in-process tests.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(*maxprocs))
	}
	proto, err := replication.ParseProtocol(*protocol)
	if err != nil {
		return err
	}
	base, err := logx.New(stderr, *level)
	if err != nil {
		return err
	}
	log := base.With("node", *name)
	if *slot < 0 {
		if *slot, err = member.Layout.Slot(*name); err != nil {
			return err
		}
	}

	cfg, err := member.Config(*name, *slot)
	if err != nil {
		return err
	}
	clock := crdt.NewClock(*name, clockFlags.Phys())
	rc := replication.Preset(*name, replication.RoleCity, proto)
	if proto == replication.ProtocolDefault {
		rc.NoPush = !*push
		rc.AntiEntropyInterval, rc.PushWindow = repl.AntiEntropyInterval, repl.PushWindow
	}
	rc.Seed = *seed
	rc.MaxClockOffset = clockFlags.EngineMaxOffset()
	cc := cityactor.Config{
		City:        loc,
		Rules:       rules,
		Clock:       clock,
		Seed:        *seed,
		Logger:      log,
		Replication: rc,
		// One for the whole process: the counters outlive memberships.
		Stats: &cityactor.Stats{},
	}
	if *metricsAt != "" {
		ep, err := serveMetrics(*metricsAt, *name, cc.Stats, log)
		if err != nil {
			return fmt.Errorf("-metrics %s: %w", *metricsAt, err)
		}
		defer ep.Close()
	}
	if *pprofAt != "" {
		ep, err := metrics.ListenProfiles(*pprofAt, log.With("actor", "pprof"))
		if err != nil {
			return fmt.Errorf("-pprof %s: %w", *pprofAt, err)
		}
		defer ep.Close()
	}
	// Each pass is one membership. The cluster never takes a dropped member
	// id back, so a city cut off for too long rejoins as a new member,
	// carrying its replica (with the writes it made while cut off) over.
	for {
		rejoin, err := serve(ctx, cfg, cc, base, log)
		if err != nil || rejoin == nil {
			return err
		}
		cc.Initial, cc.PriorIncarnations = rejoin.state, rejoin.incarnation
		log.Info("rejoining under a fresh member id", "heroes", len(rejoin.state.Heroes), "incarnation", rejoin.incarnation+1)
	}
}

// carry is what a city takes from one membership into the next.
type carry struct {
	state       crdt.Delta
	incarnation uint64
}

// serve runs one membership of the city: it joins the cluster, hosts the
// city until ctx is done (nil, nil), the city gives up (ErrGaveUp) or the
// cluster drops this member (the replica to carry into the next one).
func serve(ctx context.Context, cfg node.Config, cc cityactor.Config, base, log *slog.Logger) (*carry, error) {
	start := time.Now()
	n, err := node.Start(ctx, cfg, base, cityactor.GrainKind(string(cc.City)))
	if err != nil {
		return nil, err
	}
	// A dropped member leaves at once: nothing of it is owned any more.
	dropped := false
	defer func() {
		stop := n.Stop
		if dropped {
			stop = n.Leave
		}
		if err := stop(); err != nil {
			log.Warn("stop", "err", err)
		}
	}()
	transport := wire.NewNodeTransport(n, log.With("actor", "outbox"), &cc.Stats.Replication.Outbox)
	defer transport.Close()
	cc.Transport = transport
	c, err := cityactor.Spawn(n.ActorSystem(), cc)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	log.Info("city up", "address", n.Address(), "provider", cfg.Provider, "member_id", n.MemberID(), "maxprocs", runtime.GOMAXPROCS(0), "took", time.Since(start).Round(time.Millisecond))
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil, nil
	case <-c.Down():
		log.Error("city is gone for good", "max_restarts", cityactor.MaxRestarts, "window", cityactor.RestartWindow)
		return nil, ErrGaveUp
	case <-n.Excluded():
		dropped = true
		state, inc, err := c.Snapshot(n.ActorSystem(), 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("dropped by the cluster (%s), and the replica could not be carried over: %w", n.ExcludedReason(), err)
		}
		return &carry{state: state, incarnation: inc}, nil
	case <-n.Done():
		return nil, errors.New("cluster node stopped")
	}
}

// serveMetrics serves the city's metrics on addr: its replication counters
// and its supervisor's restarts, read at scrape time from stats, which
// outlive memberships.
func serveMetrics(addr, city string, stats *cityactor.Stats, log *slog.Logger) (*metrics.Endpoint, error) {
	reg := metrics.NewRegistry(city)
	err := reg.Register(
		metrics.Replication(&stats.Replication),
		metrics.Restarts(cityactor.SupervisorName(city), &stats.Restarts),
	)
	if err != nil {
		return nil, err
	}
	return metrics.Listen(addr, reg, log.With("actor", "metrics"))
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
