// Package backend is dispatch's side of the cluster: its own replica
// (Store), the client to the city grains (Cities), and the gossip and poll
// actors under dispatch's supervisor. Backend ties them together for the
// web layer. Decisions live in plain types; the actors only drive them.
package backend

import (
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/locations/city"
)

// Store is dispatch's replica. Every change, local or merged, is passed to
// the onChange hook (the page feed) under the lock, in order; the hook must
// not block or call back into the Store. A Store is
// safe for concurrent use.
type Store struct {
	mu        sync.Mutex
	maxOffset time.Duration
	r         *crdt.Replica
	rules     city.Config
	onChange  func(crdt.Delta)
}

// NewStore returns an empty store stamping writes with clock. onChange may
// be nil.
func NewStore(clock *crdt.Clock, rules city.Config, onChange func(crdt.Delta)) *Store {
	if onChange == nil {
		onChange = func(crdt.Delta) {}
	}
	return &Store{r: crdt.NewReplica(clock), rules: rules, onChange: onChange, maxOffset: crdt.DefaultMaxClockOffset}
}

// SetMaxClockOffset sets how far ahead of the local clock a stamp from
// another node may be; 0 turns the check off.
func (s *Store) SetMaxClockOffset(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxOffset = d
}

// write runs fn under the lock and publishes the delta it returns, still
// under the lock, so changes reach the pages in the order they were made
// (publishing is non-blocking). Published after unlocking, a delete and a
// concurrent stale merge could reach the pages tombstone first.
func (s *Store) write(fn func(r *crdt.Replica) (crdt.Delta, error)) (crdt.Delta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := fn(s.r)
	if err == nil && d.Len() > 0 {
		s.onChange(d)
	}
	return d, err
}

// Create writes a new hero at home.
func (s *Store) Create(name string) (crdt.Hero, crdt.Delta, error) {
	var h crdt.Hero
	d, err := s.write(func(r *crdt.Replica) (crdt.Delta, error) {
		var d crdt.Delta
		var err error
		h, d, err = r.Create(uuid.New(), name)
		return d, err
	})
	return h, d, err
}

// Delete tombstones the hero; crdt.ErrUnknown if never seen.
func (s *Store) Delete(id uuid.UUID) (crdt.Delta, error) {
	return s.write(func(r *crdt.Replica) (crdt.Delta, error) { return r.Delete(id) })
}

// AssignHome sends the hero home, healed (see city.AssignHome).
func (s *Store) AssignHome(id uuid.UUID) (crdt.Hero, crdt.Delta, error) {
	var h crdt.Hero
	d, err := s.write(func(r *crdt.Replica) (crdt.Delta, error) {
		var d crdt.Delta
		var err error
		h, d, err = city.AssignHome(r, id, s.rules)
		return d, err
	})
	return h, d, err
}

// Merge folds d in and returns what changed.
func (s *Store) Merge(d crdt.Delta) crdt.Delta {
	changed, _ := s.write(func(r *crdt.Replica) (crdt.Delta, error) { return r.Merge(d), nil })
	return changed
}

// CheckOffset refuses a delta from another node with a stamp too far ahead
// of the local clock (see SetMaxClockOffset).
func (s *Store) CheckOffset(d crdt.Delta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.CheckOffset(d, s.maxOffset)
}

// Lookup returns the live hero, crdt.ErrDead with the tombstone, or
// crdt.ErrUnknown.
func (s *Store) Lookup(id uuid.UUID) (crdt.Hero, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Lookup(id)
}

// Entry returns what the store holds for id as a delta (empty if nothing):
// the context dispatch sends with an assignment.
func (s *Store) Entry(id uuid.UUID) crdt.Delta {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.r.Get(id); ok {
		return crdt.Delta{Heroes: []crdt.Hero{h}}
	}
	return crdt.Delta{}
}

// Heroes returns the live heroes sorted by id.
func (s *Store) Heroes() []crdt.Hero {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Heroes()
}

// State returns every entry, tombstones included.
func (s *Store) State() crdt.Delta {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.State()
}

// Digest returns the digest of the store's replica.
func (s *Store) Digest() crdt.Digest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Digest()
}

// SyncStart opens an anti-entropy exchange from the store's replica.
func (s *Store) SyncStart() crdt.SyncMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.SyncStart()
}

// Sync runs one anti-entropy step against the store's replica.
func (s *Store) Sync(in crdt.SyncMsg) (out crdt.SyncMsg, changed crdt.Delta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, changed = s.r.SyncStep(in)
	if changed.Len() > 0 {
		s.onChange(changed)
	}
	return out, changed
}

// Collect drops tombstones older than horizon (see crdt.Replica.Collect).
func (s *Store) Collect(horizon int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Collect(horizon)
}
