package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
)

// startMu serialises the library start sequence inside one process:
// remote.Start replaces gRPC's process-global logger on every call.
var startMu sync.Mutex

// MaxMessageSize is the largest message a node sends or accepts. gRPC's
// default of 4 MiB is less than a full replica of 100,000 heroes (about
// 5.7 MB); anti-entropy sends at most crdt.MaxSyncEntries entries per step,
// but a full state read (GetState) is one message.
const MaxMessageSize = 64 << 20

// StreamWindow is the gRPC flow-control window of every remoting stream
// and connection (gRPC's default starts at 64 KiB and grows by probing).
// 4 MiB lets a large anti-entropy step or state read go in one burst.
const StreamWindow = 4 << 20

// Node is a running cluster member. Its methods are safe for concurrent use.
type Node struct {
	cfg         Config
	clusterName string
	log         *slog.Logger
	system      *actor.ActorSystem
	cluster     *cluster.Cluster
	provider    cluster.ClusterProvider
	topo        *topology
	topoSub     *eventstream.Subscription

	stopOnce sync.Once
	stopErr  error
	stopped  chan struct{}

	// excluded is closed when the cluster has dropped this member (see
	// Excluded).
	excluded      chan struct{}
	excludeMu     sync.Mutex
	excludeReason string
	selfSeen      atomic.Bool
	// blocked mirrors the ids the library blocked (see noteBlocked).
	blockedMu sync.Mutex
	blocked   map[string]struct{}
}

// Start starts an actor system, remoting on cfg.Host:cfg.Port, the
// membership provider (challenge endpoint on cfg.Host:cfg.HealthPort,
// polling cfg.Peers; see package internal/membership), the
// disthash identity lookup and the cluster as a member hosting kinds (none
// for a pure client such as dispatch; it still joins as a member so it can
// see the topology).
//
// Both ports are checked before anything starts (ErrPortInUse); a library
// panic during start is recovered and returned as ErrStart with everything
// torn down. Start takes a little over one second (the library's StartMember
// sleeps 1 s). ctx is checked before the start and bounds the final health
// self-check; the library start itself cannot be interrupted. logger may be
// nil (slog.Default()).
func Start(ctx context.Context, cfg Config, logger *slog.Logger, kinds ...*cluster.Kind) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for _, k := range kinds {
		if k == nil || k.Kind == "" || k.Props == nil {
			return nil, fmt.Errorf("%w: nil or empty cluster kind", ErrInvalidConfig)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With(slog.String("node", cfg.Name))

	if err := checkPortFree(cfg.Host, cfg.Port, "remote"); err != nil {
		return nil, err
	}
	if cfg.Provider == ProviderAutomanaged {
		if err := checkPortFree(cfg.Host, cfg.HealthPort, "health"); err != nil {
			return nil, err
		}
	} else if err := checkEtcd(ctx, cfg); err != nil {
		return nil, err
	}

	// Library lines: same destination, node=<name>, filtered and de-duplicated.
	libHandler := newFilterHandler(log.Handler(), cfg.LibraryLogLevel, cfg.LogRepeatWindow)
	libLog := slog.New(libHandler).With(slog.String("lib", "protoactor"))

	n := &Node{
		cfg:         cfg,
		clusterName: effectiveClusterName(cfg.ClusterName, cfg.Cookie),
		log:         log,
		topo:        newTopology(),
		stopped:     make(chan struct{}),
		excluded:    make(chan struct{}),
	}
	auth := newAuthenticator(cfg.Cookie, cfg.AuthMaxSkew, libLog.With(slog.String("component", "auth")))
	auth.onBlocked = func(target string) {
		n.exclude("a peer refuses this member id", slog.String("peer", target))
	}

	if err := n.startUnderDeadline(libLog, auth, kinds); err != nil {
		return nil, err
	}

	if cfg.Provider == ProviderAutomanaged {
		if err := awaitOwnHealth(ctx, cfg, n.system.ID, 3*time.Second); err != nil {
			_ = n.Stop()
			return nil, fmt.Errorf("%w: %w", ErrStart, err)
		}
	}

	if err := n.spawnMemberCheck(); err != nil {
		_ = n.Stop()
		return nil, fmt.Errorf("%w: member check: %w", ErrStart, err)
	}
	go n.checkMembership(cfg.MemberCheckInterval)

	kindNames := make([]string, 0, len(kinds))
	for _, k := range kinds {
		kindNames = append(kindNames, k.Kind)
	}
	log.Info("cluster member started",
		slog.String("address", n.system.Address()),
		slog.String("provider", cfg.Provider),
		slog.Bool("tls", cfg.ServerTLS != nil),
		slog.String("cluster", n.clusterName),
		slog.String("member_id", n.system.ID),
		slog.Any("kinds", kindNames))
	return n, nil
}

// startUnderDeadline runs startLibrary. With etcd it is bounded by
// JoinTimeout: the library's StartMember waits forever, without a word,
// for an etcd that stopped answering after checkEtcd.
func (n *Node) startUnderDeadline(libLog *slog.Logger, auth *authenticator, kinds []*cluster.Kind) error {
	done := make(chan error, 1)
	go func() {
		startMu.Lock()
		defer startMu.Unlock()
		done <- n.startLibrary(libLog, auth, kinds)
	}()
	if n.cfg.Provider != ProviderEtcd {
		return <-done
	}
	t := time.NewTimer(n.cfg.JoinTimeout + 2*time.Second) // StartMember sleeps 1 s
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w: joining through etcd %v did not finish within %s", ErrDiscovery, n.cfg.Etcd, n.cfg.JoinTimeout)
	}
}

