package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/superhero-cluster/superhero/internal/supervise"
)

// Dispatch's supervision limits, as in the original: 3 restarts in 1 s.
const (
	MaxRestarts   = 3
	RestartWindow = time.Second
)

type (
	gossipTick struct{}
	pollTick   struct{}
)

// gossipActor runs a gossip round every interval. A round that fails
// because a city went away crashes the actor on purpose: the supervisor
// restarts it and the next round picks among the cities still up ("let it
// crash", as the original's GossipServer). Rounds are skipped, with a debug
// line, while fewer than two cities are up: that is a state of the cluster,
// not a fault. One round a second cannot crash more than once a second, so
// a dead city never exhausts the 3-in-1 s limit on its own.
type gossipActor struct {
	g        *Gossiper
	interval time.Duration
	log      *slog.Logger
	ticker   *supervise.Ticker
}

func (a *gossipActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		a.ticker = supervise.Every(ctx.ActorSystem().Root, ctx.Self(), a.interval, gossipTick{})
	case *actor.Stopping, *actor.Restarting:
		if a.ticker != nil {
			a.ticker.Stop()
			a.ticker = nil
		}
	case gossipTick:
		a.onTick()
	case *actor.Stopped:
	default:
		a.log.Warn("unknown message", "type", fmt.Sprintf("%T", ctx.Message()))
	}
}

func (a *gossipActor) onTick() {
	ctx, cancel := context.WithTimeout(context.Background(), deadline(a.interval))
	defer cancel()
	res, err := a.g.Round(ctx)
	switch {
	case errors.Is(err, ErrTooFewCities):
		a.log.Debug("gossip skipped", "reason", err)
	case err != nil:
		a.log.Warn("gossip failed; crashing", "from", res.From, "to", res.To, "err", err)
		panic(err)
	default:
		a.log.Debug("gossiped", "from", res.From, "to", res.To, "steps", res.Steps)
	}
}

// pollActor reads a random city into dispatch's store every interval; the
// store's change hook pushes what changed to the pages. Failures crash it,
// as the gossip actor.
type pollActor struct {
	p        *Poller
	interval time.Duration
	log      *slog.Logger
	ticker   *supervise.Ticker
}

func (a *pollActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		a.ticker = supervise.Every(ctx.ActorSystem().Root, ctx.Self(), a.interval, pollTick{})
	case *actor.Stopping, *actor.Restarting:
		if a.ticker != nil {
			a.ticker.Stop()
			a.ticker = nil
		}
	case pollTick:
		a.onTick()
	case *actor.Stopped:
	default:
		a.log.Warn("unknown message", "type", fmt.Sprintf("%T", ctx.Message()))
	}
}

func (a *pollActor) onTick() {
	ctx, cancel := context.WithTimeout(context.Background(), deadline(a.interval))
	defer cancel()
	c, changed, err := a.p.Poll(ctx)
	switch {
	case errors.Is(err, ErrNoCity):
		a.log.Debug("poll skipped", "reason", err)
	case err != nil:
		a.log.Warn("poll failed; crashing", "city", c, "err", err)
		panic(err)
	case changed.Len() > 0:
		a.log.Debug("polled", "city", c, "changed", changed.Len())
	}
}

// ActorsConfig configures dispatch's supervised actors.
type ActorsConfig struct {
	// GossipInterval is the gossip period. Default 1 s, as the original.
	GossipInterval time.Duration
	// PollInterval is the poll period. Default 2 s, as the original.
	PollInterval time.Duration
	// Logger receives the actors' log lines. Default slog.Default().
	Logger *slog.Logger
}

func (c ActorsConfig) withDefaults() ActorsConfig {
	if c.GossipInterval <= 0 {
		c.GossipInterval = time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// SpawnActors starts the gossip and poll actors under dispatch's
// supervisor (one_for_one, 3 restarts in 1 s). The group's Down channel
// closes if the supervisor gives up.
func SpawnActors(system *actor.ActorSystem, cfg ActorsConfig, g *Gossiper, p *Poller) (*supervise.Group, error) {
	cfg = cfg.withDefaults()
	gossip := actor.PropsFromProducer(func() actor.Actor {
		return &gossipActor{g: g, interval: cfg.GossipInterval, log: cfg.Logger.With("actor", "gossip")}
	})
	poll := actor.PropsFromProducer(func() actor.Actor {
		return &pollActor{p: p, interval: cfg.PollInterval, log: cfg.Logger.With("actor", "poll")}
	})
	return supervise.Spawn(system, supervise.Config{
		Name:        "dispatch-supervisor",
		MaxRestarts: MaxRestarts,
		Window:      RestartWindow,
		Logger:      cfg.Logger,
	}, supervise.Child{Name: "gossip", Props: gossip}, supervise.Child{Name: "poll", Props: poll})
}
