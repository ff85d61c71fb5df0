package backend

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// Transport carries dispatch's replication messages to the cities.
type Transport = wire.Transport

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
	// Initial is the replica dispatch held in its previous cluster
	// membership, when it rejoins under a fresh member id: the actor's
	// first incarnation starts from it. A restart after a crash still
	// starts empty. Default: empty.
	Initial crdt.Delta
	// Stats receives the replica's counters; pass the same one to every
	// SpawnReplica of the process (each membership) so they count since
	// the process started. Default: a new one per SpawnReplica.
	Stats *ReplicaStats
}

// ReplicaStats are the counters of dispatch's replica, kept across
// restarts of its actor. Any goroutine may read them.
type ReplicaStats struct {
	// Replication holds the replication engines' counters and what the
	// replica sent.
	Replication wire.Totals
	// Restarts counts the replica actor's restarts by its supervisor.
	Restarts atomic.Uint64
}

func (c ReplicaConfig) withDefaults() ReplicaConfig {
	if c.Rules == (city.Config{}) {
		c.Rules = city.DefaultConfig()
	}
	// Zero fields of Replication take the dispatch preset's defaults.
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
	if c.Stats == nil {
		c.Stats = &ReplicaStats{}
	}
	return c
}

// ErrReplicaUnavailable means dispatch's replica actor did not answer in
// time (it is restarting, or the node is stopping).
var ErrReplicaUnavailable = fmt.Errorf("%w: dispatch's replica is not answering", service.ErrUnavailable)

// Replica is dispatch's replica, owned by one actor: the crdt replica, the
// replication engine that pushes dispatch's writes and runs its gossip and
// poll, and the publishing of every change to the pages, in the order the
// changes were made. Its methods send the actor a message and wait for the
// answer; they are safe for concurrent use.
type Replica struct {
	root    *actor.RootContext
	pid     *actor.PID
	timeout time.Duration
	// ready mirrors the actor's Core.CaughtUp, for readers that must not
	// wait on the actor.
	ready *atomic.Bool
}

// Ready reports whether dispatch's replica has caught up with the cities
// since it started (see replication.Engine.CaughtUp).
func (r *Replica) Ready() bool { return r.ready.Load() }

// replicaCall is a call to the replica actor: the message and where to answer.
// Answering through a channel rather than a protoactor future keeps the
// per-call cost of the write path low.
type replicaCall struct {
	msg   any
	reply chan any
}

// Messages to the replica actor, local only.
type (
	createReq  struct{ name string }
	deleteReq  struct{ id uuid.UUID }
	homeReq    struct{ id uuid.UUID }
	lookupReq  struct{ id uuid.UUID }
	heroesReq  struct{}
	stateReq   struct{}
	contextReq struct{ id uuid.UUID }
	replyReq   struct {
		from  string
		id    uuid.UUID
		reply *messages.AssignReply
	}
	engineTick struct{}

	heroRes struct {
		h   crdt.Hero
		b   []byte
		err error
	}
	heroesRes struct{ hs []crdt.Hero }
	stateRes  struct{ d crdt.Delta }
)

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

func (r *Replica) hero(msg any) (crdt.Hero, error) {
	res, err := call[heroRes](r, msg)
	if err != nil {
		return crdt.Hero{}, err
	}
	return res.h, res.err
}

// Create writes a new hero at home.
func (r *Replica) Create(name string) (crdt.Hero, error) { return r.hero(createReq{name}) }

// Delete tombstones the hero; crdt.ErrUnknown if never seen.
func (r *Replica) Delete(id uuid.UUID) error {
	_, err := r.hero(deleteReq{id})
	return err
}

// AssignHome sends the hero home, healed (see city.AssignHome).
func (r *Replica) AssignHome(id uuid.UUID) (crdt.Hero, error) { return r.hero(homeReq{id}) }

// Lookup returns the live hero, crdt.ErrDead with the tombstone, or
// crdt.ErrUnknown.
func (r *Replica) Lookup(id uuid.UUID) (crdt.Hero, error) { return r.hero(lookupReq{id}) }

// AssignContext returns dispatch's entry for a live hero, encoded, to send
// with an assignment; see Core.AssignContext.
func (r *Replica) AssignContext(id uuid.UUID) ([]byte, error) {
	res, err := call[heroRes](r, contextReq{id})
	if err != nil {
		return nil, err
	}
	return res.b, res.err
}

// AssignReply merges a city's answer to an assignment; see
// Core.AssignReply.
func (r *Replica) AssignReply(from string, id uuid.UUID, reply *messages.AssignReply) (crdt.Hero, error) {
	return r.hero(replyReq{from, id, reply})
}

// Heroes returns the live heroes sorted by id.
func (r *Replica) Heroes() ([]crdt.Hero, error) {
	res, err := call[heroesRes](r, heroesReq{})
	return res.hs, err
}

// State returns the whole replica, tombstones included, to carry it into
// a new cluster membership (see ReplicaConfig.Initial).
func (r *Replica) State() (crdt.Delta, error) {
	res, err := call[stateRes](r, stateReq{})
	return res.d, err
}

// Deliver hands the actor a replication message from a city, one-way.
func (r *Replica) Deliver(m *messages.Replicate) { r.root.Send(r.pid, m) }

// replicaActor owns one incarnation of dispatch's replica (a Core) and
// only carries messages and timers. A restart (a bug, never a plan)
// starts empty, and the engine reads a city at once.
type replicaActor struct {
	cfg         ReplicaConfig
	incarnation *atomic.Uint64
	ready       *atomic.Bool
	log         *slog.Logger
	core        *Core
	drv         *wire.Driver
	// waiting holds the answers to writes that wait for the write
	// quorum, by write number.
	waiting map[uint64]waiter
}

