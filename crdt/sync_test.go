package crdt_test

import (
	"slices"
	"testing"

	"github.com/superhero-cluster/superhero/crdt"
)

// exchange runs one anti-entropy exchange started by a with b, every
// message going through the binary codec, until a step returns an empty
// message. It returns how many non-empty messages were sent (SyncStart
// included) and how many entries they carried.
func exchange(t testing.TB, a, b *crdt.Replica) (msgs, moved int) {
	t.Helper()
	msg := a.SyncStart()
	to, other := b, a
	for !msg.IsEmpty() {
		msgs++
		if msgs > 100 {
			t.Fatalf("exchange did not end after %d messages", msgs)
		}
		if msg.Delta.Len() > crdt.MaxSyncEntries {
			t.Fatalf("message %d carries %d entries, over MaxSyncEntries", msgs, msg.Delta.Len())
		}
		moved += msg.Delta.Len()
		wire, err := msg.MarshalBinary()
		if err != nil {
			t.Fatalf("message %d: %v", msgs, err)
		}
		var got crdt.SyncMsg
		if err := got.UnmarshalBinary(wire); err != nil {
			t.Fatalf("message %d: %v", msgs, err)
		}
		msg, _ = to.SyncStep(got)
		to, other = other, to
	}
	return msgs, moved
}

// bigSize is the size of the large anti-entropy tests.
func bigSize() int {
	if testing.Short() {
		return 20_000
	}
	return 100_000
}

