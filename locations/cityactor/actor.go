package cityactor

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/supervise"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// ErrBombed is the panic value of a deliberate crash.
var ErrBombed = errors.New("cityactor: city bombed")

// Supervision limits of the original: 3 restarts within 5 s; the 4th crash
// inside the window stops the city for good.
const (
	MaxRestarts   = 3
	RestartWindow = 5 * time.Second
)

// Ticks the state actor sends itself.
type (
	patrolTick struct{}
	fightTick  struct{}
	// engineTick wakes the actor when its replication engine has
	// something due.
	engineTick struct{}
)

// stateActor owns one incarnation of the city: its replica, rules and
// replication engine. Each restart makes a new one with an empty replica,
// whose engine asks a peer city for a refill at once.
type stateActor struct {
	newServer func() (*Server, error)
	log       *slog.Logger
	srv       *Server
	tickers   []*supervise.Ticker
	transport Transport
	stats     *Stats
	drv       *wire.Driver
	// exchanges is the engine's exchange count already added to stats.
	exchanges uint64
}

// Receive routes messages to Server and then acts on what the engine
// wants done.
func (a *stateActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		a.onStarted(ctx)
		a.drive(ctx)
		return
	case *actor.Stopping, *actor.Restarting:
		a.stopTimers()
		return
	case *actor.Stopped:
		return
	}
	if a.srv == nil {
		return
	}
	a.drv.Tick()
	switch m := ctx.Message().(type) {
	case engineTick:
		a.drv.Woken()
	case patrolTick:
		a.srv.Patrol()
	case fightTick:
		a.srv.Fight()
	case *messages.Replicate:
		a.onReplicate(m)
	case *messages.GetState:
		st, err := a.srv.State()
		a.reply(ctx, m, st, err)
	case *messages.GetDigest:
		d, err := a.srv.Digest()
		a.reply(ctx, m, d, err)
	case *messages.GetHero:
		h, err := a.srv.Hero(m)
		a.reply(ctx, m, h, err)
	case *messages.MergeDelta:
		a.onMerge(ctx, m)
	case *messages.SyncRequest:
		reply, err := a.srv.Sync(m)
		a.reply(ctx, m, reply, err)
	case *messages.AssignHero:
		ctx.Respond(a.srv.Assign(m))
	case *messages.GetStats:
		ctx.Respond(a.srv.Stats(a.stats))
	case *messages.Bomb:
		a.onBomb(ctx)
	default:
		a.log.Warn("unknown message", "type", fmt.Sprintf("%T", m))
	}
	a.drive(ctx)
}

func (a *stateActor) onStarted(ctx actor.Context) {
	srv, err := a.newServer()
	if err != nil {
		// A configuration error: crashing would only repeat it.
		a.log.Error("cannot start city", "err", err)
		ctx.Stop(ctx.Self())
		return
	}
	a.srv = srv
	a.log = srv.log
	a.drv = wire.NewDriver(srv.Engine(), a.transport, &a.stats.Replication)
	a.exchanges = 0
	if n := a.srv.Replica().Len(); n > 0 {
		a.log.Info("city started", "replica", "carried over", "heroes", n)
	} else {
		a.log.Info("city started", "replica", "empty")
	}
	root := ctx.ActorSystem().Root
	rules := srv.Rules()
	a.tickers = []*supervise.Ticker{
		supervise.Every(root, ctx.Self(), rules.PatrolInterval, patrolTick{}),
		supervise.Every(root, ctx.Self(), rules.FightInterval, fightTick{}),
	}
	// The first tick starts the engine: a new, empty replica asks a peer
	// city for a refill at once.
	a.drv.Tick()
}

func (a *stateActor) stopTimers() {
	supervise.StopAll(a.tickers)
	a.tickers = nil
	if a.drv != nil {
		a.drv.Stop()
	}
}

// onReplicate steps the engine with a message from another node. Refused
// stamps are reported, rate-limited, through the engine's Ready.
func (a *stateActor) onReplicate(m *messages.Replicate) {
	if err := a.srv.Step(m); err != nil && !errors.Is(err, crdt.ErrClockOffset) {
		a.log.Warn("bad replication message", "from", m.GetFrom(), "err", err)
	}
}

