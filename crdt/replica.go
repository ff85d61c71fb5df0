package crdt

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// Delta is a set of entries (live heroes and tombstones). A single write
// returns a one-entry Delta; a full replica is the Delta of all its entries.
// Merging a Delta is the only way state moves between replicas.
type Delta struct {
	Heroes []Hero
}

// Len returns the number of entries.
func (d Delta) Len() int { return len(d.Heroes) }

// IsEmpty reports whether d carries nothing.
func (d Delta) IsEmpty() bool { return len(d.Heroes) == 0 }

// Replica is one node's copy of the superheroes. The zero value is not
// usable; call NewReplica. A Replica is not safe for concurrent use: each
// one is owned by a single actor or guarded by its owner's lock.
type Replica struct {
	clock   *Clock
	entries map[uuid.UUID]Hero
	live    int

	// Digest state, maintained on every change: per leaf of the id space,
	// the sum of entry hashes and the number of entries.
	sums   [Leaves]uint64
	counts [Leaves]uint32
	total  uint64
	// ids lists, per leaf, the ids held, in no order, so Slice reads only
	// the leaves it is asked for.
	ids [Leaves][]uuid.UUID

	// horizon is the wall time before which tombstones have been collected.
	horizon int64
}

// NewReplica returns an empty replica stamping its writes with clock.
func NewReplica(clock *Clock) *Replica {
	return &Replica{clock: clock, entries: make(map[uuid.UUID]Hero)}
}

// Clock returns the replica's clock.
func (r *Replica) Clock() *Clock { return r.clock }

// Len returns the number of live heroes.
func (r *Replica) Len() int { return r.live }

// Tombstones returns the number of tombstones held.
func (r *Replica) Tombstones() int { return len(r.entries) - r.live }

// Get returns the entry for id, which may be a tombstone.
func (r *Replica) Get(id uuid.UUID) (Hero, bool) {
	h, ok := r.entries[id]
	return h, ok
}

// Lookup returns the live hero with id, ErrDead for a tombstone and
// ErrUnknown for an id never seen.
func (r *Replica) Lookup(id uuid.UUID) (Hero, error) {
	h, ok := r.entries[id]
	switch {
	case !ok:
		return Hero{}, fmt.Errorf("%w: %s", ErrUnknown, id)
	case h.Dead:
		return h, fmt.Errorf("%w: %s", ErrDead, id)
	}
	return h, nil
}

// Heroes returns the live heroes sorted by id.
func (r *Replica) Heroes() []Hero {
	out := make([]Hero, 0, r.live)
	for _, h := range r.entries {
		if !h.Dead {
			out = append(out, h)
		}
	}
	sortByID(out)
	return out
}

// Each calls fn for every entry, tombstones included, in no fixed order,
// until fn returns false.
func (r *Replica) Each(fn func(Hero) bool) {
	for _, h := range r.entries {
		if !fn(h) {
			return
		}
	}
}

// State returns every entry as a Delta, sorted by id.
func (r *Replica) State() Delta {
	out := make([]Hero, 0, len(r.entries))
	for _, h := range r.entries {
		out = append(out, h)
	}
	sortByID(out)
	return Delta{Heroes: out}
}

// Create writes a new live hero at Home with full health.
func (r *Replica) Create(id uuid.UUID, name string) (Hero, Delta, error) {
	if _, ok := r.entries[id]; ok {
		return Hero{}, Delta{}, fmt.Errorf("crdt: hero %s already exists", id)
	}
	h := Hero{ID: id, Name: name, Location: Home, Health: MaxHealth, Stamp: Timestamp{Node: r.clock.Node()}}
	if err := h.check(); err != nil {
		return Hero{}, Delta{}, err
	}
	h.Stamp = r.clock.Now()
	r.set(h)
	return h, Delta{Heroes: []Hero{h}}, nil
}

// Update applies fn to the live hero with id and writes the result with a
// fresh stamp. It returns ErrUnknown or ErrDead, changing nothing, when
// there is no live hero, and an error, changing nothing, when fn leaves an
// invalid location (ErrLocation) or an over-long name. fn may not change
// the id; setting Dead is the same as Delete.
func (r *Replica) Update(id uuid.UUID, fn func(*Hero)) (Hero, Delta, error) {
	h, err := r.Lookup(id)
	if err != nil {
		return Hero{}, Delta{}, err
	}
	fn(&h)
	h.ID, h.Stamp = id, Timestamp{Node: r.clock.Node()}
	h.Health = min(max(h.Health, 0), MaxHealth)
	if h.Dead {
		h.Patrolling, h.Health = false, 0
	}
	if err := h.check(); err != nil {
		return Hero{}, Delta{}, err
	}
	h.Stamp = r.clock.Now()
	r.set(h)
	return h, Delta{Heroes: []Hero{h}}, nil
}