// TestSyncFewDifferences: two replicas of 100,000 heroes that differ in 10
// entries (updates on either side, a create, a delete) reconcile in one
// exchange of a few messages that moves a few leaves, not the state.
func TestSyncFewDifferences(t *testing.T) {
	rng := seeded(10)
	a, amc := newReplica("a")
	ids := populate(t, a, rng, bigSize())
	b := crdt.NewReplica(crdt.NewClock("b", newManualClock(epoch+2e9).Now))
	b.Merge(a.State())
	amc.Advance(1e9)

	for i := range 4 {
		if _, _, err := a.Update(ids[i], func(h *crdt.Hero) { h.Location = crdt.Gotham }); err != nil {
			t.Fatal(err)
		}
	}
	for i := 4; i < 8; i++ {
		if _, _, err := b.Update(ids[i], func(h *crdt.Hero) { h.Patrolling = true }); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.Create(randomID(rng), "Newcomer"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Delete(ids[8]); err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("replicas do not differ")
	}
	msgs, moved := exchange(t, a, b)
	t.Logf("%d heroes, 10 differences: %d messages, %d entries moved", bigSize(), msgs, moved)
	sameReplica(t, "after one exchange", a, b)
	if msgs > 4 {
		t.Errorf("exchange took %d messages, want at most 4 (digest, narrower digests, entries both ways)", msgs)
	}
	if moved >= 10*crdt.SmallRange {
		t.Errorf("exchange moved %d entries, want fewer than %d", moved, 10*crdt.SmallRange)
	}
	// Equal replicas: the exchange ends after the first digest.
	if msgs, moved := exchange(t, b, a); msgs != 1 || moved != 0 {
		t.Errorf("exchange between equal replicas: %d messages, %d entries", msgs, moved)
	}
}

// TestSyncRefill: an empty replica (a city restarted after a bomb) is
// refilled in one exchange, whichever side starts it.
func TestSyncRefill(t *testing.T) {
	rng := seeded(11)
	full, mc := newReplica("full")
	ids := populate(t, full, rng, bigSize())
	mc.Advance(1e9)
	for _, id := range ids[:100] {
		if _, err := full.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	for _, emptyStarts := range []bool{true, false} {
		empty, _ := newReplica("empty")
		var msgs, moved int
		if emptyStarts {
			msgs, moved = exchange(t, empty, full)
		} else {
			msgs, moved = exchange(t, full, empty)
		}
		if !sameReplica(t, "refilled", empty, full) {
			continue
		}
		if moved != bigSize() {
			t.Errorf("emptyStarts=%v: moved %d entries, want %d", emptyStarts, moved, bigSize())
		}
		// One message per MaxSyncEntries entries each way, plus the
		// opening digests.
		if limit := 2*(bigSize()/crdt.MaxSyncEntries+1) + 3; msgs > limit {
			t.Errorf("emptyStarts=%v: %d messages, want at most %d", emptyStarts, msgs, limit)
		}
	}
}

// TestSyncManyDifferences: replicas that differ a lot, with both sides
// holding entries the other lacks in the same leaves, still converge in
// one exchange.
func TestSyncManyDifferences(t *testing.T) {
	rng := seeded(12)
	a, _ := newReplica("a")
	b, _ := newReplica("b")
	shared := populate(t, a, rng, 5000)
	b.Merge(a.State())
	populate(t, a, rng, 3000)
	populate(t, b, rng, 3000)
	for _, id := range shared[:500] {
		if _, err := b.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	exchange(t, a, b)
	sameReplica(t, "after one exchange", a, b)
	if a.Len() != 5000+6000-500 {
		t.Fatalf("Len = %d", a.Len())
	}
}

// TestSyncCollectedTombstones checks the tombstone-GC rule of doc.go under
// anti-entropy.
func TestSyncCollectedTombstones(t *testing.T) {
	rng := seeded(13)
	a, amc := newReplica("a")
	ids := populate(t, a, rng, 2000)
	b := crdt.NewReplica(crdt.NewClock("b", newManualClock(epoch).Now))
	b.Merge(a.State())
	amc.Advance(1e9)
	dead, alive := ids[0], ids[1]
	d, err := a.Delete(dead)
	if err != nil {
		t.Fatal(err)
	}
	b.Merge(d)
	horizon := epoch + 10e9 // the tombstone is older than the horizon

	// a collects; b has not collected yet and still holds the tombstone.
	if n := a.Collect(horizon); n != 1 {
		t.Fatalf("Collect = %d, want 1", n)
	}
	for range 2 {
		for _, starter := range []bool{true, false} {
			if starter {
				exchange(t, a, b)
			} else {
				exchange(t, b, a)
			}
			if _, ok := a.Get(dead); ok {
				t.Fatal("anti-entropy copied a collected tombstone back")
			}
			if h, ok := b.Get(dead); !ok || !h.Dead {
				t.Fatal("b lost its tombstone")
			}
		}
	}
	// Once b collects too, the replicas are equal again.
	b.Collect(horizon)
	sameReplica(t, "both collected", a, b)

	// A tombstone older than the horizon for an id a still holds alive is
	// applied, by merge and by anti-entropy alike.
	c := crdt.NewReplica(crdt.NewClock("c", newManualClock(epoch+2e9).Now))
	c.Merge(a.State())
	d, err = c.Delete(alive)
	if err != nil {
		t.Fatal(err)
	}
	if d.Heroes[0].Stamp.Wall >= horizon {
		t.Fatal("test setup: tombstone not older than the horizon")
	}
	exchange(t, c, a)
	if _, err := a.Lookup(alive); err == nil {
		t.Fatal("a tombstone for a hero held alive was not applied")
	}
	sameReplica(t, "after the late tombstone", a, c)
}

// TestDigest covers Digest, DigestRange, Diff and Slice on their own.
func TestDigest(t *testing.T) {
	rng := seeded(14)
	a, _ := newReplica("a")
	ids := populate(t, a, rng, 3000)
	b := clone(t, a)

	full := a.Digest()
	if full.Range != crdt.FullRange() || len(full.Sums) != crdt.Fanout || full.Total() != 3000 {
		t.Fatalf("Digest: range %v, %d parts, total %d", full.Range, len(full.Sums), full.Total())
	}
	if full.Fingerprint() != a.Fingerprint() {
		t.Fatal("Digest fingerprint differs from the replica's")
	}
	if rs := crdt.Diff(full, b.Digest()); len(rs) != 0 {
		t.Fatalf("Diff of equal digests = %v", rs)
	}

	// One changed hero: Diff finds exactly the part that holds it, and
	// narrowing the digest to that part finds its leaf.
	id := ids[42]
	if _, _, err := b.Update(id, func(h *crdt.Hero) { h.Health = 1 }); err != nil {
		t.Fatal(err)
	}
	leaf := crdt.LeafOf(id)
	rs := crdt.Diff(a.Digest(), b.Digest())
	if len(rs) != 1 || rs[0].Len() != crdt.Leaves/crdt.Fanout || leaf < rs[0].Lo || leaf >= rs[0].Hi {
		t.Fatalf("Diff = %v, want the one part holding leaf %d", rs, leaf)
	}
	narrow := crdt.Diff(a.DigestRange(rs[0]), b.DigestRange(rs[0]))
	if len(narrow) != 1 || narrow[0] != (crdt.Range{Lo: leaf, Hi: leaf + 1}) {
		t.Fatalf("narrowed Diff = %v, want leaf %d", narrow, leaf)
	}
	s := b.Slice(narrow)
	if !slices.ContainsFunc(s.Heroes, func(h crdt.Hero) bool { return h.ID == id && h.Health == 1 }) {
		t.Fatal("Slice of the differing leaf misses the changed hero")
	}
	for i, h := range s.Heroes {
		if crdt.LeafOf(h.ID) != leaf {
			t.Fatalf("Slice returned a hero of leaf %d", crdt.LeafOf(h.ID))
		}
		if i > 0 && slices.Compare(s.Heroes[i-1].ID[:], h.ID[:]) >= 0 {
			t.Fatal("Slice is not sorted by id")
		}
	}
	if got := a.DigestRange(narrow[0]).Total(); got != s.Len() {
		t.Fatalf("leaf count %d, Slice returned %d", got, s.Len())
	}

	// Slice merges overlapping ranges and ignores invalid ones.
	all := a.Slice([]crdt.Range{{Lo: 100, Hi: crdt.Leaves}, {Lo: 0, Hi: 200}, {Lo: 5, Hi: 5}, {Lo: -1, Hi: 3}})
	if all.Len() != 3000 || diffStates(all, a.State()) != "" {
		t.Fatalf("Slice over overlapping ranges: %d entries", all.Len())
	}
	if got := a.Slice(nil); !got.IsEmpty() {
		t.Fatalf("Slice(nil) = %d entries", got.Len())
	}

	// Digests over different ranges compare as wholly different; an
	// invalid digest yields nothing.
	r1, r2 := crdt.Range{Lo: 0, Hi: 64}, crdt.Range{Lo: 0, Hi: 128}
	if got := crdt.Diff(a.DigestRange(r1), a.DigestRange(r2)); !slices.Equal(got, []crdt.Range{r1}) {
		t.Fatalf("Diff over different ranges = %v", got)
	}
	if got := crdt.Diff(crdt.Digest{}, a.Digest()); got != nil {
		t.Fatalf("Diff of an invalid digest = %v", got)
	}
	// A range smaller than Fanout has one part per leaf.
	if d := a.DigestRange(crdt.Range{Lo: 7, Hi: 10}); len(d.Sums) != 3 {
		t.Fatalf("digest of 3 leaves has %d parts", len(d.Sums))
	}
}

// TestSyncStepIgnoresBadDigests: a digest that is not valid (wrong number
// of parts) is skipped, not trusted and not a panic.
func TestSyncStepIgnoresBadDigests(t *testing.T) {
	a, _ := newReplica("a")
	populate(t, a, seeded(15), 100)
	fp := a.Fingerprint()
	out, changed := a.SyncStep(crdt.SyncMsg{Digests: []crdt.Digest{
		{Range: crdt.FullRange(), Sums: []uint64{1}, Counts: []uint32{1}},
		{Range: crdt.Range{Lo: 5, Hi: 2}},
	}})
	if !out.IsEmpty() || !changed.IsEmpty() || a.Fingerprint() != fp {
		t.Fatalf("bad digests: out %+v, changed %d", out, changed.Len())
	}
}
