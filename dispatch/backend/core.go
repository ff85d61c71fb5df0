package backend

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// Core is one incarnation of dispatch's replica as a plain value: the crdt
// replica, its replication engine, and every command and read the API and
// the pages need. Each write is handed to the engine, which pushes it;
// every change comes out of the engine's Ready in order. Core is not safe
// for concurrent use: the replica actor owns it, and the simulation drives
// one directly.
type Core struct {
	r      *crdt.Replica
	engine *replication.Engine
	rules  city.Config
	newID  func() uuid.UUID
}

// NewCore returns a replica (empty, or cfg.Initial) stamping writes with cfg.Clock, with an
// engine on cfg.Replication. newID makes the ids of created heroes (nil:
// random version 4 UUIDs).
func NewCore(cfg ReplicaConfig, newID func() uuid.UUID) (*Core, error) {
	cfg = cfg.withDefaults()
	if cfg.Clock == nil {
		return nil, fmt.Errorf("backend: ReplicaConfig.Clock is required")
	}
	if newID == nil {
		newID = uuid.New
	}
	r := crdt.NewReplica(cfg.Clock)
	if len(cfg.Initial.Heroes) > 0 {
		r.Merge(cfg.Initial)
	}
	e, err := replication.New(cfg.Replication, r)
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	return &Core{r: r, engine: e, rules: cfg.Rules, newID: newID}, nil
}

// Engine returns the replica's replication engine.
func (c *Core) Engine() *replication.Engine { return c.engine }

// Replica returns the crdt replica.
func (c *Core) Replica() *crdt.Replica { return c.r }

// The commands below return the write's number from the engine
// (replication.Engine.LocalWrite): a caller that must not acknowledge a
// write before the write quorum holds it waits for the number to come out
// of Ready.Acked (or Failed). 0 means nothing to wait for.

// Create writes a new hero at home.
func (c *Core) Create(name string) (crdt.Hero, uint64, error) {
	h, d, err := c.r.Create(c.newID(), name)
	return h, c.wrote(d, err), err
}

// Delete tombstones the hero; crdt.ErrUnknown if never seen, nil (and
// nothing to wait for) if it is already dead.
func (c *Core) Delete(id uuid.UUID) (uint64, error) {
	d, err := c.r.Delete(id)
	return c.wrote(d, err), err
}

// AssignHome sends the hero home, healed (see city.AssignHome).
func (c *Core) AssignHome(id uuid.UUID) (crdt.Hero, uint64, error) {
	h, d, err := city.AssignHome(c.r, id, c.rules)
	return h, c.wrote(d, err), err
}

func (c *Core) wrote(d crdt.Delta, err error) uint64 {
	if err != nil {
		return 0
	}
	return c.engine.LocalWrite(d)
}

// CaughtUp reports whether the replica may answer for the cluster: see
// replication.Engine.CaughtUp.
func (c *Core) CaughtUp() bool { return c.engine.CaughtUp() }

// Lookup returns the live hero, crdt.ErrDead with the tombstone, or
// crdt.ErrUnknown.
func (c *Core) Lookup(id uuid.UUID) (crdt.Hero, error) { return c.r.Lookup(id) }

// Heroes returns the live heroes sorted by id.
func (c *Core) Heroes() []crdt.Hero { return c.r.Heroes() }

// AssignContext returns what an assignment to a city carries: dispatch's
// entry for the live hero, encoded. A dead or unknown hero is an error.
func (c *Core) AssignContext(id uuid.UUID) ([]byte, error) {
	h, err := c.r.Lookup(id)
	if err != nil {
		return nil, err
	}
	return crdt.Delta{Heroes: []crdt.Hero{h}}.MarshalBinary()
}

// AssignReply merges what the city answered to an assignment (its write,
// or the tombstone when the hero is dead there) and returns the assigned
// hero, or the error the answer means. A write stamped too far ahead of
// dispatch's clock is refused: the city is treated as unreachable.
func (c *Core) AssignReply(from string, id uuid.UUID, reply *messages.AssignReply) (crdt.Hero, error) {
	var d crdt.Delta
	if len(reply.GetDelta()) > 0 {
		if err := d.UnmarshalBinary(reply.GetDelta()); err != nil {
			return crdt.Hero{}, fmt.Errorf("assign reply from %s: %w", from, err)
		}
		if err := c.engine.Merge(from, d); err != nil {
			return crdt.Hero{}, fmt.Errorf("%w: %s: %w", service.ErrCityDown, from, err)
		}
	}
	switch reply.GetError() {
	case messages.AssignError_ASSIGN_OK:
	case messages.AssignError_ASSIGN_DEAD:
		return crdt.Hero{}, fmt.Errorf("%w: %s", crdt.ErrDead, reply.GetMessage())
	case messages.AssignError_ASSIGN_UNKNOWN:
		return crdt.Hero{}, fmt.Errorf("%w: %s", crdt.ErrUnknown, reply.GetMessage())
	case messages.AssignError_ASSIGN_REFUSED:
		return crdt.Hero{}, fmt.Errorf("%w: %s refused dispatch's entry: %s", service.ErrCityDown, from, reply.GetMessage())
	default:
		return crdt.Hero{}, fmt.Errorf("assign at %s: %v: %s", from, reply.GetError(), reply.GetMessage())
	}
	for _, h := range d.Heroes {
		if h.ID == id {
			return h, nil
		}
	}
	return crdt.Hero{}, fmt.Errorf("assign at %s: reply lacks hero %s", from, id)
}

// Step takes a replication message from a city.
func (c *Core) Step(p *messages.Replicate) error {
	m, err := wire.Decode(p, messages.DispatchName)
	if err != nil {
		return err
	}
	return c.engine.Step(m)
}