// startLibrary builds and starts the library objects, turning panics into
// ErrStart and cleaning up after a failure.
func (n *Node) startLibrary(libLog *slog.Logger, auth *authenticator, kinds []*cluster.Kind) (err error) {
	cfg := n.cfg
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("library panicked during start", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("%w: library panic: %v", ErrStart, r)
			n.abortStart()
		}
	}()

	n.system = actor.NewActorSystem(
		actor.WithLoggerFactory(func(s *actor.ActorSystem) *slog.Logger {
			return libLog.With(slog.String("member_id", s.ID))
		}),
	)
	// Subscribe before the cluster starts so the first topology is seen.
	n.topoSub = n.system.EventStream.Subscribe(func(ev any) {
		switch t := ev.(type) {
		case *cluster.ClusterTopology:
			n.onClusterTopology(t)
			n.watchSelf(t)
		case *cluster.GossipUpdate:
			n.watchGossip(t)
		}
	})

	// Fixed flow-control windows turn off gRPC's bandwidth-delay probe,
	// which sends a ping (and so wakes both ends) for every burst of data
	// received: on a stream of small replication messages that was about
	// one extra wake-up per push.
	opts := []remote.ConfigOption{
		remote.WithServerOptions(append(auth.serverOptions(cfg.ServerTLS),
			grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
			grpc.InitialWindowSize(StreamWindow), grpc.InitialConnWindowSize(StreamWindow))...),
		remote.WithDialOptions(append(auth.dialOptions(cfg.ClientTLS),
			grpc.WithInitialWindowSize(StreamWindow), grpc.WithInitialConnWindowSize(StreamWindow),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)))...),
	}
	if cfg.Advertise != "" {
		opts = append(opts, remote.WithAdvertisedHost(cfg.Advertise))
	}
	remoteCfg := remote.Configure(cfg.Host, cfg.Port, opts...)
	remoteCfg.MaxRetryCount = cfg.ConnectAttempts

	switch cfg.Provider {
	case ProviderEtcd:
		p, err := etcd.NewWithConfig(cfg.EtcdPrefix, etcdClientConfig(cfg))
		if err != nil {
			return fmt.Errorf("%w: etcd client for %v: %w", ErrDiscovery, cfg.Etcd, err)
		}
		n.provider = p
	default:
		p, err := newMembershipProvider(cfg, n.log)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrStart, err)
		}
		n.provider = p
	}
	clusterCfg := cluster.Configure(n.clusterName, n.provider, disthash.New(), remoteCfg,
		cluster.WithKinds(kinds...),
		cluster.WithRequestTimeout(cfg.RequestTimeout),
	)
	n.cluster = cluster.New(n.system, clusterCfg)
	n.cluster.StartMember()
	return nil
}

