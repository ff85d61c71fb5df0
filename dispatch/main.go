// Command dispatch runs the dispatch node of the Superhero Cluster:
//
//	go run ./dispatch
//
// It joins the cluster (hosting its inbox kind, through which the cities'
// replication engines reach its own), keeps its own replica of the
// superheroes in one actor under a one_for_one supervisor (3 restarts in
// 1 s) whose replication engine pushes dispatch's writes and runs the
// original's gossip and poll, and serves the live page, its WebSocket feed
// and a JSON API on http://127.0.0.1:4900.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/backend"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/dispatch/web"
	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
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
	member := layout.DefaultMember()
	member.Register(fs)
	var (
		httpAddr = fs.String("http", "127.0.0.1:4900", "address of the web page and API")
		level    = fs.String("log-level", "info", "log level: debug, info, warn, error")
		protocol = fs.String("protocol", "default", "replication protocol: default or original")
		gossip   = fs.Duration("gossip", time.Second, "gossip interval")
		poll     = fs.Duration("poll", 2*time.Second, "poll interval")
		seed     = fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
		slot     = fs.Int("slot", 0, "node slot (0 is dispatch's)")
		quorum   = fs.String("write-quorum", "1", "acknowledge a create, terminate or assign home once this many cities merged it: a count, all (every city up), or 0 (from dispatch's memory: a crash right after can lose it)")
	)
	var clockFlags layout.ClockFlags
	clockFlags.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	proto, err := replication.ParseProtocol(*protocol)
	if err != nil {
		return err
	}
	writeQuorum, err := replication.ParseQuorum(*quorum)
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

	cfg, err := member.Config(messages.DispatchName, *slot)
	if err != nil {
		return err
	}
	hub := web.NewHub(web.DefaultHubConfig(), log.With("actor", "hub"))
	defer hub.Close()
	clock := crdt.NewClock(messages.DispatchName, clockFlags.Phys())

	// Cities' engines reach dispatch's through its inbox kind, which
	// hands their messages to the replica actor once it runs.
	var replicaRef atomic.Pointer[backend.Replica]
	inbox := backend.InboxKind(replicaRef.Load, log)
	n, err := node.Start(ctx, cfg, base, inbox)
	if err != nil {
		return err
	}
	defer func() {
		if err := n.Stop(); err != nil {
			log.Warn("stop", "err", err)
		}
	}()
	transport := wire.NewNodeTransport(n, log.With("actor", "outbox"))
	defer transport.Close()

	rc := replication.Preset(messages.DispatchName, replication.RoleDispatch, proto)
	rc.GossipInterval, rc.PollInterval, rc.Seed = *gossip, *poll, *seed
	rc.MaxClockOffset = clockFlags.EngineMaxOffset()
	rc.WriteQuorum = writeQuorum
	replica, group, err := backend.SpawnReplica(n.ActorSystem(), backend.ReplicaConfig{
		Clock:       clock,
		Rules:       city.DefaultConfig(),
		Replication: rc,
		Transport:   transport,
		Publish:     func(d crdt.Delta) { hub.Publish(service.DeltaEvent(d)) },
		Logger:      log,
	})
	if err != nil {
		return err
	}
	defer group.Stop()
	replicaRef.Store(replica)

	cities := backend.NodeCities{Node: n}
	be := backend.New(backend.Config{Seed: *seed, Logger: log}, replica, cities, hub)

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
	log.Info("dispatch up", "http", "http://"+*httpAddr, "protocol", proto, "write_quorum", *quorum)

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
