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
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/logx"
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
		name     = fs.String("city", "", "city name: gotham, metropolis, capitol, or a new one (required)")
		slot     = fs.Int("slot", -1, "node slot; default: fixed for the original cities, else the first free one")
		level    = fs.String("log-level", "info", "log level: debug, info, warn, error")
		protocol = fs.String("protocol", "default", "replication protocol: default or original")
		seed     = fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed of the city's rules")
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
	start := time.Now()
	n, err := node.Start(ctx, cfg, base, cityactor.GrainKind(*name))
	if err != nil {
		return err
	}
	defer func() {
		if err := n.Stop(); err != nil {
			log.Warn("stop", "err", err)
		}
	}()
	clock := crdt.NewClock(*name, clockFlags.Phys())
	transport := wire.NewNodeTransport(n, log.With("actor", "outbox"))
	defer transport.Close()
	rc := replication.Preset(*name, replication.RoleCity, proto)
	if proto == replication.ProtocolDefault {
		rc.NoPush = !*push
		rc.AntiEntropyInterval, rc.PushWindow = repl.AntiEntropyInterval, repl.PushWindow
	}
	rc.Seed = *seed
	rc.MaxClockOffset = clockFlags.EngineMaxOffset()
	c, err := cityactor.Spawn(n.ActorSystem(), cityactor.Config{
		City:        loc,
		Rules:       rules,
		Clock:       clock,
		Seed:        *seed,
		Logger:      log,
		Replication: rc,
		Transport:   transport,
	})
	if err != nil {
		return err
	}
	log.Info("city up", "address", n.Address(), "provider", cfg.Provider, "took", time.Since(start).Round(time.Millisecond))
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		c.Stop()
		return nil
	case <-c.Down():
		log.Error("city is gone for good", "max_restarts", cityactor.MaxRestarts, "window", cityactor.RestartWindow)
		return ErrGaveUp
	case <-n.Done():
		return errors.New("cluster node stopped")
	}
}
