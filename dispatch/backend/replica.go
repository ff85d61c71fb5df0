package backend

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// Transport carries dispatch's replication messages to the cities.
type Transport interface {
	// Peers returns the cities that are up now.
	Peers() []replication.Peer
	// Send hands m to the network without blocking; it may drop it.
	Send(m replication.Message) int
}

// ReplicaConfig configures dispatch's replica actor. Zero fields take the
// documented defaults.
type ReplicaConfig struct {
	// Clock stamps dispatch's writes; it outlives restarts of the actor.
	// Required.
	Clock *crdt.Clock
	// Rules holds the heal-at-home rule's parameters. Default
	// city.DefaultConfig().
	Rules city.Config
	// Replication is dispatch's replication policy (push, gossip, poll,
	// tombstone collection, clock offset). Default
	// replication.DefaultDispatchConfig.
	Replication replication.Config
	// Transport reaches the cities. Required.
	Transport Transport
	// Publish receives every change to the replica, in order, from the
	// actor's goroutine; it must not block (the hub's Publish does not).
	// Default: changes are not published.
	Publish func(crdt.Delta)
	// Timeout bounds a call to the actor. Default 1 s.
	Timeout time.Duration
	// Logger receives the actor's log lines. Default slog.Default().
	Logger *slog.Logger
}