// drive sends what the engine has ready, counts it, logs its refusals and
// arms the timer for its next deadline.
func (a *stateActor) drive(ctx actor.Context) {
	if a.srv == nil {
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.drv.Flush(a.count, func(rd replication.Ready) {
		for _, r := range rd.Refusals {
			a.log.Warn("refused writes", "peer", r.Peer, "err", r.Err, "suppressed", r.Suppressed)
		}
	}, func() { root.Send(self, engineTick{}) })
	if n := a.srv.Engine().Stats().Exchanges; n > a.exchanges {
		a.stats.SyncRounds.Add(n - a.exchanges)
		a.exchanges = n
	}
}

// count adds a message sent to the city's counters.
func (a *stateActor) count(m replication.Message, size int) {
	switch m.Kind {
	case replication.MsgPush:
		a.stats.Pushes.Add(1)
		a.stats.PushBytes.Add(uint64(size))
	case replication.MsgSync, replication.MsgSyncReply:
		if m.To != messages.DispatchName {
			a.stats.SyncBytes.Add(uint64(size))
		}
	}
}

func (a *stateActor) onMerge(ctx actor.Context, m *messages.MergeDelta) {
	changed, err := a.srv.Merge(m)
	if err != nil && !errors.Is(err, crdt.ErrClockOffset) {
		a.log.Warn("bad delta", "from", m.GetFrom(), "err", err)
	}
	if ctx.Sender() != nil {
		ctx.Respond(&messages.MergeAck{Changed: uint32(changed)})
	}
}

// onBomb acknowledges, then crashes on purpose: the supervisor decides
// whether the city restarts empty or is gone for good.
func (a *stateActor) onBomb(ctx actor.Context) {
	a.log.Warn("bombed", "heroes", a.srv.Replica().Len())
	ctx.Respond(&messages.BombAck{City: string(a.srv.cfg.City)})
	panic(ErrBombed)
}

// reply answers a request or, on error, logs it and leaves the caller to
// its deadline: these messages have no error reply.
func (a *stateActor) reply(ctx actor.Context, req, reply any, err error) {
	if err != nil {
		a.log.Warn("request failed", "type", fmt.Sprintf("%T", req), "err", err)
		return
	}
	ctx.Respond(reply)
}

// City is a running city: its supervisor, whose one child is the state
// actor. GrainKind fronts it in the cluster.
type City struct {
	group *supervise.Group
	stats *Stats
}

// Stats returns the city's counters.
func (c *City) Stats() *Stats { return c.stats }

// Spawn starts the supervised city state on system. Down is closed when the
// supervisor gives up.
func Spawn(system *actor.ActorSystem, cfg Config) (*City, error) {
	cfg = cfg.withDefaults()
	if _, err := NewServer(cfg, 0); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("actor", "city-state")
	name := string(cfg.City)
	stats := cfg.Stats
	if stats == nil {
		stats = &Stats{}
	}
	var incarnation atomic.Uint64
	incarnation.Store(cfg.PriorIncarnations)
	stateProps := actor.PropsFromProducer(func() actor.Actor {
		return &stateActor{
			log:       log,
			stats:     stats,
			transport: cfg.Transport,
			newServer: func() (*Server, error) {
				return NewServer(cfg, incarnation.Add(1))
			},
		}
	})
	g, err := supervise.Spawn(system, supervise.Config{
		Name:        SupervisorName(name),
		MaxRestarts: MaxRestarts,
		Window:      RestartWindow,
		Logger:      cfg.Logger,
		Restarts:    &stats.Restarts,
	}, supervise.Child{Name: messages.CityStateChild, Props: stateProps})
	if err != nil {
		return nil, fmt.Errorf("cityactor: %w", err)
	}
	return &City{group: g, stats: stats}, nil
}

// Snapshot returns the city's whole replica and its incarnation number, to
// carry them into a new membership (see Config.Initial).
func (c *City) Snapshot(system *actor.ActorSystem, timeout time.Duration) (crdt.Delta, uint64, error) {
	res, err := system.Root.RequestFuture(c.State(), &messages.GetState{}, timeout).Result()
	if err != nil {
		return crdt.Delta{}, 0, fmt.Errorf("cityactor: snapshot: %w", err)
	}
	st, ok := res.(*messages.State)
	if !ok {
		return crdt.Delta{}, 0, fmt.Errorf("cityactor: snapshot: unexpected reply %T", res)
	}
	var d crdt.Delta
	if err := d.UnmarshalBinary(st.GetDelta()); err != nil {
		return crdt.Delta{}, 0, fmt.Errorf("cityactor: snapshot: %w", err)
	}
	return d, st.GetIncarnation(), nil
}

// State returns the PID of the state actor; it is stable across restarts.
func (c *City) State() *actor.PID { return c.group.Child(messages.CityStateChild) }

// Down is closed when the city has crashed too often and stopped for good.
func (c *City) Down() <-chan struct{} { return c.group.Down() }

// Stop stops the city's actors and waits for them.
func (c *City) Stop() { c.group.Stop() }

// SupervisorName is the city supervisor's actor name; the state actor is
// its child messages.CityStateChild.
func SupervisorName(city string) string { return messages.CitySupervisor(city) }

// GrainKind returns the cluster kind for the named city,
// messages.CityKind(city): a thin grain that forwards every request to the
// city's state actor on the same node, keeping the sender so the state
// actor answers the caller directly. Replication messages skip the grain:
// peers' engines send them to the state actor by its name
// (messages.CityStateActor, see wire.EngineActor). The state actor has a
// fixed name, so the kind can be registered before the city is spawned; a
// request that arrives in between is dead-lettered and retried by the
// caller.
func GrainKind(city string) *cluster.Kind {
	stateID := messages.CityStateActor(city)
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *messages.Replicate, *messages.GetState, *messages.GetDigest, *messages.GetHero, *messages.GetStats,
			*messages.MergeDelta, *messages.SyncRequest, *messages.AssignHero, *messages.Bomb:
			ctx.Forward(actor.NewPID(ctx.ActorSystem().Address(), stateID))
		}
	})
	return cluster.NewKind(messages.CityKind(city), props)
}
