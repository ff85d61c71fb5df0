// Command dispatch runs the dispatch node of the Superhero Cluster:
//
//	go run ./dispatch
//
// It joins the cluster (hosting its inbox kind, which tells the cities
// dispatch is up; their replication engines send to its replica actor),
// keeps its own replica of the
// superheroes in one actor under a one_for_one supervisor (3 restarts in
// 1 s) whose replication engine pushes dispatch's writes and runs the
// original's gossip and poll, and serves the live page, its WebSocket feed
// and a JSON API on http://127.0.0.1:4900, with its Prometheus metrics at
// /metrics.
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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/backend"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/dispatch/web"
	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/metrics"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/internal/supervise"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

func main() {
	// Hero ids are random (version 4) UUIDs: take their randomness from a
	// pool filled 256 ids at a time instead of one system call per create.
	// The ids are names, not secrets.
	uuid.EnableRandPool()
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
		window   = fs.Duration("push-window", replication.DefaultDispatchConfig("").PushWindow, "with -write-quorum 0: how long writes that follow a push are coalesced into the next one (a write after a quiet spell goes at once; negative: never wait); with a write quorum, confirmations pace the pushes instead")
		seed     = fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
		slot     = fs.Int("slot", 0, "node slot (0 is dispatch's)")
		quorum   = fs.String("write-quorum", "1", "acknowledge a create, terminate or assign home once this many cities merged it: a count, all (every city up), or 0 (from dispatch's memory: a crash right after can lose it)")
		hosts    = fs.String("allowed-hosts", "", "comma-separated extra Host values the web server answers, as name (on the -http port) or name:port; always allowed: the -http address, localhost, 127.0.0.1 and [::1] with its port")
		maxConns = fs.Int("max-conns", web.DefaultConfig().MaxConns, "most connections the web server holds at once, WebSockets included; beyond it a connection is answered 503 and closed")
		maxWS    = fs.Int("max-websockets", web.DefaultConfig().MaxWebSockets, "most WebSocket connections at once (less than -max-conns); beyond it an upgrade gets 503")
		summary  = fs.Duration("log-summary", web.DefaultConfig().LogSummaryInterval, "how often the web server logs one line counting its requests and WebSocket commands (none when idle); each one is logged at debug")
		pprofAt  = fs.String("pprof", "", "serve Go's profiles at http://`ADDR`/debug/pprof/ (keep it on loopback); empty: off")
		token    = fs.String("api-token", os.Getenv("SUPERHERO_API_TOKEN"), "bearer token for the API, and for the page through a one-time login link printed at start (default $SUPERHERO_API_TOKEN); required when -http is not a loopback address")
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
	if *pprofAt != "" {
		ep, err := metrics.ListenProfiles(*pprofAt, log.With("actor", "pprof"))
		if err != nil {
			return fmt.Errorf("-pprof %s: %w", *pprofAt, err)
		}
		defer ep.Close()
	}
	hub := web.NewHub(web.DefaultHubConfig(), log.With("actor", "hub"))
	defer hub.Close()
	clock := crdt.NewClock(messages.DispatchName, clockFlags.Phys())

	rc := replication.Preset(messages.DispatchName, replication.RoleDispatch, proto)
	rc.GossipInterval, rc.PollInterval, rc.Seed = *gossip, *poll, *seed
	rc.PushWindow = *window
	rc.MaxClockOffset = clockFlags.EngineMaxOffset()
	rc.WriteQuorum = writeQuorum
	// The metrics outlive memberships, as the web server does: the
	// counters are shared by every membership's replica and outbox.
	reg := metrics.NewRegistry(messages.DispatchName)
	stats := &backend.ReplicaStats{}
	requests := metrics.NewRequests()
	if err := reg.Register(
		metrics.Replication(&stats.Replication),
		metrics.Restarts(backend.SupervisorName, &stats.Restarts),
		requests,
	); err != nil {
		return err
	}
	j := joiner{
		cfg: cfg,
		replica: backend.ReplicaConfig{
			Clock:       clock,
			Rules:       city.DefaultConfig(),
			Replication: rc,
			Publish:     func(d crdt.Delta) { hub.Publish(service.DeltaEvent(d)) },
			Logger:      log,
			Stats:       stats,
		},
		hub:      hub,
		requests: requests,
		seed:     *seed,
		base:     base,
		log:      log,
	}
	webCfg := web.DefaultConfig()
	webCfg.Addr = *httpAddr
	webCfg.APIToken = *token
	webCfg.MaxConns, webCfg.MaxWebSockets = *maxConns, *maxWS
	webCfg.LogSummaryInterval = *summary
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			webCfg.AllowedHosts = append(webCfg.AllowedHosts, h)
		}
	}
	// A web setting that cannot work fails before joining the cluster.
	if err := webCfg.Validate(); err != nil {
		return err
	}
	if webCfg.Metrics, err = web.NewMetrics(reg, hub, log.With("actor", "metrics")); err != nil {
		return err
	}
	m, err := j.join(ctx)
	if err != nil {
		return err
	}
	// The web server outlives memberships: it serves whichever is current.
	current := backend.NewCurrent(m.be)
	if err := reg.Register(backend.StatusMetrics(current)); err != nil {
		m.stop()
		return err
	}
	srv, err := web.New(webCfg, current, hub, log.With("actor", "web"))
	if err != nil {
		m.stop()
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	log.Info("dispatch up", "http", "http://"+*httpAddr, "protocol", proto, "write_quorum", *quorum)

	var runErr error
	for runErr == nil {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
		case err := <-errc:
			runErr = err
			errc = nil
		case <-m.group.Down():
			runErr = fmt.Errorf("supervisor gave up on %s after too many crashes", m.group.Reason())
			log.Error("dispatch is going down", "err", runErr)
		case <-m.node.Done():
			runErr = errors.New("cluster node stopped")
		case <-m.node.Excluded():
			// The cluster never takes a dropped member id back: rejoin as
			// a new member, carrying the replica over.
			current.Rejoining()
			state, err := m.replica.State()
			m.leave()
			if err != nil {
				runErr = fmt.Errorf("dropped by the cluster (%s), and the replica could not be carried over: %w", m.node.ExcludedReason(), err)
				break
			}
			log.Info("rejoining under a fresh member id", "heroes", len(state.Heroes))
			j.replica.Initial = state
			if m, err = j.join(ctx); err != nil {
				runErr = err
				break
			}
			current.Set(m.be)
			continue
		}
		break
	}
	cancel()
	if m != nil {
		m.stop()
	}
	if errc != nil {
		if err := <-errc; runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// joiner starts dispatch's cluster memberships.
type joiner struct {
	cfg      node.Config
	replica  backend.ReplicaConfig
	hub      *web.Hub
	requests *metrics.Requests // times the requests to cities
	seed     uint64
	base     *slog.Logger
	log      *slog.Logger
}

// membership is one cluster membership of dispatch: its node, replica and
// backend.
type membership struct {
	node      *node.Node
	transport *wire.NodeTransport
	replica   *backend.Replica
	group     *supervise.Group
	be        *backend.Backend
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	stopOnce  sync.Once
}

// join starts a membership: the node (hosting dispatch's inbox kind), the
// replica actor, which the cities' engines send to by name, and the
// backend's status probe.
func (j *joiner) join(ctx context.Context) (*membership, error) {
	m := &membership{}
	// The inbox kind tells the cities dispatch is up; it hands any
	// replication message sent to the grain to the replica actor.
	var replicaRef atomic.Pointer[backend.Replica]
	inbox := backend.InboxKind(replicaRef.Load, j.log)
	n, err := node.Start(ctx, j.cfg, j.base, inbox)
	if err != nil {
		return nil, err
	}
	m.node = n
	m.transport = wire.NewNodeTransport(n, j.log.With("actor", "outbox"), &j.replica.Stats.Replication.Outbox)
	rcfg := j.replica
	rcfg.Transport = m.transport
	replica, group, err := backend.SpawnReplica(n.ActorSystem(), rcfg)
	if err != nil {
		m.transport.Close()
		_ = n.Stop()
		return nil, err
	}
	m.replica, m.group = replica, group
	replicaRef.Store(replica)

	cities := backend.TimedCities{Cities: backend.NodeCities{Node: n}, Observe: j.requests.Observe}
	m.be = backend.New(backend.Config{Seed: j.seed, Logger: j.log}, replica, cities, j.hub)
	runCtx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.be.Run(runCtx) }()
	j.log.Info("dispatch joined", "address", n.Address(), "provider", j.cfg.Provider, "member_id", n.MemberID())
	return m, nil
}

// stop ends the membership: the status probe, the replica actor, the
// outbox and the node, in that order.
func (m *membership) stop() { m.end(m.node.Stop) }

// leave ends a membership the cluster has dropped, without the library's
// graceful hand-over (see node.Node.Leave).
func (m *membership) leave() { m.end(m.node.Leave) }

func (m *membership) end(stopNode func() error) {
	m.stopOnce.Do(func() {
		m.cancel()
		m.wg.Wait()
		m.group.Stop()
		m.transport.Close()
		if err := stopNode(); err != nil {
			slog.Warn("stop", "node", messages.DispatchName, "err", err)
		}
	})
}