func (c ReplicaConfig) withDefaults() ReplicaConfig {
	if c.Rules == (city.Config{}) {
		c.Rules = city.DefaultConfig()
	}
	if c.Replication.Role == 0 {
		seed := c.Replication.Seed
		c.Replication = replication.DefaultDispatchConfig(messages.DispatchName)
		c.Replication.Seed = seed
	}
	c.Replication.Self, c.Replication.Role = messages.DispatchName, replication.RoleDispatch
	if c.Publish == nil {
		c.Publish = func(crdt.Delta) {}
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ErrReplicaUnavailable means dispatch's replica actor did not answer in
// time (it is restarting, or the node is stopping).
var ErrReplicaUnavailable = errors.New("backend: dispatch's replica is not answering")

// Replica is dispatch's replica, owned by one actor: the crdt replica, the
// replication engine that pushes dispatch's writes and runs its gossip and
// poll, and the publishing of every change to the pages, in the order the
// changes were made. Its methods send the actor a message and wait for the
// answer; they are safe for concurrent use.
type Replica struct {
	root    *actor.RootContext
	pid     *actor.PID
	timeout time.Duration
}

// replicaCall is a call to the replica actor: the message and where to answer.
// Answering through a channel rather than a protoactor future keeps the
// per-call cost of the write path low.
type replicaCall struct {
	msg   any
	reply chan any
}

// Messages to the replica actor, local only.
type (
	createReq struct{ name string }
	deleteReq struct{ id uuid.UUID }
	homeReq   struct{ id uuid.UUID }
	lookupReq struct{ id uuid.UUID }
	heroesReq struct{}
	entryReq  struct{ id uuid.UUID }
	mergeReq  struct {
		from string
		d    crdt.Delta
	}
	infoReq    struct{}
	engineTick struct{}

	heroRes struct {
		h   crdt.Hero
		d   crdt.Delta
		err error
	}
	heroesRes struct{ hs []crdt.Hero }
)

// ReplicaInfo is what the replica actor reports about itself.
type ReplicaInfo struct {
	// Heroes and Tombstones count the entries held.
	Heroes, Tombstones int
	// CaughtUp says an exchange with a city has completed since the actor
	// started.
	CaughtUp bool
	// Stats are the engine's counters since the actor started.
	Stats replication.Stats
}

// call sends msg to the actor and waits for its answer, at most the
// replica's timeout.
func call[T any](r *Replica, msg any) (T, error) {
	var zero T
	req := replicaCall{msg: msg, reply: make(chan any, 1)}
	r.root.Send(r.pid, req)
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	var res any
	select {
	case res = <-req.reply:
	case <-t.C:
		return zero, fmt.Errorf("%w: no answer to %T in %v", ErrReplicaUnavailable, msg, r.timeout)
	}
	v, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("backend: replica answered %T to %T", res, msg)
	}
	return v, nil
}

func (r *Replica) hero(msg any) (crdt.Hero, crdt.Delta, error) {
	res, err := call[heroRes](r, msg)
	if err != nil {
		return crdt.Hero{}, crdt.Delta{}, err
	}
	return res.h, res.d, res.err
}

// Create writes a new hero at home.
func (r *Replica) Create(name string) (crdt.Hero, error) {
	h, _, err := r.hero(createReq{name})
	return h, err
}

// Delete tombstones the hero; crdt.ErrUnknown if never seen.
func (r *Replica) Delete(id uuid.UUID) error {
	_, _, err := r.hero(deleteReq{id})
	return err
}

// AssignHome sends the hero home, healed (see city.AssignHome).
func (r *Replica) AssignHome(id uuid.UUID) (crdt.Hero, error) {
	h, _, err := r.hero(homeReq{id})
	return h, err
}

// Lookup returns the live hero, crdt.ErrDead with the tombstone, or
// crdt.ErrUnknown.
func (r *Replica) Lookup(id uuid.UUID) (crdt.Hero, error) {
	h, _, err := r.hero(lookupReq{id})
	return h, err
}

// Entry returns what the replica holds for id as a delta (empty if
// nothing): the context dispatch sends with an assignment.
func (r *Replica) Entry(id uuid.UUID) (crdt.Delta, error) {
	_, d, err := r.hero(entryReq{id})
	return d, err
}

// Merge folds writes a city answered with into the replica, unless a stamp
// is too far ahead of dispatch's clock.
func (r *Replica) Merge(from string, d crdt.Delta) error {
	_, _, err := r.hero(mergeReq{from, d})
	return err
}

// Heroes returns the live heroes sorted by id.
func (r *Replica) Heroes() ([]crdt.Hero, error) {
	res, err := call[heroesRes](r, heroesReq{})
	return res.hs, err
}

// Info reports the replica's size, readiness and counters.
func (r *Replica) Info() (ReplicaInfo, error) { return call[ReplicaInfo](r, infoReq{}) }

// Deliver hands the actor a replication message from a city, one-way.
func (r *Replica) Deliver(m *messages.Replicate) { r.root.Send(r.pid, m) }

// replicaActor owns one incarnation of dispatch's replica. A restart (a
// bug, never a plan) starts empty and the engine reads a city at once.
type replicaActor struct {
	cfg    ReplicaConfig
	log    *slog.Logger
	r      *crdt.Replica
	engine *replication.Engine
	peers  []replication.Peer
	start  time.Time
	// timer wakes the actor at the engine's next deadline, armedAt.
	timer   *time.Timer
	armedAt int64
}

func (a *replicaActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		a.onStarted()
		a.drive(ctx)
		return
	case *actor.Stopping, *actor.Restarting:
		a.stopTimer()
		return
	case *actor.Stopped:
		return
	}
	a.tick()
	msg, respond := ctx.Message(), func(any) {}
	if req, ok := msg.(replicaCall); ok {
		msg, respond = req.msg, func(v any) { req.reply <- v }
	}
	switch m := msg.(type) {
	case engineTick:
		a.armedAt = 0
	case *messages.Replicate:
		a.onReplicate(m)
	case createReq:
		h, d, err := a.r.Create(uuid.New(), m.name)
		a.wrote(d, err)
		respond(heroRes{h: h, err: err})
	case deleteReq:
		d, err := a.r.Delete(m.id)
		a.wrote(d, err)
		respond(heroRes{err: err})
	case homeReq:
		h, d, err := city.AssignHome(a.r, m.id, a.cfg.Rules)
		a.wrote(d, err)
		respond(heroRes{h: h, err: err})
	case lookupReq:
		h, err := a.r.Lookup(m.id)
		respond(heroRes{h: h, err: err})
	case entryReq:
		var d crdt.Delta
		if h, ok := a.r.Get(m.id); ok {
			d.Heroes = []crdt.Hero{h}
		}
		respond(heroRes{d: d})
	case mergeReq:
		respond(heroRes{err: a.engine.Merge(m.from, m.d)})
	case heroesReq:
		respond(heroesRes{hs: a.r.Heroes()})
	case infoReq:
		respond(ReplicaInfo{Heroes: a.r.Len(), Tombstones: a.r.Tombstones(), CaughtUp: a.engine.CaughtUp(), Stats: a.engine.Stats()})
	default:
		a.log.Warn("unknown message", "type", fmt.Sprintf("%T", m))
	}
	a.drive(ctx)
}

