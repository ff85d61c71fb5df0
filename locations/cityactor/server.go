// Package cityactor is the actor side of a city node: the state actor that
// owns the city's replica and runs its timers, the supervisor that restarts
// it empty after a crash (and gives up after too many), and the grain that
// fronts it in the cluster. Decisions live in Server, a plain type tested
// without an actor system; the actors only route messages to it.
package cityactor

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// Config configures a city. Zero fields take the documented defaults.
type Config struct {
	// City is the city's name, e.g. crdt.Gotham. Required.
	City crdt.Location
	// Rules are the patrol, fight and heal parameters. Default
	// city.DefaultConfig().
	Rules city.Config
	// Clock stamps the city's writes. It outlives restarts of the state
	// actor, so stamps stay monotonic across crashes. Required.
	Clock *crdt.Clock
	// Seed seeds the city's random source; each incarnation adds its
	// number, so a restarted city does not replay the same choices.
	// Default 0.
	Seed uint64
	// Logger receives the city's log lines. Default slog.Default().
	Logger *slog.Logger
	// Replication is the city's replication policy (push, anti-entropy,
	// tombstone collection, clock offset); Self, Role and Seed are set
	// from the fields above. Default replication.DefaultCityConfig.
	Replication replication.Config
	// Transport carries the engine's messages to the other nodes. Default:
	// none (a city alone; its messages are dropped).
	Transport Transport
	// Initial is the replica this city held in its previous membership,
	// when the process rejoins the cluster under a fresh member id: the
	// first incarnation starts from it instead of empty. Restarts after a
	// crash still start empty. Default: empty.
	Initial crdt.Delta
	// PriorIncarnations is how many incarnations the city had before this
	// Spawn (in an earlier membership), so incarnation numbers keep
	// growing across a rejoin. Default 0.
	PriorIncarnations uint64
	// Stats receives the city's counters; pass the same one to every
	// Spawn of the process (each membership) so they count since the
	// process started. Default: a new one per Spawn.
	Stats *Stats
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	// Zero fields of Replication take the city preset's defaults.
	c.Replication.Self, c.Replication.Role = string(c.City), replication.RoleCity
	if c.Transport == nil {
		c.Transport = noTransport{}
	}
	return c
}

// Transport carries a city's replication messages to the other nodes.
type Transport = wire.Transport

type noTransport struct{}

func (noTransport) Peers() []replication.Peer    { return nil }
func (noTransport) Send(replication.Message) int { return 0 }

// Stats are a city's counters, kept across restarts of its state actor
// (and across memberships, when Config.Stats is shared). Any goroutine may
// read them.
type Stats struct {
	// SyncRounds, SyncBytes, Pushes and PushBytes answer GetStats:
	// anti-entropy rounds started, sync bytes sent to other cities, pushes
	// sent and their bytes.
	SyncRounds, SyncBytes, Pushes, PushBytes atomic.Uint64
	// Replication holds the replication engines' counters and what the
	// city sent, for the metrics.
	Replication wire.Totals
	// Restarts counts the state actor's restarts by its supervisor.
	Restarts atomic.Uint64
}

// Server is one incarnation of a city: its replica, its rules, and the
// handlers for every message it answers. It is not safe for concurrent use;
// the state actor serialises calls.
type Server struct {
	cfg         Config
	rules       *city.City
	engine      *replication.Engine
	incarnation uint64
	log         *slog.Logger
}

