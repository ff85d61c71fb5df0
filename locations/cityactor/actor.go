package cityactor

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

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

// Kind returns the cluster kind that hosts the named city. Only that city's
// node registers it, so disthash can place the grain nowhere else.
func Kind(city string) string { return "city-" + city }

// Ticks the state actor sends itself.
type (
	patrolTick  struct{}
	fightTick   struct{}
	collectTick struct{}
)

// ticker sends msg to pid every interval until stopped.
type ticker struct {
	stop chan struct{}
	done chan struct{}
}

func startTicker(root *actor.RootContext, pid *actor.PID, interval time.Duration, msg any) *ticker {
	t := &ticker{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tk.C:
				root.Send(pid, msg)
			}
		}
	}()
	return t
}

func (t *ticker) Stop() {
	close(t.stop)
	<-t.done
}

// stateActor owns one incarnation of the city. Each restart makes a new
// one with an empty replica: gossip refills it.
type stateActor struct {
	newServer func() (*Server, error)
	log       *slog.Logger
	srv       *Server
	tickers   []*ticker
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
		a.srv.Patrol()
	case fightTick:
		a.srv.Fight()
	case collectTick:
		a.srv.CollectTombstones()
	case *messages.GetState:
		st, err := a.srv.State()
		a.reply(ctx, m, st, err)
	case *messages.GetDigest:
		d, err := a.srv.Digest()
		a.reply(ctx, m, d, err)
	case *messages.MergeDelta:
		a.onMerge(ctx, m)
	case *messages.SyncRequest:
		reply, _, err := a.srv.Sync(m)
		a.reply(ctx, m, reply, err)
	case *messages.AssignHero:
		reply, _ := a.srv.Assign(m)
		ctx.Respond(reply)
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
	root := ctx.ActorSystem().Root
	rules := srv.Rules()
	a.tickers = []*ticker{
		startTicker(root, ctx.Self(), rules.PatrolInterval, patrolTick{}),
		startTicker(root, ctx.Self(), rules.FightInterval, fightTick{}),
		startTicker(root, ctx.Self(), srv.cfg.GCInterval, collectTick{}),
	}
}

func (a *stateActor) stopTimers() {
	for _, t := range a.tickers {
		t.Stop()
	}
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

// reply answers a request or, on error, logs it and leaves the caller to
// its deadline: these messages have no error reply.
func (a *stateActor) reply(ctx actor.Context, req, reply any, err error) {
	if err != nil {
		a.log.Warn("request failed", "type", fmt.Sprintf("%T", req), "err", err)
		return
	}
	ctx.Respond(reply)
}

// supervisorActor parents the state actor under the original's limits and
// reports when it gives up.
type supervisorActor struct {
	props    *actor.Props
	onGiveUp func()
	log      *slog.Logger
	child    *actor.PID
	stopping bool
}

// childQuery asks the supervisor for its child's PID.
type childQuery struct{}

func (s *supervisorActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case childQuery:
		ctx.Respond(s.child)
	case *actor.Stopping:
		s.stopping = true
	case *actor.Started:
		child, err := ctx.SpawnNamed(s.props, "state")
		if err != nil {
			s.log.Error("cannot spawn city state", "err", err)
			s.onGiveUp()
			return
		}
		s.child = child
	case *actor.Terminated:
		if !s.stopping && s.child != nil && m.Who.Equal(s.child) {
			s.log.Error("city gave up: too many crashes", "limit", MaxRestarts, "window", RestartWindow)
			s.onGiveUp()
		}
	}
}

// City is a running city: its supervisor and state actors and the props of
// the grain that fronts them.
type City struct {
	name       string
	supervisor *actor.PID
	state      *actor.PID
	down       chan struct{}
	system     *actor.ActorSystem
}

// Spawn starts the supervised city state on system. Down is closed when the
// supervisor gives up.
func Spawn(system *actor.ActorSystem, cfg Config) (*City, error) {
	cfg = cfg.withDefaults()
	if _, err := NewServer(cfg, 0); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("actor", "city-state")
	var incarnation atomic.Uint64
	stateProps := actor.PropsFromProducer(func() actor.Actor {
		return &stateActor{
			log: log,
			newServer: func() (*Server, error) {
				return NewServer(cfg, incarnation.Add(1))
			},
		}
	})
	c := &City{name: string(cfg.City), down: make(chan struct{}), system: system}
	var once sync.Once
	giveUp := func() { once.Do(func() { close(c.down) }) }
	strategy := actor.NewOneForOneStrategy(MaxRestarts, RestartWindow, func(reason any) actor.Directive {
		return actor.RestartDirective
	})
	supProps := actor.PropsFromProducer(func() actor.Actor {
		return &supervisorActor{props: stateProps, onGiveUp: giveUp, log: cfg.Logger.With("actor", "city-supervisor")}
	}, actor.WithSupervisor(strategy))
	pid, err := system.Root.SpawnNamed(supProps, Kind(c.name)+"-supervisor")
	if err != nil {
		return nil, fmt.Errorf("cityactor: spawn supervisor: %w", err)
	}
	c.supervisor = pid
	// Started (which spawns the child) is handled before any user message,
	// so this answers once the state actor exists.
	res, err := system.Root.RequestFuture(pid, childQuery{}, 5*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("cityactor: supervisor did not start: %w", err)
	}
	state, ok := res.(*actor.PID)
	if !ok || state == nil {
		return nil, errors.New("cityactor: city state did not start")
	}
	c.state = state
	return c, nil
}

// State returns the PID of the state actor; it is stable across restarts.
func (c *City) State() *actor.PID { return c.state }

// Down is closed when the city has crashed too often and stopped for good.
func (c *City) Down() <-chan struct{} { return c.down }

// Stop stops the city's actors and waits for them.
func (c *City) Stop() {
	_ = c.system.Root.StopFuture(c.supervisor).Wait()
}

// GrainKind returns the cluster kind for this city: a thin grain that
// forwards every request to the state actor, keeping the sender so the
// state actor answers the caller directly.
func (c *City) GrainKind() *cluster.Kind {
	state := c.state
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *messages.GetState, *messages.GetDigest, *messages.MergeDelta,
			*messages.SyncRequest, *messages.AssignHero, *messages.Bomb:
			ctx.Forward(state)
		}
	})
	return cluster.NewKind(Kind(c.name), props)
}
