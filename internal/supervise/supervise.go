// Package supervise runs actors under an Erlang-style one_for_one
// supervisor with a restart limit: a child that crashes is restarted, and
// when crashes exceed the limit within the window the child is stopped and
// the group reports that it gave up, so the node can exit ("let it crash",
// then let the node go). Both the city node and dispatch use it.
package supervise

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Config is a supervisor's restart limit.
type Config struct {
	// Name is the supervisor's actor name; children are Name/<child>.
	Name string
	// MaxRestarts is how many restarts are allowed within Window; one more
	// crash inside the window stops the child and the group gives up.
	MaxRestarts int
	// Window is the sliding window for MaxRestarts.
	Window time.Duration
	// Logger receives the supervisor's log lines. Default slog.Default().
	Logger *slog.Logger
	// Restarts counts the restarts of the children (a crash that stops a
	// child for good is not one); share one counter across groups, such
	// as a node's successive cluster memberships, to count since the
	// process started. Default: the group's own.
	Restarts *atomic.Uint64
}

// Child is one supervised actor.
type Child struct {
	Name  string
	Props *actor.Props
}

// Group is a running supervisor and its children.
type Group struct {
	system   *actor.ActorSystem
	pid      *actor.PID
	children map[string]*actor.PID
	down     chan struct{}
	reason   string
	restarts *atomic.Uint64
}

// childrenQuery asks the supervisor for its children's PIDs.
type childrenQuery struct{}

type supervisor struct {
	cfg      Config
	children []Child
	pids     map[string]*actor.PID
	giveUp   func(string)
	stopping bool
}

func (s *supervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.pids = make(map[string]*actor.PID, len(s.children))
		for _, c := range s.children {
			pid, err := ctx.SpawnNamed(c.Props, c.Name)
			if err != nil {
				s.cfg.Logger.Error("cannot spawn child", "child", c.Name, "err", err)
				s.giveUp(c.Name)
				continue
			}
			s.pids[c.Name] = pid
		}
	case childrenQuery:
		ctx.Respond(s.pids)
	case *actor.Stopping:
		s.stopping = true
	case *actor.Terminated:
		if s.stopping {
			return
		}
		for name, pid := range s.pids {
			if pid.Equal(m.Who) {
				s.cfg.Logger.Error("gave up: too many crashes", "child", name,
					"max_restarts", s.cfg.MaxRestarts, "window", s.cfg.Window)
				s.giveUp(name)
			}
		}
	}
}

// Spawn starts the supervisor and its children on system. It returns once
// every child exists, so their PIDs can be used at once.
func Spawn(system *actor.ActorSystem, cfg Config, children ...Child) (*Group, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Restarts == nil {
		cfg.Restarts = &atomic.Uint64{}
	}
	cfg.Logger = cfg.Logger.With("actor", cfg.Name)
	g := &Group{system: system, down: make(chan struct{}), restarts: cfg.Restarts}
	var once sync.Once
	giveUp := func(child string) {
		once.Do(func() {
			g.reason = child
			close(g.down)
		})
	}
	strategy := actor.NewOneForOneStrategy(cfg.MaxRestarts, cfg.Window, func(reason any) actor.Directive {
		cfg.Logger.Warn("child crashed", "reason", fmt.Sprint(reason))
		return actor.RestartDirective
	})
	props := actor.PropsFromProducer(func() actor.Actor {
		return &supervisor{cfg: cfg, children: children, giveUp: giveUp}
	}, actor.WithSupervisor(countRestarts{strategy, cfg.Restarts}))
	pid, err := system.Root.SpawnNamed(props, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("supervise: spawn %s: %w", cfg.Name, err)
	}
	g.pid = pid
	// Started, which spawns the children, runs before any user message.
	res, err := system.Root.RequestFuture(pid, childrenQuery{}, 5*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("supervise: %s did not start: %w", cfg.Name, err)
	}
	pids, ok := res.(map[string]*actor.PID)
	if !ok || len(pids) != len(children) {
		_ = system.Root.StopFuture(pid).Wait()
		return nil, errors.New("supervise: " + cfg.Name + ": children did not start")
	}
	g.children = pids
	return g, nil
}

// countRestarts is a supervisor strategy that counts the restarts the
// strategy it wraps orders.
type countRestarts struct {
	actor.SupervisorStrategy
	n *atomic.Uint64
}

func (s countRestarts) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any) {
	s.SupervisorStrategy.HandleFailure(system, restartCounter{sup, s.n}, child, rs, reason, message)
}

// restartCounter counts the restarts a strategy orders of its supervisor.
type restartCounter struct {
	actor.Supervisor
	n *atomic.Uint64
}

func (r restartCounter) RestartChildren(pids ...*actor.PID) {
	r.n.Add(uint64(len(pids)))
	r.Supervisor.RestartChildren(pids...)
}

// Restarts returns how many times the children were restarted after a
// crash (counted in Config.Restarts).
func (g *Group) Restarts() uint64 { return g.restarts.Load() }

// Child returns the PID of the named child; it is stable across restarts.
func (g *Group) Child(name string) *actor.PID { return g.children[name] }

// Down is closed when the supervisor gives up on a child.
func (g *Group) Down() <-chan struct{} { return g.down }

// Reason names the child that exceeded the limit, once Down is closed.
func (g *Group) Reason() string {
	select {
	case <-g.down:
		return g.reason
	default:
		return ""
	}
}

// Stop stops the supervisor and its children and waits for them.
func (g *Group) Stop() { _ = g.system.Root.StopFuture(g.pid).Wait() }
