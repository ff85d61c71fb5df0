package crdt_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

var ruleID = uuid.MustParse("6f1c0e2a-1111-4222-8333-444455556666")

func live(wall int64, logical uint32, node, name string) crdt.Hero {
	return crdt.Hero{ID: ruleID, Name: name, Location: crdt.Gotham, Health: 80, Stamp: ts(wall, logical, node)}
}

func tomb(wall int64, logical uint32, node string) crdt.Hero {
	return crdt.Hero{ID: ruleID, Name: "x", Location: crdt.Gotham, Dead: true, Stamp: ts(wall, logical, node)}
}

// TestMergeRules is the table of doc.go, row by row: what a replica holds,
// what arrives, and what it holds afterwards.
func TestMergeRules(t *testing.T) {
	tests := []struct {
		name    string
		holds   *crdt.Hero
		horizon int64 // Collect(horizon) before the merge, if > 0
		in      crdt.Hero
		want    *crdt.Hero // nil: nothing held
	}{
		{name: "nothing + live", in: live(10, 0, "a", "x"), want: ptr(live(10, 0, "a", "x"))},
		{name: "live + later live", holds: ptr(live(10, 0, "a", "x")), in: live(10, 1, "a", "y"), want: ptr(live(10, 1, "a", "y"))},
		{name: "live + earlier live", holds: ptr(live(10, 1, "a", "x")), in: live(10, 0, "b", "y"), want: ptr(live(10, 1, "a", "x"))},
		{name: "node breaks a stamp tie", holds: ptr(live(10, 0, "a", "x")), in: live(10, 0, "b", "y"), want: ptr(live(10, 0, "b", "y"))},
		{name: "node breaks a stamp tie, other way", holds: ptr(live(10, 0, "b", "x")), in: live(10, 0, "a", "y"), want: ptr(live(10, 0, "b", "x"))},
		{name: "same entry again", holds: ptr(live(10, 0, "a", "x")), in: live(10, 0, "a", "x"), want: ptr(live(10, 0, "a", "x"))},
		{name: "same stamp, larger content", holds: ptr(live(10, 0, "a", "x")), in: live(10, 0, "a", "y"), want: ptr(live(10, 0, "a", "y"))},
		{name: "same stamp, smaller content", holds: ptr(live(10, 0, "a", "y")), in: live(10, 0, "a", "x"), want: ptr(live(10, 0, "a", "y"))},
		{name: "live + older tombstone", holds: ptr(live(50, 0, "a", "x")), in: tomb(10, 0, "b"), want: ptr(tomb(10, 0, "b"))},
		{name: "tombstone + newer live", holds: ptr(tomb(10, 0, "b")), in: live(50, 0, "a", "x"), want: ptr(tomb(10, 0, "b"))},
		{name: "tombstone + later tombstone", holds: ptr(tomb(10, 0, "b")), in: tomb(11, 0, "a"), want: ptr(tomb(11, 0, "a"))},
		{name: "tombstone + earlier tombstone", holds: ptr(tomb(11, 0, "a")), in: tomb(10, 0, "b"), want: ptr(tomb(11, 0, "a"))},
		{name: "nothing, horizon + older tombstone", horizon: 20, in: tomb(19, 5, "a"), want: nil},
		{name: "nothing, horizon + tombstone at horizon", horizon: 20, in: tomb(20, 0, "a"), want: ptr(tomb(20, 0, "a"))},
		{name: "nothing, horizon + old live", horizon: 20, in: live(5, 0, "a", "x"), want: ptr(live(5, 0, "a", "x"))},
		{name: "live, horizon + older tombstone", holds: ptr(live(5, 0, "a", "x")), horizon: 20, in: tomb(10, 0, "b"), want: ptr(tomb(10, 0, "b"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newReplica("r")
			if tt.holds != nil {
				r.Merge(crdt.Delta{Heroes: []crdt.Hero{*tt.holds}})
			}
			if tt.horizon > 0 {
				r.Collect(tt.horizon)
			}
			before := r.State()
			changed := r.Merge(crdt.Delta{Heroes: []crdt.Hero{tt.in}})
			got, ok := r.Get(ruleID)
			switch {
			case tt.want == nil && ok:
				t.Fatalf("holds %+v, want nothing", got)
			case tt.want != nil && !ok:
				t.Fatalf("holds nothing, want %+v", *tt.want)
			case tt.want != nil && got != *tt.want:
				t.Fatalf("holds %+v, want %+v", got, *tt.want)
			}
			// The effective delta is exactly the change.
			wantChanged := diffStates(before, r.State()) != ""
			if (changed.Len() == 1) != wantChanged || changed.Len() > 1 {
				t.Fatalf("Merge returned %d changed entries; state changed: %v", changed.Len(), wantChanged)
			}
			if wantChanged && changed.Heroes[0] != tt.in {
				t.Fatalf("changed = %+v, want the incoming entry", changed.Heroes[0])
			}
			// The order of arrival does not matter when nothing was collected.
			if tt.horizon == 0 && tt.holds != nil {
				r2, _ := newReplica("r2")
				r2.Merge(crdt.Delta{Heroes: []crdt.Hero{tt.in}})
				r2.Merge(crdt.Delta{Heroes: []crdt.Hero{*tt.holds}})
				sameReplica(t, "reverse order", r, r2)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestMergeOrderWithinDelta: a delta carrying both a live entry and a
// tombstone older than the horizon for an id the replica does not hold
// leaves it dead, in either order, and merging it again changes nothing.
func TestMergeOrderWithinDelta(t *testing.T) {
	old, young := tomb(10, 0, "b"), tomb(30, 0, "b")
	tests := []struct {
		name string
		in   []crdt.Hero
		want *crdt.Hero
	}{
		{"old tombstone, live", []crdt.Hero{old, live(50, 0, "a", "x")}, &old},
		{"live, old tombstone", []crdt.Hero{live(50, 0, "a", "x"), old}, &old},
		{"old tombstone, young tombstone", []crdt.Hero{old, young}, &young},
		{"young tombstone, old tombstone", []crdt.Hero{young, old}, &young},
		{"old tombstone, live, young tombstone", []crdt.Hero{old, live(50, 0, "a", "x"), young}, &young},
		{"old tombstones only", []crdt.Hero{old, tomb(11, 0, "c")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newReplica("r")
			r.Collect(20)
			d := crdt.Delta{Heroes: tt.in}
			r.Merge(d)
			got, ok := r.Get(ruleID)
			switch {
			case tt.want == nil && ok:
				t.Fatalf("holds %+v, want nothing", got)
			case tt.want != nil && got != *tt.want:
				t.Fatalf("holds %+v (%v), want %+v", got, ok, *tt.want)
			}
			if ch := r.Merge(d); !ch.IsEmpty() {
				t.Fatalf("second merge changed %+v", ch.Heroes)
			}
		})
	}
}

// TestMergeObservesClock: after merging a remote write stamped in the
// future, a local write is stamped after it and so wins locally.
func TestMergeObservesClock(t *testing.T) {
	a, _ := newReplica("a")
	b, bc := newReplica("b")
	id := uuid.MustParse("00000000-0000-4000-8000-000000000001")
	bc.Advance(60e9) // b's clock runs a minute ahead
	_, d, err := b.Create(id, "Storm")
	if err != nil {
		t.Fatal(err)
	}
	a.Merge(d)
	h, _, err := a.Update(id, func(h *crdt.Hero) { h.Location = crdt.Capitol })
	if err != nil {
		t.Fatal(err)
	}
	if !d.Heroes[0].Stamp.Less(h.Stamp) {
		t.Fatalf("local write %v not after merged %v", h.Stamp, d.Heroes[0].Stamp)
	}
	if got, _ := a.Get(id); got.Location != crdt.Capitol {
		t.Fatalf("local write lost: %+v", got)
	}
}

func TestReplicaWrites(t *testing.T) {
	r, mc := newReplica("dispatch")
	id := uuid.MustParse("00000000-0000-4000-8000-000000000001")
	other := uuid.MustParse("00000000-0000-4000-8000-000000000002")
	unknown := uuid.MustParse("00000000-0000-4000-8000-000000000003")

	h, d, err := r.Create(id, "Batman")
	if err != nil {
		t.Fatal(err)
	}
	want := crdt.Hero{ID: id, Name: "Batman", Location: crdt.Home, Health: crdt.MaxHealth, Stamp: ts(epoch, 0, "dispatch")}
	if h != want || d.Len() != 1 || d.Heroes[0] != want {
		t.Fatalf("Create = %+v, %+v; want %+v", h, d, want)
	}
	if _, _, err := r.Create(id, "Robin"); err == nil {
		t.Fatal("Create of an existing id succeeded")
	}
	if _, _, err := r.Create(other, "Robin"); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 2 || r.Tombstones() != 0 {
		t.Fatalf("Len, Tombstones = %d, %d", r.Len(), r.Tombstones())
	}

	// Update clamps health and keeps the id.
	mc.Advance(1e9)
	h, d, err = r.Update(id, func(h *crdt.Hero) { h.Health = 500; h.ID = other; h.Patrolling = true })
	if err != nil {
		t.Fatal(err)
	}
	if h.ID != id || h.Health != crdt.MaxHealth || !h.Patrolling || h.Stamp != ts(epoch+1e9, 0, "dispatch") || d.Heroes[0] != h {
		t.Fatalf("Update = %+v", h)
	}
	if h, _, _ = r.Update(id, func(h *crdt.Hero) { h.Health = -3 }); h.Health != 0 {
		t.Fatalf("health = %d, want floor 0", h.Health)
	}
	if got, _ := r.Get(other); got.Name != "Robin" || got.Patrolling {
		t.Fatalf("Update with a changed id wrote another hero: %+v", got)
	}

	// Errors change nothing: no write, no clock tick.
	fp, last := r.Fingerprint(), r.Clock().Last()
	if _, _, err := r.Update(unknown, func(h *crdt.Hero) { h.Health = 1 }); !errors.Is(err, crdt.ErrUnknown) {
		t.Fatalf("Update(unknown) = %v, want ErrUnknown", err)
	}
	if _, err := r.Delete(unknown); !errors.Is(err, crdt.ErrUnknown) {
		t.Fatalf("Delete(unknown) = %v, want ErrUnknown", err)
	}
	if _, err := r.Lookup(unknown); !errors.Is(err, crdt.ErrUnknown) {
		t.Fatalf("Lookup(unknown) = %v, want ErrUnknown", err)
	}
	if r.Fingerprint() != fp || r.Clock().Last() != last {
		t.Fatal("a failed write changed the replica or its clock")
	}

	// Delete writes a tombstone; deleting again is a no-op.
	d, err = r.Delete(id)
	if err != nil || d.Len() != 1 || !d.Heroes[0].Dead || d.Heroes[0].Name != "Batman" || d.Heroes[0].Health != 0 || d.Heroes[0].Patrolling {
		t.Fatalf("Delete = %+v, %v", d, err)
	}
	fp = r.Fingerprint()
	if d, err := r.Delete(id); err != nil || !d.IsEmpty() || r.Fingerprint() != fp {
		t.Fatalf("second Delete = %+v, %v", d, err)
	}
	if _, _, err := r.Update(id, func(h *crdt.Hero) {}); !errors.Is(err, crdt.ErrDead) {
		t.Fatalf("Update(dead) = %v, want ErrDead", err)
	}
	if _, err := r.Lookup(id); !errors.Is(err, crdt.ErrDead) {
		t.Fatalf("Lookup(dead) = %v, want ErrDead", err)
	}
	if _, _, err := r.Create(id, "Batman"); err == nil {
		t.Fatal("Create over a tombstone succeeded")
	}
	if r.Len() != 1 || r.Tombstones() != 1 || r.Fingerprint() != fp {
		t.Fatalf("Len, Tombstones = %d, %d", r.Len(), r.Tombstones())
	}
	if hs := r.Heroes(); len(hs) != 1 || hs[0].ID != other {
		t.Fatalf("Heroes = %+v, want only Robin", hs)
	}
	n := 0
	r.Each(func(crdt.Hero) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Each visited %d entries after returning false", n)
	}

	// Setting Dead through Update is the same as Delete.
	_, _, err = r.Update(other, func(h *crdt.Hero) { h.Dead = true; h.Patrolling = true; h.Health = 40 })
	if err != nil || r.Len() != 0 || r.Tombstones() != 2 {
		t.Fatalf("Update to dead: %v, Len %d", err, r.Len())
	}
	if got, _ := r.Get(other); !got.Dead || got.Patrolling || got.Health != 0 {
		t.Fatalf("tombstone written by Update = %+v, want dead, idle, health 0 like Delete", got)
	}
}

// TestWriteValidation: a replica only holds entries every peer can decode,
// so a write with a bad location, name or id fails and changes nothing.
func TestWriteValidation(t *testing.T) {
	r, _ := newReplica("a")
	id := uuid.MustParse("00000000-0000-4000-8000-000000000001")
	if _, _, err := r.Create(id, "Flash"); err != nil {
		t.Fatal(err)
	}
	fp, last := r.Fingerprint(), r.Clock().Last()
	for _, tt := range []struct {
		fn  func(*crdt.Hero)
		loc bool // the error is ErrLocation
	}{
		{func(h *crdt.Hero) { h.Location = "" }, true},
		{func(h *crdt.Hero) { h.Location = "Gotham City" }, true},
		{func(h *crdt.Hero) { h.Name = strings.Repeat("n", 1000) }, false},
	} {
		_, d, err := r.Update(id, tt.fn)
		if err == nil || !d.IsEmpty() {
			t.Errorf("Update to an invalid hero = %+v, %v", d, err)
		}
		if errors.Is(err, crdt.ErrLocation) != tt.loc {
			t.Errorf("Update error %v: ErrLocation %v, want %v", err, !tt.loc, tt.loc)
		}
	}
	if _, _, err := r.Create(uuid.Nil, "Nobody"); err == nil {
		t.Error("Create with the nil id succeeded")
	}
	if _, _, err := r.Create(uuid.New(), strings.Repeat("n", 1000)); err == nil {
		t.Error("Create with a 1000-byte name succeeded")
	}
	if r.Fingerprint() != fp || r.Clock().Last() != last || r.Len() != 1 {
		t.Fatal("a rejected write changed the replica")
	}
	if _, _, err := r.Update(id, func(h *crdt.Hero) { h.Location = "new-york" }); err != nil {
		t.Fatalf("Update to a new city: %v", err)
	}
}

func TestCollect(t *testing.T) {
	r, mc := newReplica("a")
	rng := seeded(1)
	ids := populate(t, r, rng, 10)
	for i, id := range ids[:6] {
		mc.Set(epoch + int64(i)*1e9)
		if _, err := r.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	// Tombstones at epoch+0s..epoch+5s; collect those before epoch+3s.
	h := epoch + 3e9
	if n := r.Collect(h); n != 3 {
		t.Fatalf("Collect = %d, want 3", n)
	}
	if r.Horizon() != h || r.Tombstones() != 3 || r.Len() != 4 {
		t.Fatalf("Horizon, Tombstones, Len = %d, %d, %d", r.Horizon(), r.Tombstones(), r.Len())
	}
	for i, id := range ids[:6] {
		_, ok := r.Get(id)
		if ok != (i >= 3) {
			t.Errorf("tombstone %d held = %v", i, ok)
		}
	}
	if n := r.Collect(h - 1); n != 0 || r.Horizon() != h {
		t.Fatalf("Collect below the horizon = %d, horizon %d", n, r.Horizon())
	}
	// The digest state follows: a replica built from the surviving entries
	// has the same fingerprint.
	sameReplica(t, "after collect", r, clone(t, r))
	sameReplica(t, "after collect, other way", clone(t, r), r)
}
