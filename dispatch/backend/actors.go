package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/supervise"
)

// Dispatch's supervision limits, as in the original: 3 restarts in 1 s.
const (
	MaxRestarts   = 3
	RestartWindow = time.Second
)

// tick is the message a periodic actor sends itself.
type tick struct{}

// periodicActor runs a round every interval. A round that fails crashes
// the actor on purpose: the supervisor restarts it and the next round picks
// among the cities still up ("let it crash", as the original's GossipServer
// and PollServer). A round that reports skip (fewer cities up than it
// needs) is a state of the cluster, not a fault: it is logged at debug
// level. One round a second cannot crash more than once a second, so a
// dead city never exhausts dispatch's 3-in-1 s limit on its own.
type periodicActor struct {
	interval time.Duration
	round    func(context.Context) ([]any, error)
	skip     error
	log      *slog.Logger
	ticker   *supervise.Ticker
}

func (a *periodicActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		a.ticker = supervise.Every(ctx.ActorSystem().Root, ctx.Self(), a.interval, tick{})
	case *actor.Stopping, *actor.Restarting:
		if a.ticker != nil {
			a.ticker.Stop()
			a.ticker = nil
		}
	case tick:
		a.onTick()
	case *actor.Stopped:
	default:
		a.log.Warn("unknown message", "type", fmt.Sprintf("%T", ctx.Message()))
	}
}

func (a *periodicActor) onTick() {
	ctx, cancel := context.WithTimeout(context.Background(), deadline(a.interval))
	defer cancel()
	attrs, err := a.round(ctx)
	switch {
	case errors.Is(err, a.skip):
		a.log.Debug("round skipped", "reason", err)
	case errors.Is(err, crdt.ErrClockOffset):
		// A city whose clock is too far ahead is not a fault of this
		// actor: its writes are refused and it shows as diverged.
		a.log.Debug("round refused a city's writes", append(attrs, "err", err)...)
	case err != nil:
		a.log.Warn("round failed; crashing", append(attrs, "err", err)...)
		panic(err)
	default:
		a.log.Debug("round done", attrs...)
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
		return &periodicActor{
			interval: cfg.GossipInterval,
			skip:     ErrTooFewCities,
			log:      cfg.Logger.With("actor", "gossip"),
			round: func(ctx context.Context) ([]any, error) {
				res, err := g.Round(ctx)
				return []any{"from", res.From, "to", res.To, "steps", res.Steps}, err
			},
		}
	})
	poll := actor.PropsFromProducer(func() actor.Actor {
		return &periodicActor{
			interval: cfg.PollInterval,
			skip:     ErrNoCity,
			log:      cfg.Logger.With("actor", "poll"),
			round: func(ctx context.Context) ([]any, error) {
				c, changed, err := p.Poll(ctx)
				return []any{"city", c, "changed", changed}, err
			},
		}
	})
	return supervise.Spawn(system, supervise.Config{
		Name:        "dispatch-supervisor",
		MaxRestarts: MaxRestarts,
		Window:      RestartWindow,
		Logger:      cfg.Logger,
	}, supervise.Child{Name: "gossip", Props: gossip}, supervise.Child{Name: "poll", Props: poll})
}
