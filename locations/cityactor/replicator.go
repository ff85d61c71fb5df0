package cityactor

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/supervise"
	"github.com/superhero-cluster/superhero/messages"
)

// Target is another replica a city talks to: a city grain, or dispatch.
type Target struct {
	Identity, Kind string
}

// IsCity reports whether t is a city (cities answer anti-entropy; dispatch
// only takes pushes).
func (t Target) IsCity() bool { return t.Kind != messages.DispatchKind }

// Peers reaches the other replicas of the cluster from a city node.
type Peers interface {
	// Targets returns the other replicas that are up now.
	Targets() []Target
	// Request sends msg and returns the reply, never past ctx's deadline.
	Request(ctx context.Context, t Target, msg proto.Message) (proto.Message, error)
	// Send sends msg one-way, never blocking past ctx's deadline.
	Send(ctx context.Context, t Target, msg proto.Message) error
}

// ReplicationConfig configures a city's replicator. Zero fields take the
// documented defaults.
type ReplicationConfig struct {
	// Peers reaches the other replicas. Nil turns replication off (the
	// original protocol: only dispatch's gossip moves state).
	Peers Peers
	// PushWindow is how long local writes are coalesced before one push.
	// Default 2 ms.
	PushWindow time.Duration
	// AntiEntropyInterval is the period of push-pull rounds with a random
	// peer city. Default 500 ms; negative turns anti-entropy off (tests).
	AntiEntropyInterval time.Duration
	// NoPush turns eager push off, leaving anti-entropy alone to spread
	// writes (tests).
	NoPush bool
	// Timeout bounds one request or send to a peer, and one step of an
	// anti-entropy exchange. Default 1 s.
	Timeout time.Duration
}

func (c ReplicationConfig) withDefaults() ReplicationConfig {
	if c.PushWindow <= 0 {
		c.PushWindow = 2 * time.Millisecond
	}
	if c.AntiEntropyInterval == 0 {
		c.AntiEntropyInterval = 500 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	return c
}

// Stats are a city's replication counters, shared by its actors.
type Stats struct {
	SyncRounds, SyncBytes, Pushes, PushBytes atomic.Uint64
}

// Messages between the state actor and the replicator, local only.
type (
	// localWrite carries a write the city made itself.
	localWrite struct{ delta crdt.Delta }
	// restarted says the state actor started with an empty replica.
	restarted struct{}
	pushTick  struct{}
	syncTick  struct{}
	syncDone  struct{}
)

// replicator spreads the city's own writes at once (eager push, coalesced
// over a short window) to every other replica, and runs anti-entropy
// rounds with a random peer city, which repairs missed pushes and refills
// the city after a restart. Network calls run off the actor's goroutine so
// its mailbox never waits on the network.
type replicator struct {
	city  string
	cfg   ReplicationConfig
	state *actor.PID
	stats *Stats
	log   *slog.Logger
	rng   *rand.Rand

	pending   map[uuid.UUID]crdt.Hero
	scheduled bool
	lastFlush time.Time
	syncing   bool
	ticker    *supervise.Ticker
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func (r *replicator) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.onStarted(ctx)
	case *actor.Stopping, *actor.Restarting:
		r.onStopping()
	case *actor.Stopped:
	case localWrite:
		r.onWrite(ctx, m.delta)
	case pushTick:
		r.flush()
	case restarted:
		if r.cfg.AntiEntropyInterval > 0 {
			r.startSync(ctx)
		}
	case syncTick:
		r.startSync(ctx)
	case syncDone:
		r.syncing = false
	default:
		r.log.Warn("unknown message", "type", fmt.Sprintf("%T", m))
	}
}