// NewServer returns incarnation n of the city with an empty replica, or
// with cfg.Initial for the first incarnation after cfg.PriorIncarnations.
func NewServer(cfg Config, n uint64) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.Clock == nil {
		return nil, errors.New("cityactor: Config.Clock is required")
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, n))
	r := crdt.NewReplica(cfg.Clock)
	if n == cfg.PriorIncarnations+1 && len(cfg.Initial.Heroes) > 0 {
		r.Merge(cfg.Initial)
	}
	rules, err := city.New(cfg.City, r, rng, cfg.Rules)
	if err != nil {
		return nil, err
	}
	rc := cfg.Replication
	rc.Seed += n
	engine, err := replication.New(rc, r)
	if err != nil {
		return nil, fmt.Errorf("cityactor: %w", err)
	}
	return &Server{
		cfg:         cfg,
		rules:       rules,
		engine:      engine,
		incarnation: n,
		log:         cfg.Logger.With("actor", "city-state", "incarnation", n),
	}, nil
}

// Engine returns the city's replication engine.
func (s *Server) Engine() *replication.Engine { return s.engine }

// Step takes a replication message from another node.
func (s *Server) Step(m *messages.Replicate) error {
	msg, err := wire.Decode(m, string(s.cfg.City))
	if err != nil {
		return err
	}
	return s.engine.Step(msg)
}

// Replica returns the city's replica.
func (s *Server) Replica() *crdt.Replica { return s.rules.Replica() }

// Rules returns the effective city rules configuration.
func (s *Server) Rules() city.Config { return s.rules.Config() }

// Incarnation returns which start of the city this is (1 for the first).
func (s *Server) Incarnation() uint64 { return s.incarnation }

// State answers GetState with the whole replica.
func (s *Server) State() (*messages.State, error) {
	r := s.Replica()
	delta, err := r.State().MarshalBinary()
	if err != nil {
		return nil, err
	}
	digest, err := r.Digest().MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &messages.State{
		City:        string(s.cfg.City),
		Delta:       delta,
		Digest:      digest,
		Heroes:      uint32(r.Len()),
		Incarnation: s.incarnation,
	}, nil
}

// Digest answers GetDigest.
func (s *Server) Digest() (*messages.DigestReply, error) {
	r := s.Replica()
	digest, err := r.Digest().MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &messages.DigestReply{
		City:        string(s.cfg.City),
		Digest:      digest,
		Heroes:      uint32(r.Len()),
		Incarnation: s.incarnation,
	}, nil
}

// Hero answers GetHero with the city's entry for one hero, if any.
func (s *Server) Hero(m *messages.GetHero) (*messages.HeroReply, error) {
	id, err := uuid.Parse(m.GetHeroId())
	if err != nil {
		return nil, fmt.Errorf("get hero: bad id %q", m.GetHeroId())
	}
	reply := &messages.HeroReply{Incarnation: s.incarnation}
	if h, ok := s.Replica().Get(id); ok {
		if reply.Delta, err = (crdt.Delta{Heroes: []crdt.Hero{h}}).MarshalBinary(); err != nil {
			return nil, err
		}
	}
	return reply, nil
}

// Merge folds a delta sent as a request (the benchmark, tests) into the
// replica, through the engine's checks, and returns how many entries
// changed.
func (s *Server) Merge(m *messages.MergeDelta) (int, error) {
	var d crdt.Delta
	if err := d.UnmarshalBinary(m.GetDelta()); err != nil {
		return 0, fmt.Errorf("merge from %q: %w", m.GetFrom(), err)
	}
	before := s.engine.Stats().Merged
	if err := s.engine.Merge(m.GetFrom(), d); err != nil {
		return 0, err
	}
	return int(s.engine.Stats().Merged - before), nil
}

// Sync answers one step of an exchange a reader runs by request (the
// benchmark reads replicas this way). An empty message opens the exchange:
// the reply is this city's digest.
func (s *Server) Sync(m *messages.SyncRequest) (*messages.SyncReply, error) {
	var in crdt.SyncMsg
	if len(m.GetMsg()) > 0 {
		if err := in.UnmarshalBinary(m.GetMsg()); err != nil {
			return nil, fmt.Errorf("sync from %q: %w", m.GetFrom(), err)
		}
	}
	out, err := s.engine.Answer(m.GetFrom(), in)
	if err != nil || out.IsEmpty() {
		return &messages.SyncReply{}, err
	}
	b, err := out.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &messages.SyncReply{Msg: b}, nil
}