// waiter is a command's answer held until its write is confirmed.
type waiter struct {
	respond func(any)
	res     heroRes
}

func (a *replicaActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		a.onStarted()
		a.drive(ctx)
		return
	case *actor.Stopping, *actor.Restarting:
		if a.drv != nil {
			a.drv.Stop()
		}
		return
	case *actor.Stopped:
		return
	}
	a.drv.Tick()
	msg, respond := ctx.Message(), func(any) {}
	if req, ok := msg.(replicaCall); ok {
		msg, respond = req.msg, func(v any) { req.reply <- v }
	}
	c := a.core
	switch msg.(type) {
	case createReq, deleteReq, homeReq, lookupReq, contextReq:
		if !c.CaughtUp() {
			// A restarted dispatch knows nothing until it has read a city.
			respond(heroRes{err: ErrCatchingUp})
			a.drive(ctx)
			return
		}
	}
	switch m := msg.(type) {
	case engineTick:
		a.drv.Woken()
	case *messages.Replicate:
		if err := c.Step(m); err != nil && !errors.Is(err, crdt.ErrClockOffset) {
			a.log.Warn("bad replication message", "from", m.GetFrom(), "err", err)
		}
	case createReq:
		h, n, err := c.Create(m.name)
		a.answer(respond, n, heroRes{h: h, err: err})
	case deleteReq:
		n, err := c.Delete(m.id)
		a.answer(respond, n, heroRes{err: err})
	case homeReq:
		h, n, err := c.AssignHome(m.id)
		a.answer(respond, n, heroRes{h: h, err: err})
	case lookupReq:
		h, err := c.Lookup(m.id)
		respond(heroRes{h: h, err: err})
	case contextReq:
		b, err := c.AssignContext(m.id)
		respond(heroRes{b: b, err: err})
	case replyReq:
		h, err := c.AssignReply(m.from, m.id, m.reply)
		respond(heroRes{h: h, err: err})
	case heroesReq:
		respond(heroesRes{hs: c.Heroes()})
	case stateReq:
		respond(stateRes{d: c.Replica().State()})
	default:
		a.log.Warn("unknown message", "type", fmt.Sprintf("%T", m))
	}
	a.drive(ctx)
}

func (a *replicaActor) onStarted() {
	cfg := a.cfg
	// Each incarnation draws other random choices and exchange ids, so
	// late replies meant for the previous one are not taken for its own.
	n := a.incarnation.Add(1)
	cfg.Replication.Seed += n
	if n > 1 {
		cfg.Initial = crdt.Delta{}
	}
	core, err := NewCore(cfg, nil)
	if err != nil {
		// Checked by SpawnReplica before the actor is started.
		panic(err)
	}
	a.core = core
	a.drv = wire.NewDriver(core.Engine(), a.cfg.Transport, &a.cfg.Stats.Replication)
	a.waiting = map[uint64]waiter{}
	if n := core.Replica().Len(); n > 0 {
		a.log.Info("replica started", "replica", "carried over", "heroes", n)
	} else {
		a.log.Info("replica started", "replica", "empty")
	}
	a.drv.Tick()
}

// drive publishes what changed, in order, sends what the engine has
// ready, logs its refusals and arms the timer for its next deadline.
func (a *replicaActor) drive(ctx actor.Context) {
	if a.drv == nil {
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.drv.Flush(nil, func(rd replication.Ready) {
		for _, n := range rd.Acked {
			if w, ok := a.waiting[n]; ok {
				delete(a.waiting, n)
				w.respond(w.res)
			}
		}
		for _, n := range rd.Failed {
			if w, ok := a.waiting[n]; ok {
				delete(a.waiting, n)
				w.respond(heroRes{err: ErrNotReplicated})
			}
		}
		if len(rd.Changed) > 0 {
			a.cfg.Publish(crdt.Delta{Heroes: slices.Clone(rd.Changed)})
		}
		for _, r := range rd.Refusals {
			a.log.Warn("refused writes", "peer", r.Peer, "err", r.Err, "suppressed", r.Suppressed)
		}
	}, func() { root.Send(self, engineTick{}) })
	a.ready.Store(a.core.CaughtUp())
}

// ErrNotReplicated means no city confirmed a write in time: the outcome is
// unknown (dispatch holds the write and it may still spread).
var ErrNotReplicated = fmt.Errorf("%w: no city confirmed the write in time; it may still spread", service.ErrOutcomeUnknown)

// ErrCatchingUp means dispatch restarted (or is rejoining the cluster) and
// has not yet read every city that is up.
var ErrCatchingUp = fmt.Errorf("%w: dispatch is catching up", service.ErrUnavailable)

// answer answers a command at once, or when its write is confirmed.
func (a *replicaActor) answer(respond func(any), n uint64, res heroRes) {
	if n == 0 || res.err != nil {
		respond(res)
		return
	}
	a.waiting[n] = waiter{respond: respond, res: res}
}

// replicaProps returns the props of dispatch's replica actor.
func replicaProps(cfg ReplicaConfig, ready *atomic.Bool) *actor.Props {
	var incarnation atomic.Uint64
	return actor.PropsFromProducer(func() actor.Actor {
		return &replicaActor{cfg: cfg, incarnation: &incarnation, ready: ready, log: cfg.Logger.With("actor", "replica")}
	})
}

// checkReplicaConfig validates cfg before an actor is started with it.
func checkReplicaConfig(cfg ReplicaConfig) error {
	if cfg.Transport == nil {
		return errors.New("backend: ReplicaConfig.Transport is required")
	}
	_, err := NewCore(cfg, nil)
	return err
}