func (r *replicator) onStarted(ctx actor.Context) {
	r.pending = map[uuid.UUID]crdt.Hero{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if r.cfg.AntiEntropyInterval > 0 {
		r.ticker = supervise.Every(ctx.ActorSystem().Root, ctx.Self(), r.cfg.AntiEntropyInterval, syncTick{})
	}
}

func (r *replicator) onStopping() {
	if r.ticker != nil {
		r.ticker.Stop()
		r.ticker = nil
	}
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
}

func (r *replicator) onWrite(ctx actor.Context, d crdt.Delta) {
	if r.cfg.NoPush {
		return
	}
	for _, h := range d.Heroes {
		r.pending[h.ID] = h
	}
	if r.scheduled {
		return
	}
	// A write after a quiet spell goes out at once; writes that follow
	// within the window wait for one coalesced push at its end.
	wait := r.cfg.PushWindow - time.Since(r.lastFlush)
	if wait <= 0 {
		r.flush()
		return
	}
	r.scheduled = true
	self, root := ctx.Self(), ctx.ActorSystem().Root
	time.AfterFunc(wait, func() { root.Send(self, pushTick{}) })
}

// flush pushes the coalesced writes to every other replica, one-way.
func (r *replicator) flush() {
	r.scheduled = false
	if len(r.pending) == 0 {
		return
	}
	r.lastFlush = time.Now()
	d := crdt.Delta{Heroes: make([]crdt.Hero, 0, len(r.pending))}
	for _, h := range r.pending {
		d.Heroes = append(d.Heroes, h)
	}
	clear(r.pending)
	b, err := d.MarshalBinary()
	if err != nil {
		r.log.Error("cannot encode push", "err", err)
		return
	}
	msg := &messages.MergeDelta{Delta: b, From: r.city}
	for _, t := range r.cfg.Peers.Targets() {
		r.stats.Pushes.Add(1)
		r.stats.PushBytes.Add(uint64(len(b)))
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
			defer cancel()
			if err := r.cfg.Peers.Send(ctx, t, msg); err != nil {
				// Anti-entropy repairs what a lost push missed.
				r.log.Debug("push failed", "to", t.Identity, "err", err)
			}
		}()
	}
}

// startSync runs one anti-entropy exchange with a random peer city, unless
// one is already running.
func (r *replicator) startSync(ctx actor.Context) {
	if r.syncing {
		return
	}
	var cities []Target
	for _, t := range r.cfg.Peers.Targets() {
		if t.IsCity() {
			cities = append(cities, t)
		}
	}
	if len(cities) == 0 {
		return
	}
	peer := cities[r.rng.IntN(len(cities))]
	r.syncing = true
	self, root := ctx.Self(), ctx.ActorSystem().Root
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer root.Send(self, syncDone{})
		if err := r.exchange(root, peer); err != nil {
			r.log.Debug("anti-entropy failed", "peer", peer.Identity, "err", err)
		}
	}()
}

// exchange runs a push-pull exchange between the local state actor and a
// peer: the local side opens, then each answers the other until one has
// nothing more to say.
func (r *replicator) exchange(root *actor.RootContext, peer Target) error {
	r.stats.SyncRounds.Add(1)
	local := func(msg []byte) ([]byte, error) {
		res, err := root.RequestFuture(r.state, &messages.SyncRequest{From: r.city, Msg: msg}, r.cfg.Timeout).Result()
		if err != nil {
			return nil, err
		}
		reply, ok := res.(*messages.SyncReply)
		if !ok {
			return nil, fmt.Errorf("state answered %T", res)
		}
		return reply.Msg, nil
	}
	msg, err := local(nil)
	for step := 0; err == nil && len(msg) > 0 && step < maxSyncSteps; step++ {
		r.stats.SyncBytes.Add(uint64(len(msg)))
		var res proto.Message
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
		res, err = r.cfg.Peers.Request(ctx, peer, &messages.SyncRequest{From: r.city, Msg: msg})
		cancel()
		if err != nil {
			break
		}
		reply, ok := res.(*messages.SyncReply)
		if !ok {
			return fmt.Errorf("%s answered %T", peer.Identity, res)
		}
		if len(reply.Msg) == 0 {
			return nil
		}
		msg, err = local(reply.Msg)
	}
	return err
}

// maxSyncSteps bounds one exchange. Three or four steps settle replicas
// that differ in a few entries; a refill of a large replica takes two more
// per crdt.MaxSyncEntries entries.
const maxSyncSteps = 64