func (a *replicaActor) onStarted() {
	a.r = crdt.NewReplica(a.cfg.Clock)
	e, err := replication.New(a.cfg.Replication, a.r)
	if err != nil {
		// Checked by SpawnReplica before the actor is started.
		panic(err)
	}
	a.engine, a.peers, a.start = e, nil, time.Now()
	a.log.Info("replica started", "replica", "empty")
	a.tick()
}

func (a *replicaActor) stopTimer() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer, a.armedAt = nil, 0
	}
}

// tick brings the engine to the current time and membership.
func (a *replicaActor) tick() {
	if peers := a.cfg.Transport.Peers(); !slices.Equal(peers, a.peers) {
		a.peers = peers
		a.engine.SetPeers(peers)
	}
	a.engine.Tick(int64(time.Since(a.start)))
}

func (a *replicaActor) wrote(d crdt.Delta, err error) {
	if err == nil {
		a.engine.LocalWrite(d)
	}
}

func (a *replicaActor) onReplicate(p *messages.Replicate) {
	m, err := wire.Decode(p, messages.DispatchName)
	if err == nil {
		err = a.engine.Step(m)
	}
	if err != nil && !errors.Is(err, crdt.ErrClockOffset) {
		a.log.Warn("bad replication message", "from", p.GetFrom(), "err", err)
	}
}

// drive publishes what changed, in order, sends what the engine has
// ready, logs its refusals and arms the timer for its next deadline.
func (a *replicaActor) drive(ctx actor.Context) {
	if a.engine == nil {
		return
	}
	if a.engine.HasReady() {
		rd := a.engine.Ready()
		if len(rd.Changed) > 0 {
			a.cfg.Publish(crdt.Delta{Heroes: slices.Clone(rd.Changed)})
		}
		for _, m := range rd.Messages {
			a.cfg.Transport.Send(m)
		}
		for _, r := range rd.Refusals {
			a.log.Warn("refused writes", "peer", r.Peer, "err", r.Err, "suppressed", r.Suppressed)
		}
		a.engine.Advance()
	}
	next := a.engine.NextTick()
	if a.armedAt != 0 && a.armedAt <= next {
		return
	}
	a.stopTimer()
	a.armedAt = next
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.timer = time.AfterFunc(time.Duration(next-int64(time.Since(a.start))), func() { root.Send(self, engineTick{}) })
}

// replicaProps returns the props of dispatch's replica actor.
func replicaProps(cfg ReplicaConfig) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &replicaActor{cfg: cfg, log: cfg.Logger.With("actor", "replica")}
	})
}

// checkReplicaConfig validates cfg before an actor is started with it.
func checkReplicaConfig(cfg ReplicaConfig) error {
	if cfg.Clock == nil {
		return errors.New("backend: ReplicaConfig.Clock is required")
	}
	if cfg.Transport == nil {
		return errors.New("backend: ReplicaConfig.Transport is required")
	}
	_, err := replication.New(cfg.Replication, crdt.NewReplica(cfg.Clock))
	return err
}