// abortStart tears down whatever startLibrary managed to start. Each step
// may panic on a half-started library object; each is guarded separately.
func (n *Node) abortStart() {
	n.stopOnce.Do(func() {
		close(n.stopped)
		if n.provider != nil {
			_ = n.shutdown(func() { _ = n.provider.Shutdown(false) })
		}
		if n.cluster != nil {
			_ = n.shutdown(func() { n.cluster.Shutdown(false) })
		}
		if n.system != nil {
			if n.topoSub != nil {
				n.system.EventStream.Unsubscribe(n.topoSub)
			}
			_ = n.shutdown(func() {
				if !n.system.IsStopped() {
					n.system.Shutdown()
				}
			})
		}
	})
}

// Stop leaves the cluster gracefully and releases both ports. It is
// idempotent, never panics (a library panic is recovered, logged and
// reported as ErrShutdownPanic) and never blocks longer than
// Config.StopTimeout (ErrStopTimeout). The returned error is informational:
// the node is stopped either way. Peers notice the departure at their next
// health poll.
func (n *Node) Stop() error { return n.stop(true) }

// Leave stops the node without the library's graceful hand-over, which
// waits 2 s for grain ownership to move: it leaves the discovery service
// (the etcd key, or the health endpoint), then stops the actor system and
// remoting at once. It is for a member the cluster has already dropped
// (see Excluded), which rejoins under a fresh id: nothing of it is still
// owned by anyone. Like Stop, it is idempotent and never blocks longer than
// Config.StopTimeout.
func (n *Node) Leave() error { return n.stop(false) }

func (n *Node) stop(graceful bool) error {
	n.stopOnce.Do(func() {
		close(n.stopped)
		n.log.Info("cluster member stopping", slog.Bool("graceful", graceful))
		start := time.Now()
		if graceful {
			n.stopErr = n.shutdown(func() { n.cluster.Shutdown(true) })
		} else {
			n.stopErr = errors.Join(
				n.shutdown(func() {
					if err := n.provider.Shutdown(true); err != nil {
						// The etcd key then expires with its lease.
						n.log.Warn("leaving the discovery service", slog.Any("error", err))
					}
				}),
				n.shutdown(func() { n.cluster.Shutdown(false) }))
		}
		if n.topoSub != nil {
			n.system.EventStream.Unsubscribe(n.topoSub)
		}
		if n.stopErr != nil {
			n.log.Warn("cluster member stopped with error", slog.Any("error", n.stopErr), slog.Duration("took", time.Since(start)))
		} else {
			n.log.Info("cluster member stopped", slog.Duration("took", time.Since(start)))
		}
	})
	return n.stopErr
}

// shutdown runs fn with a panic guard and a time limit.
func (n *Node) shutdown(fn func()) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				n.log.Error("library panicked during shutdown", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
				done <- fmt.Errorf("%w: %v", ErrShutdownPanic, r)
			}
		}()
		fn()
		done <- nil
	}()
	t := time.NewTimer(n.cfg.StopTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w after %s", ErrStopTimeout, n.cfg.StopTimeout)
	}
}

// Done is closed when Stop has been called.
func (n *Node) Done() <-chan struct{} { return n.stopped }

func (n *Node) isStopped() bool {
	select {
	case <-n.stopped:
		return true
	default:
		return false
	}
}

// Name returns the member's logical name (Config.Name).
func (n *Node) Name() string { return n.cfg.Name }

// Address returns the member's remoting address ("host:port").
func (n *Node) Address() string { return n.system.Address() }

// MemberID returns the member's actor-system id (new on every start).
func (n *Node) MemberID() string { return n.system.ID }

// ClusterName returns the library's cluster name: Config.ClusterName plus
// the cookie fingerprint. It is not served; health answers carry
// Config.ClusterName only.
func (n *Node) ClusterName() string { return n.clusterName }

// ActorSystem returns the underlying actor system, e.g. to spawn local
// actors. Prefer Request/Send for cluster grains.
func (n *Node) ActorSystem() *actor.ActorSystem { return n.system }