// Assign answers AssignHero: it merges the context dispatch sent (what it
// knows of the hero), then moves the hero here, healed, and hands the write
// to the engine. Dead, unknown and malformed requests get an error code at
// once and change nothing but what the context brought.
func (s *Server) Assign(m *messages.AssignHero) *messages.AssignReply {
	fail := func(code messages.AssignError, err error) *messages.AssignReply {
		return &messages.AssignReply{Error: code, Message: err.Error()}
	}
	id, err := uuid.Parse(m.GetHeroId())
	if err != nil {
		return fail(messages.AssignError_ASSIGN_BAD_REQUEST, fmt.Errorf("bad hero id %q", m.GetHeroId()))
	}
	if len(m.GetContext()) > 0 {
		var ctxDelta crdt.Delta
		if err := ctxDelta.UnmarshalBinary(m.GetContext()); err != nil {
			return fail(messages.AssignError_ASSIGN_BAD_REQUEST, err)
		}
		if err := s.engine.Merge(messages.DispatchName, ctxDelta); err != nil {
			return fail(messages.AssignError_ASSIGN_REFUSED, err)
		}
	}
	h, d, err := s.rules.Assign(id)
	switch {
	case errors.Is(err, city.ErrDead):
		reply := fail(messages.AssignError_ASSIGN_DEAD, err)
		// Tell the caller about the tombstone, so it stops asking
		// (ErrDead means the replica holds one).
		tomb, _ := s.Replica().Get(id)
		if reply.Delta, err = (crdt.Delta{Heroes: []crdt.Hero{tomb}}).MarshalBinary(); err != nil {
			s.log.Warn("cannot encode tombstone", "id", id, "err", err)
		}
		return reply
	case errors.Is(err, city.ErrUnknown):
		return fail(messages.AssignError_ASSIGN_UNKNOWN, err)
	case err != nil:
		return fail(messages.AssignError_ASSIGN_BAD_REQUEST, err)
	}
	b, err := d.MarshalBinary()
	if err != nil {
		return fail(messages.AssignError_ASSIGN_BAD_REQUEST, err)
	}
	s.engine.LocalWrite(d)
	s.log.Info("assigned", "hero", h.Name, "id", h.ID, "health", h.Health)
	return &messages.AssignReply{Delta: b}
}

// Patrol runs the patrol rule and hands the write, if any, to the engine.
func (s *Server) Patrol() crdt.Delta {
	h, d, ok := s.rules.Patrol()
	if ok {
		s.log.Info("patrolling", "hero", h.Name, "id", h.ID)
		s.engine.LocalWrite(d)
	}
	return d
}

// Fight runs the fight rule and hands the write, if any, to the engine.
func (s *Server) Fight() crdt.Delta {
	f, d, ok := s.rules.Fight()
	s.engine.LocalWrite(d)
	switch {
	case !ok:
	case f.Died():
		s.log.Info("hero died", "hero", f.Hero.Name, "id", f.Hero.ID, "damage", f.Damage)
	default:
		s.log.Info("fought", "hero", f.Hero.Name, "id", f.Hero.ID, "damage", f.Damage, "health", f.Hero.Health)
	}
	return d
}

// Stats answers GetStats.
func (s *Server) Stats(st *Stats) *messages.Stats {
	r := s.Replica()
	return &messages.Stats{
		City:        string(s.cfg.City),
		Heroes:      uint32(r.Len()),
		Tombstones:  uint32(r.Tombstones()),
		Incarnation: s.incarnation,
		SyncRounds:  st.SyncRounds.Load(),
		SyncBytes:   st.SyncBytes.Load(),
		Pushes:      st.Pushes.Load(),
		PushBytes:   st.PushBytes.Load(),
	}
}