// Delete tombstones the hero. Deleting a tombstone again is a no-op that
// returns an empty Delta; deleting an id never seen returns ErrUnknown.
func (r *Replica) Delete(id uuid.UUID) (Delta, error) {
	h, ok := r.entries[id]
	switch {
	case !ok:
		return Delta{}, fmt.Errorf("%w: %s", ErrUnknown, id)
	case h.Dead:
		return Delta{}, nil
	}
	h.Dead, h.Patrolling, h.Health = true, false, 0
	h.Stamp = r.clock.Now()
	r.set(h)
	return Delta{Heroes: []Hero{h}}, nil
}

// Merge folds d into the replica and returns the entries that changed it
// (the effective delta, for forwarding and change feeds). Merge is
// commutative, associative and idempotent; see the package documentation.
// Merge moves the clock past the latest stamp in d, however far ahead it
// is: check a delta from another node with CheckOffset first.
func (r *Replica) Merge(d Delta) Delta {
	var changed []Hero
	var latest Timestamp
	// skipped holds, per id, the latest tombstone passed over below as
	// already collected. If a live entry for that id follows in the same
	// delta, the tombstone is stored instead, so that the order of entries
	// within a delta does not matter.
	var skipped map[uuid.UUID]*Hero
	for i := range d.Heroes {
		in := &d.Heroes[i]
		if latest.Less(in.Stamp) {
			latest = in.Stamp
		}
		cur, ok := r.entries[in.ID]
		if ok && !in.Supersedes(&cur) {
			continue
		}
		if !ok && in.Dead && in.Stamp.Wall < r.horizon {
			// A tombstone this replica already collected: keeping it again
			// would only ping-pong it between replicas.
			if prev := skipped[in.ID]; prev == nil || in.Supersedes(prev) {
				if skipped == nil {
					skipped = make(map[uuid.UUID]*Hero)
				}
				skipped[in.ID] = in
			}
			continue
		}
		if t := skipped[in.ID]; !ok && !in.Dead && t != nil {
			in = t // a tombstone beats any live entry
		}
		r.set(*in)
		changed = append(changed, *in)
	}
	if !latest.IsZero() {
		r.clock.Observe(latest)
	}
	return Delta{Heroes: changed}
}

// Collect drops tombstones stamped before wall (nanoseconds) and returns how
// many it dropped. From then on the replica ignores incoming tombstones
// older than wall for ids it does not hold. See the package documentation
// for the rule that makes this safe.
func (r *Replica) Collect(wall int64) int {
	if wall <= r.horizon {
		return 0
	}
	r.horizon = wall
	n := 0
	for id, h := range r.entries {
		if h.Dead && h.Stamp.Wall < wall {
			r.remove(id, &h)
			n++
		}
	}
	return n
}

// Horizon returns the wall time passed to the latest effective Collect.
func (r *Replica) Horizon() int64 { return r.horizon }

// set stores h, replacing any entry for its id, and keeps the digest state.
func (r *Replica) set(h Hero) {
	leaf := LeafOf(h.ID)
	if old, ok := r.entries[h.ID]; ok {
		oh := old.hash()
		r.sums[leaf] -= oh
		r.total -= oh
		if !old.Dead {
			r.live--
		}
	} else {
		r.counts[leaf]++
		r.ids[leaf] = append(r.ids[leaf], h.ID)
	}
	nh := h.hash()
	r.sums[leaf] += nh
	r.total += nh
	if !h.Dead {
		r.live++
	}
	r.entries[h.ID] = h
}

func (r *Replica) remove(id uuid.UUID, old *Hero) {
	leaf := LeafOf(id)
	oh := old.hash()
	r.sums[leaf] -= oh
	r.total -= oh
	r.counts[leaf]--
	if !old.Dead {
		r.live--
	}
	ids := r.ids[leaf]
	if i := slices.Index(ids, id); i >= 0 {
		last := len(ids) - 1
		ids[i] = ids[last]
		r.ids[leaf] = ids[:last]
	}
	delete(r.entries, id)
}

func sortByID(hs []Hero) {
	slices.SortFunc(hs, func(a, b Hero) int { return bytes.Compare(a.ID[:], b.ID[:]) })
}
