// Package city holds the rules a city applies to the heroes assigned to it:
// patrol, fight, heal and death. It is pure: no actors, no network, and the
// clock (inside the replica) and the random source are injected, so the
// rules run the same in a deterministic simulation as on real timers.
package city

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

// Errors of the assign rules; they are the crdt package's, so callers can
// test either name with errors.Is.
var (
	ErrDead    = crdt.ErrDead
	ErrUnknown = crdt.ErrUnknown
)

// Config holds the rules' parameters. The zero value of a field means its
// default, which is the original cluster's value.
type Config struct {
	// PatrolInterval is how often a city sends a hero on patrol. Default 5s.
	PatrolInterval time.Duration
	// FightInterval is how often a patrolling hero fights a villain.
	// Default 5s.
	FightInterval time.Duration
	// MinDamage and MaxDamage bound the uniform damage of one fight,
	// inclusive. Defaults 5 and 15.
	MinDamage, MaxDamage int
	// Heal is the health an assignment restores, capped at crdt.MaxHealth.
	// Default 20.
	Heal int
}

// DefaultConfig returns the original cluster's values.
func DefaultConfig() Config {
	return Config{
		PatrolInterval: 5 * time.Second,
		FightInterval:  5 * time.Second,
		MinDamage:      5,
		MaxDamage:      15,
		Heal:           20,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.PatrolInterval <= 0 {
		c.PatrolInterval = d.PatrolInterval
	}
	if c.FightInterval <= 0 {
		c.FightInterval = d.FightInterval
	}
	// Each damage bound defaults on its own: a zero or negative MinDamage
	// would make a fight a no-op write or even heal.
	if c.MinDamage <= 0 {
		c.MinDamage = d.MinDamage
	}
	if c.MaxDamage <= 0 {
		c.MaxDamage = d.MaxDamage
	}
	if c.MaxDamage < c.MinDamage {
		c.MaxDamage = c.MinDamage
	}
	if c.Heal <= 0 {
		c.Heal = d.Heal
	}
	return c
}

// City applies the rules of one city to a replica. It is not safe for
// concurrent use; its owner (the city actor) serialises calls.
type City struct {
	name    crdt.Location
	replica *crdt.Replica
	rng     *rand.Rand
	cfg     Config
}

// New returns the rules for the named city over replica, drawing from rng.
func New(name crdt.Location, replica *crdt.Replica, rng *rand.Rand, cfg Config) (*City, error) {
	if _, err := crdt.ParseLocation(string(name)); err != nil || !name.IsCity() {
		return nil, fmt.Errorf("city: %q is not a city name", name)
	}
	return &City{name: name, replica: replica, rng: rng, cfg: cfg.withDefaults()}, nil
}

// Name returns the city's name.
func (c *City) Name() crdt.Location { return c.name }

// Config returns the effective configuration.
func (c *City) Config() Config { return c.cfg }

// Replica returns the replica the rules act on.
func (c *City) Replica() *crdt.Replica { return c.replica }

// pick returns one hero of the city matching keep, chosen uniformly by the
// random source. Candidates are sorted by id first so that the choice
// depends only on the seed, not on map iteration order.
func (c *City) pick(keep func(*crdt.Hero) bool) (crdt.Hero, bool) {
	var cand []crdt.Hero
	c.replica.Each(func(h crdt.Hero) bool {
		if !h.Dead && h.Location == c.name && keep(&h) {
			cand = append(cand, h)
		}
		return true
	})
	if len(cand) == 0 {
		return crdt.Hero{}, false
	}
	slices.SortFunc(cand, func(a, b crdt.Hero) int { return compareID(a.ID, b.ID) })
	return cand[c.rng.IntN(len(cand))], true
}

// Patrol sends one random idle hero of this city on patrol. It reports
// false, writing nothing, when the city has no idle hero. (The original
// also picks heroes already patrolling and re-stamps them; that write
// changes nothing but costs a round of gossip, so we skip it.)
func (c *City) Patrol() (crdt.Hero, crdt.Delta, bool) {
	h, ok := c.pick(func(h *crdt.Hero) bool { return !h.Patrolling })
	if !ok {
		return crdt.Hero{}, crdt.Delta{}, false
	}
	h, d, err := c.replica.Update(h.ID, func(h *crdt.Hero) { h.Patrolling = true })
	return h, d, err == nil
}

// Fight is the outcome of one fight.
type Fight struct {
	// Hero is the hero after the fight; Hero.Dead is set if it died.
	Hero crdt.Hero
	// Damage is the health lost.
	Damage int
}

// Died reports whether the hero died in the fight.
func (f Fight) Died() bool { return f.Hero.Dead }

// Fight makes one random patrolling hero of this city fight: it loses a
// uniform MinDamage..MaxDamage health, floored at 0, and at 0 it dies and is
// tombstoned. It reports false, writing nothing, when nobody patrols here.
func (c *City) Fight() (Fight, crdt.Delta, bool) {
	h, ok := c.pick(func(h *crdt.Hero) bool { return h.Patrolling })
	if !ok {
		return Fight{}, crdt.Delta{}, false
	}
	dmg := c.cfg.MinDamage + c.rng.IntN(c.cfg.MaxDamage-c.cfg.MinDamage+1)
	dmg = min(dmg, h.Health)
	if h.Health-dmg <= 0 {
		d, err := c.replica.Delete(h.ID)
		if err != nil {
			return Fight{}, crdt.Delta{}, false
		}
		dead, _ := c.replica.Get(h.ID)
		return Fight{Hero: dead, Damage: dmg}, d, true
	}
	h, d, err := c.replica.Update(h.ID, func(h *crdt.Hero) { h.Health -= dmg })
	if err != nil {
		return Fight{}, crdt.Delta{}, false
	}
	return Fight{Hero: h, Damage: dmg}, d, true
}

// Assign moves the hero to this city: not patrolling, healed by Heal up to
// crdt.MaxHealth. A dead hero gives ErrDead and an unknown one ErrUnknown;
// neither changes anything.
func (c *City) Assign(id uuid.UUID) (crdt.Hero, crdt.Delta, error) {
	return assign(c.replica, id, c.name, c.cfg.Heal)
}

// AssignHome applies the same healing rule with the hero going Home. It is
// a replica-level rule because Home is not a city: dispatch applies it.
func AssignHome(r *crdt.Replica, id uuid.UUID, cfg Config) (crdt.Hero, crdt.Delta, error) {
	return assign(r, id, crdt.Home, cfg.withDefaults().Heal)
}

func assign(r *crdt.Replica, id uuid.UUID, to crdt.Location, heal int) (crdt.Hero, crdt.Delta, error) {
	return r.Update(id, func(h *crdt.Hero) {
		h.Location = to
		h.Patrolling = false
		h.Health = min(h.Health+heal, crdt.MaxHealth)
	})
}

func compareID(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }
