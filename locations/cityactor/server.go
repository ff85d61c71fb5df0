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
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
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
	// TombstoneTTL is how long a tombstone is kept before it is collected;
	// see the crdt package documentation for the rule. Default 10 minutes.
	TombstoneTTL time.Duration
	// GCInterval is how often tombstones are collected. Horizons are
	// rounded down to whole intervals so that replicas collect the same
	// tombstones. Default 1 minute.
	GCInterval time.Duration
	// Logger receives the city's log lines. Default slog.Default().
	Logger *slog.Logger
	// Replication spreads the city's writes to the other replicas. The
	// zero value turns it off (the original protocol).
	Replication ReplicationConfig
}

func (c Config) withDefaults() Config {
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = crdt.DefaultTombstoneTTL
	}
	if c.GCInterval <= 0 {
		c.GCInterval = crdt.DefaultCollectPeriod
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Server is one incarnation of a city: its replica, its rules, and the
// handlers for every message it answers. It is not safe for concurrent use;
// the state actor serialises calls.
type Server struct {
	cfg         Config
	rules       *city.City
	incarnation uint64
	log         *slog.Logger
}

// NewServer returns incarnation n of the city with an empty replica.
func NewServer(cfg Config, n uint64) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.Clock == nil {
		return nil, errors.New("cityactor: Config.Clock is required")
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, n))
	rules, err := city.New(cfg.City, crdt.NewReplica(cfg.Clock), rng, cfg.Rules)
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:         cfg,
		rules:       rules,
		incarnation: n,
		log:         cfg.Logger.With("actor", "city-state", "incarnation", n),
	}, nil
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

// Merge folds a pushed delta into the replica and returns what changed.
func (s *Server) Merge(m *messages.MergeDelta) (crdt.Delta, error) {
	var d crdt.Delta
	if err := d.UnmarshalBinary(m.GetDelta()); err != nil {
		return crdt.Delta{}, fmt.Errorf("merge from %q: %w", m.GetFrom(), err)
	}
	changed := s.Replica().Merge(d)
	if changed.Len() > 0 {
		s.log.Debug("merged", "from", m.GetFrom(), "entries", d.Len(), "changed", changed.Len())
	}
	return changed, nil
}

// Sync runs one step of an anti-entropy exchange. An empty message opens
// the exchange: the reply is this city's opening digest.
func (s *Server) Sync(m *messages.SyncRequest) (*messages.SyncReply, crdt.Delta, error) {
	r := s.Replica()
	var out crdt.SyncMsg
	var changed crdt.Delta
	if len(m.GetMsg()) == 0 {
		out = r.SyncStart()
	} else {
		var in crdt.SyncMsg
		if err := in.UnmarshalBinary(m.GetMsg()); err != nil {
			return nil, crdt.Delta{}, fmt.Errorf("sync from %q: %w", m.GetFrom(), err)
		}
		out, changed = r.SyncStep(in)
	}
	if out.IsEmpty() {
		return &messages.SyncReply{}, changed, nil
	}
	b, err := out.MarshalBinary()
	if err != nil {
		return nil, changed, err
	}
	return &messages.SyncReply{Msg: b}, changed, nil
}

// Assign answers AssignHero: it merges the context dispatch sent (what it
// knows of the hero), then moves the hero here, healed. Dead, unknown and
// malformed requests get an error code at once and change nothing.
func (s *Server) Assign(m *messages.AssignHero) (*messages.AssignReply, crdt.Delta) {
	// merged is what the context changed here; it spreads even when the
	// assignment itself fails.
	var merged crdt.Delta
	fail := func(code messages.AssignError, err error) (*messages.AssignReply, crdt.Delta) {
		return &messages.AssignReply{Error: code, Message: err.Error()}, merged
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
		merged = s.Replica().Merge(ctxDelta)
	}
	h, d, err := s.rules.Assign(id)
	switch {
	case errors.Is(err, city.ErrDead):
		reply, merged := fail(messages.AssignError_ASSIGN_DEAD, err)
		// Tell the caller about the tombstone, so it stops asking
		// (ErrDead means the replica holds one).
		tomb, _ := s.Replica().Get(id)
		if reply.Delta, err = (crdt.Delta{Heroes: []crdt.Hero{tomb}}).MarshalBinary(); err != nil {
			s.log.Warn("cannot encode tombstone", "id", id, "err", err)
		}
		return reply, merged
	case errors.Is(err, city.ErrUnknown):
		return fail(messages.AssignError_ASSIGN_UNKNOWN, err)
	case err != nil:
		return fail(messages.AssignError_ASSIGN_BAD_REQUEST, err)
	}
	b, err := d.MarshalBinary()
	if err != nil {
		return fail(messages.AssignError_ASSIGN_BAD_REQUEST, err)
	}
	s.log.Info("assigned", "hero", h.Name, "id", h.ID, "health", h.Health)
	merged.Heroes = append(merged.Heroes, d.Heroes...)
	return &messages.AssignReply{Delta: b}, merged
}

// Patrol runs the patrol rule and returns the write, if any.
func (s *Server) Patrol() crdt.Delta {
	h, d, ok := s.rules.Patrol()
	if ok {
		s.log.Info("patrolling", "hero", h.Name, "id", h.ID)
	}
	return d
}

// Fight runs the fight rule and returns the write, if any.
func (s *Server) Fight() crdt.Delta {
	f, d, ok := s.rules.Fight()
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

// CollectTombstones drops tombstones older than the TTL, with the horizon
// rounded down to a whole GCInterval so every replica picks the same one.
func (s *Server) CollectTombstones() int {
	horizon := crdt.Horizon(s.cfg.Clock.PhysicalNow(), int64(s.cfg.TombstoneTTL), int64(s.cfg.GCInterval))
	n := s.Replica().Collect(horizon)
	if n > 0 {
		s.log.Info("collected tombstones", "dropped", n, "left", s.Replica().Tombstones())
	}
	return n
}
