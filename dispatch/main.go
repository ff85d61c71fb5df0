// Command dispatch runs the dispatch node of the Superhero Cluster:
//
//	go run ./dispatch
//
// It joins the cluster as messages.DispatchName, hosting one kind of its
// own in the default protocol (messages.DispatchKind, the inbox where cities
// push their writes), keeps its own replica of the superheroes, runs the
// gossip and poll actors under a one_for_one supervisor (3 restarts in
// 1 s), and serves the live page, its WebSocket feed and a JSON API on
// http://127.0.0.1:4900.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/cluster"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/backend"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/dispatch/web"
	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dispatch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("dispatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lay := layout.Default()
	lay.RegisterFlags(fs)
	var (
		httpAddr = fs.String("http", "127.0.0.1:4900", "address of the web page and API")
		cookie   = fs.String("cookie", "", "cluster secret (default $"+layout.CookieEnv+", else the original's)")
		level    = fs.String("log-level", "info", "log level: debug, info, warn, error")
		protocol = fs.String("protocol", "default", "replication protocol: default or original")
		gossip   = fs.Duration("gossip", time.Second, "gossip interval")
		poll     = fs.Duration("poll", 2*time.Second, "poll interval")
		seed     = fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
		slot     = fs.Int("slot", 0, "node slot (0 is dispatch's)")
	)
	var clockFlags layout.ClockFlags
	clockFlags.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	proto, err := backend.ParseProtocol(*protocol)
	if err != nil {
		return err
	}
	base, err := logx.New(stderr, *level)
	if err != nil {
		return err
	}
	log := base.With("node", messages.DispatchName)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	cfg := node.DefaultConfig(messages.DispatchName)
	cfg.Host = lay.Host
	cfg.Port, cfg.HealthPort = lay.RemotePort(*slot), lay.HealthPort(*slot)
	cfg.Peers = lay.Peers()
	cfg.Cookie = layout.Cookie(*cookie)
	hub := web.NewHub(web.DefaultHubConfig(), log.With("actor", "hub"))
	defer hub.Close()
	rules := city.DefaultConfig()
	clock := crdt.NewClock(messages.DispatchName, clockFlags.Phys())
	store := backend.NewStore(clock, rules, func(d crdt.Delta) { hub.Publish(service.DeltaEvent(d)) })
	store.SetMaxClockOffset(clockFlags.MaxOffset)

	// In the default protocol cities push their writes to dispatch's
	// kind, which merges them into the store and so onto every page.
	var kinds []*cluster.Kind
	if proto == backend.ProtocolDefault {
		kinds = append(kinds, backend.InboxKind(store, log))
	}
	n, err := node.Start(ctx, cfg, base, kinds...)
	if err != nil {
		return err
	}
	defer func() {
		if err := n.Stop(); err != nil {
			log.Warn("stop", "err", err)
		}
	}()

	cities := backend.NodeCities{Node: n}
	be := backend.New(backend.Config{Protocol: proto, Seed: *seed, Logger: log}, store, cities, hub)

	g := &backend.Gossiper{Cities: cities, Rand: rand.New(rand.NewPCG(*seed, 1)), Protocol: proto}
	if proto == backend.ProtocolDefault {
		g.Store = store
	}
	p := &backend.Poller{Cities: cities, Rand: rand.New(rand.NewPCG(*seed, 2)), Store: store, Protocol: proto}
	group, err := backend.SpawnActors(n.ActorSystem(), backend.ActorsConfig{
		GossipInterval: *gossip, PollInterval: *poll, Logger: log,
	}, g, p)
	if err != nil {
		return err
	}
	defer group.Stop()

	webCfg := web.DefaultConfig()
	webCfg.Addr = *httpAddr
	srv, err := web.New(webCfg, be, hub, log.With("actor", "web"))
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); be.Run(ctx) }()
	go func() { defer wg.Done(); errc <- srv.Run(ctx) }()
	log.Info("dispatch up", "http", "http://"+*httpAddr, "protocol", proto)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		runErr = err
	case <-group.Down():
		runErr = fmt.Errorf("supervisor gave up on %s after too many crashes", group.Reason())
		log.Error("dispatch is going down", "err", runErr)
	case <-n.Done():
		runErr = errors.New("cluster node stopped")
	}
	cancel()
	wg.Wait()
	return runErr
}
