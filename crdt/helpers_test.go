package crdt_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

// epoch is the physical time (ns) every manual clock starts from: a whole
// second, like the original's last_updated.
const epoch = int64(1_700_000_000) * 1e9

// manualClock is a physical clock driven by hand. It can stall (not move)
// and step back (set to an earlier value), like a wall clock under NTP.
type manualClock struct{ ns atomic.Int64 }

func newManualClock(ns int64) *manualClock {
	c := &manualClock{}
	c.ns.Store(ns)
	return c
}

func (c *manualClock) Now() int64       { return c.ns.Load() }
func (c *manualClock) Set(ns int64)     { c.ns.Store(ns) }
func (c *manualClock) Advance(ns int64) { c.ns.Add(ns) }

// newReplica returns an empty replica for node over a fresh manual clock
// at epoch.
func newReplica(node string) (*crdt.Replica, *manualClock) {
	mc := newManualClock(epoch)
	return crdt.NewReplica(crdt.NewClock(node, mc.Now)), mc
}

// clone returns a new replica holding exactly src's entries. It is only
// exact for a replica that never collected (its horizon is not copied).
func clone(t testing.TB, src *crdt.Replica) *crdt.Replica {
	t.Helper()
	mc := newManualClock(epoch)
	r := crdt.NewReplica(crdt.NewClock(src.Clock().Node()+"-clone", mc.Now))
	r.Merge(src.State())
	if r.Fingerprint() != src.Fingerprint() {
		t.Fatalf("clone of %s: fingerprint %x, want %x", src.Clock().Node(), r.Fingerprint(), src.Fingerprint())
	}
	return r
}

// randomID draws a version 4 UUID from rng, so ids are reproducible.
func randomID(rng *rand.Rand) uuid.UUID {
	var id uuid.UUID
	binary.BigEndian.PutUint64(id[:8], rng.Uint64())
	binary.BigEndian.PutUint64(id[8:], rng.Uint64())
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// seeded returns a PCG source for seed; every test names its seed.
func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// diffStates describes the first difference between two sorted states,
// or returns "" when they are equal.
func diffStates(a, b crdt.Delta) string {
	if slices.Equal(a.Heroes, b.Heroes) {
		return ""
	}
	if len(a.Heroes) != len(b.Heroes) {
		return fmt.Sprintf("%d entries vs %d", len(a.Heroes), len(b.Heroes))
	}
	for i := range a.Heroes {
		if a.Heroes[i] != b.Heroes[i] {
			return fmt.Sprintf("entry %d: %+v vs %+v", i, a.Heroes[i], b.Heroes[i])
		}
	}
	return "?"
}

// sameReplica reports, via t.Errorf, any difference between a and b in
// fingerprint or in full state, and whether they are equal.
func sameReplica(t testing.TB, what string, a, b *crdt.Replica) bool {
	t.Helper()
	ok := true
	if fa, fb := a.Fingerprint(), b.Fingerprint(); fa != fb {
		t.Errorf("%s: fingerprint %x vs %x", what, fa, fb)
		ok = false
	}
	if d := diffStates(a.State(), b.State()); d != "" {
		t.Errorf("%s: states differ: %s", what, d)
		ok = false
	}
	if d := diffStates(a.Slice([]crdt.Range{crdt.FullRange()}), a.State()); d != "" {
		t.Errorf("%s: Slice of the whole space differs from State: %s", what, d)
		ok = false
	}
	if a.Digest().Fingerprint() != a.Fingerprint() {
		t.Errorf("%s: digest fingerprint %x disagrees with replica fingerprint %x", what, a.Digest().Fingerprint(), a.Fingerprint())
		ok = false
	}
	return ok
}

// populate creates n heroes in r with ids drawn from rng and returns them.
func populate(t testing.TB, r *crdt.Replica, rng *rand.Rand, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = randomID(rng)
		if _, _, err := r.Create(ids[i], fmt.Sprintf("hero-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}
