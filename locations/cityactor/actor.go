package cityactor

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/supervise"
	"github.com/superhero-cluster/superhero/messages"
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
	patrolTick  struct{}
	fightTick   struct{}
	collectTick struct{}
)

// stateActor owns one incarnation of the city. Each restart makes a new
// one with an empty replica: gossip refills it.
type stateActor struct {
	newServer func() (*Server, error)
	log       *slog.Logger
	srv       *Server
	tickers   []*supervise.Ticker
	// replicator spreads local writes; nil when replication is off.
	replicator *actor.PID
	stats      *Stats
}

// Receive only routes messages to Server.
func (a *stateActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.onStarted(ctx)
	case *actor.Stopping, *actor.Restarting:
		a.stopTimers()
	case *actor.Stopped:
	case patrolTick:
		a.spread(ctx, a.srv.Patrol())
	case fightTick:
		a.spread(ctx, a.srv.Fight())
	case collectTick:
		a.srv.CollectTombstones()
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
		reply, _, err := a.srv.Sync(m)
		// Count replies this city gives to a peer's exchange; its own
		// exchanges are counted by its replicator, dispatch's are not
		// city-to-city traffic.
		if err == nil && m.From != messages.DispatchName && m.From != string(a.srv.cfg.City) && len(reply.Msg) > 0 {
			a.stats.SyncBytes.Add(uint64(len(reply.Msg)))
		}
		a.reply(ctx, m, reply, err)
	case *messages.AssignHero:
		reply, changed := a.srv.Assign(m)
		ctx.Respond(reply)
		a.spread(ctx, changed)
	case *messages.GetStats:
		ctx.Respond(a.srv.Stats(a.stats))
	case *messages.Bomb:
		a.onBomb(ctx)
	default:
		a.log.Warn("unknown message", "type", fmt.Sprintf("%T", m))
	}
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
	a.log.Info("city started", "replica", "empty")
	if a.replicator != nil {
		// Ask for a refill at once rather than at the next round.
		ctx.Send(a.replicator, restarted{})
	}
	root := ctx.ActorSystem().Root
	rules := srv.Rules()
	a.tickers = []*supervise.Ticker{
		supervise.Every(root, ctx.Self(), rules.PatrolInterval, patrolTick{}),
		supervise.Every(root, ctx.Self(), rules.FightInterval, fightTick{}),
		supervise.Every(root, ctx.Self(), srv.cfg.GCInterval, collectTick{}),
	}
}

func (a *stateActor) stopTimers() {
	supervise.StopAll(a.tickers)
	a.tickers = nil
}

func (a *stateActor) onMerge(ctx actor.Context, m *messages.MergeDelta) {
	changed, err := a.srv.Merge(m)
	if err != nil {
		a.log.Warn("bad delta", "err", err)
	}
	if ctx.Sender() != nil {
		ctx.Respond(&messages.MergeAck{Changed: uint32(changed.Len())})
	}
}

// onBomb acknowledges, then crashes on purpose: the supervisor decides
// whether the city restarts empty or is gone for good.
func (a *stateActor) onBomb(ctx actor.Context) {
	a.log.Warn("bombed", "heroes", a.srv.Replica().Len())
	ctx.Respond(&messages.BombAck{City: string(a.srv.cfg.City)})
	panic(ErrBombed)
}

// spread hands the city's own write to the replicator.
func (a *stateActor) spread(ctx actor.Context, d crdt.Delta) {
	if a.replicator != nil && d.Len() > 0 {
		ctx.Send(a.replicator, localWrite{delta: d})
	}
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

// City is a running city: its supervisor and state actor, and the grain
// kind that fronts them in the cluster.
type City struct {
	name  string
	group *supervise.Group
	stats *Stats
}

// Stats returns the city's replication counters.
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
	sup := supervisorName(name)
	statePID := actor.NewPID(system.Address(), sup+"/state")
	var replicatorPID *actor.PID
	stats := &Stats{}
	children := []supervise.Child{}
	if cfg.Replication.Peers != nil {
		rc := cfg.Replication.withDefaults()
		replicatorPID = actor.NewPID(system.Address(), sup+"/replicator")
		children = append(children, supervise.Child{Name: "replicator", Props: actor.PropsFromProducer(func() actor.Actor {
			return &replicator{
				city:  name,
				cfg:   rc,
				state: statePID,
				stats: stats,
				log:   cfg.Logger.With("actor", "city-replicator"),
				rng:   rand.New(rand.NewPCG(cfg.Seed, 0xae)),
			}
		})})
	}
	var incarnation atomic.Uint64
	stateProps := actor.PropsFromProducer(func() actor.Actor {
		return &stateActor{
			log:        log,
			replicator: replicatorPID,
			stats:      stats,
			newServer: func() (*Server, error) {
				return NewServer(cfg, incarnation.Add(1))
			},
		}
	})
	// The replicator starts first, so the state actor's first refill
	// request finds it.
	children = append(children, supervise.Child{Name: "state", Props: stateProps})
	g, err := supervise.Spawn(system, supervise.Config{
		Name:        sup,
		MaxRestarts: MaxRestarts,
		Window:      RestartWindow,
		Logger:      cfg.Logger,
	}, children...)
	if err != nil {
		return nil, fmt.Errorf("cityactor: %w", err)
	}
	return &City{name: name, group: g, stats: stats}, nil
}

// State returns the PID of the state actor; it is stable across restarts.
func (c *City) State() *actor.PID { return c.group.Child("state") }

// Down is closed when the city has crashed too often and stopped for good.
func (c *City) Down() <-chan struct{} { return c.group.Down() }

// Stop stops the city's actors and waits for them.
func (c *City) Stop() { c.group.Stop() }

// supervisorName is the city supervisor's actor name; the state actor is
// its child "state".
func supervisorName(city string) string { return messages.CityKind(city) + "-supervisor" }

// GrainKind returns the cluster kind for the named city,
// messages.CityKind(city): a thin grain that forwards every request to the
// city's state actor on the same node, keeping the sender so the state
// actor answers the caller directly. The state actor has a fixed name, so
// the kind can be registered before the city is spawned; a request that
// arrives in between is dead-lettered and retried by the caller.
func GrainKind(city string) *cluster.Kind {
	stateID := supervisorName(city) + "/state"
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *messages.GetState, *messages.GetDigest, *messages.GetHero, *messages.GetStats, *messages.MergeDelta,
			*messages.SyncRequest, *messages.AssignHero, *messages.Bomb:
			ctx.Forward(actor.NewPID(ctx.ActorSystem().Address(), stateID))
		}
	})
	return cluster.NewKind(messages.CityKind(city), props)
}
