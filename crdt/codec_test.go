package crdt_test

import (
	"bytes"
	"errors"
	"math"
	mathrand "math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/quick"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

func sampleDelta() crdt.Delta {
	return crdt.Delta{Heroes: []crdt.Hero{
		{ID: uuid.MustParse("00000000-0000-4000-8000-000000000001"), Name: "Batman", Location: crdt.Home,
			Stamp: ts(epoch, 0, "dispatch"), Health: 100},
		{ID: uuid.MustParse("ffffffff-ffff-4fff-bfff-ffffffffffff"), Name: "Ünïcödé 🦸", Location: crdt.Gotham,
			Stamp: ts(math.MaxInt64, math.MaxUint32, strings.Repeat("n", 256)), Health: 55, Patrolling: true},
		{ID: uuid.MustParse("12345678-9abc-4def-8123-456789abcdef"), Name: "", Location: "new-york-2",
			Stamp: ts(-5, 7, ""), Dead: true},
		{ID: uuid.MustParse("12345678-9abc-4def-8123-456789abcdee"), Name: strings.Repeat("x", 256), Location: crdt.Capitol,
			Stamp: ts(math.MinInt64, 0, "capitol"), Health: 0, Patrolling: true},
	}}
}

func sampleDigest(t testing.TB, rg crdt.Range) crdt.Digest {
	t.Helper()
	r, _ := newReplica("a")
	populate(t, r, seeded(20), 500)
	return r.DigestRange(rg)
}

func sampleSync(t testing.TB) crdt.SyncMsg {
	t.Helper()
	return crdt.SyncMsg{
		Digests: []crdt.Digest{sampleDigest(t, crdt.FullRange()), sampleDigest(t, crdt.Range{Lo: 4095, Hi: 4096})},
		Want:    []crdt.Range{{Lo: 0, Hi: 1}, {Lo: 10, Hi: 4096}},
		Delta:   sampleDelta(),
	}
}

func sameDigest(a, b crdt.Digest) bool {
	return a.Range == b.Range && slices.Equal(a.Sums, b.Sums) && slices.Equal(a.Counts, b.Counts)
}

func sameSync(a, b crdt.SyncMsg) bool {
	return slices.EqualFunc(a.Digests, b.Digests, sameDigest) && slices.Equal(a.Want, b.Want) &&
		slices.Equal(a.Delta.Heroes, b.Delta.Heroes)
}

func TestCodecRoundTrip(t *testing.T) {
	for _, d := range []crdt.Delta{{}, sampleDelta()} {
		b, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got crdt.Delta
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Heroes, d.Heroes) {
			t.Errorf("delta round trip: %+v, want %+v", got, d)
		}
	}
	for _, rg := range []crdt.Range{crdt.FullRange(), {Lo: 0, Hi: 1}, {Lo: 100, Hi: 300}, {Lo: 4000, Hi: 4096}} {
		d := sampleDigest(t, rg)
		b, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got crdt.Digest
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !sameDigest(got, d) {
			t.Errorf("digest %v round trip: %+v", rg, got)
		}
	}
	for _, m := range []crdt.SyncMsg{{}, sampleSync(t), {Want: []crdt.Range{crdt.FullRange()}}} {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got crdt.SyncMsg
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !sameSync(got, m) {
			t.Errorf("sync round trip: %+v, want %+v", got, m)
		}
	}
}

// randomHero is a valid hero with fields drawn over their whole domains.
type randomHero crdt.Hero

func (randomHero) Generate(r *mathrand.Rand, _ int) reflect.Value {
	str := func(max int) string {
		b := make([]byte, r.Intn(max+1))
		r.Read(b)
		return string(b)
	}
	var id uuid.UUID
	r.Read(id[:])
	id[0] |= 1 // not the nil id
	loc := crdt.Home
	if r.Intn(2) == 0 {
		loc = crdt.Location("c" + strings.Repeat("-9z", r.Intn(11)))
	}
	return reflect.ValueOf(randomHero{
		ID: id, Name: str(256), Location: loc,
		Stamp:  crdt.Timestamp{Wall: int64(r.Uint64()), Logical: r.Uint32(), Node: str(256)},
		Health: r.Intn(crdt.MaxHealth + 1), Patrolling: r.Intn(2) == 0, Dead: r.Intn(2) == 0,
	})
}

// TestDeltaRoundTripQuick: decode(encode(x)) == x for random valid deltas.
func TestDeltaRoundTripQuick(t *testing.T) {
	prop := func(hs []randomHero) bool {
		d := crdt.Delta{}
		for _, h := range hs {
			d.Heroes = append(d.Heroes, crdt.Hero(h))
		}
		b, err := d.MarshalBinary()
		if err != nil {
			t.Error(err)
			return false
		}
		var got crdt.Delta
		if err := got.UnmarshalBinary(b); err != nil {
			t.Error(err)
			return false
		}
		return slices.Equal(got.Heroes, d.Heroes)
	}
	if err := quick.Check(prop, quickConfig(21, 300)); err != nil {
		t.Fatal(err)
	}
}

// TestMarshalRejectsUndecodable: the encoders refuse values the decoders
// would reject, so nothing is sent that no peer can read.
func TestMarshalRejectsUndecodable(t *testing.T) {
	good := sampleDelta().Heroes[0]
	for name, mutate := range map[string]func(*crdt.Hero){
		"nil id":        func(h *crdt.Hero) { h.ID = uuid.Nil },
		"long name":     func(h *crdt.Hero) { h.Name = strings.Repeat("x", 257) },
		"long node":     func(h *crdt.Hero) { h.Stamp.Node = strings.Repeat("x", 257) },
		"empty loc":     func(h *crdt.Hero) { h.Location = "" },
		"bad loc":       func(h *crdt.Hero) { h.Location = "Gotham" },
		"health > 100":  func(h *crdt.Hero) { h.Health = 101 },
		"health < 0":    func(h *crdt.Hero) { h.Health = -1 },
		"33-byte place": func(h *crdt.Hero) { h.Location = crdt.Location(strings.Repeat("a", 33)) },
	} {
		h := good
		mutate(&h)
		if _, err := (crdt.Delta{Heroes: []crdt.Hero{h}}).MarshalBinary(); err == nil {
			t.Errorf("%s: Delta.MarshalBinary succeeded", name)
		}
		if _, err := (crdt.SyncMsg{Delta: crdt.Delta{Heroes: []crdt.Hero{h}}}).MarshalBinary(); err == nil {
			t.Errorf("%s: SyncMsg.MarshalBinary succeeded", name)
		}
	}
	if _, err := (crdt.Digest{}).MarshalBinary(); err == nil {
		t.Error("invalid Digest encoded")
	}
	for _, rg := range []crdt.Range{{}, {Lo: 3, Hi: 3}, {Lo: 0, Hi: crdt.Leaves + 1}, {Lo: -1, Hi: 2}} {
		if _, err := (crdt.SyncMsg{Want: []crdt.Range{rg}}).MarshalBinary(); err == nil {
			t.Errorf("SyncMsg wanting %v encoded", rg)
		}
	}
}

// TestUnmarshalRejects: corrupt input yields ErrCorrupt and leaves the
// target untouched.
func TestUnmarshalRejects(t *testing.T) {
	delta, err := sampleDelta().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	one, err := (crdt.Delta{Heroes: sampleDelta().Heroes[:1]}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Offsets in one's encoding: kind, version, count, then the entry:
	// id 3..18, flags 19, health 20, name length 21.
	edit := func(b []byte, i int, v byte) []byte { b = bytes.Clone(b); b[i] = v; return b }
	digest, err := sampleDigest(t, crdt.FullRange()).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	sync, err := sampleSync(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		kind string // "delta", "digest", "sync"
		b    []byte
	}{
		{"empty", "delta", nil},
		{"wrong kind", "delta", digest},
		{"wrong version", "delta", edit(one, 1, 2)},
		{"trailing byte", "delta", append(bytes.Clone(one), 0)},
		{"huge count", "delta", []byte{'D', 1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"flags", "delta", edit(one, 19, 4)},
		{"health", "delta", edit(one, 20, 101)},
		{"nil id", "delta", append(append([]byte{'D', 1, 1}, make([]byte, 16)...), one[19:]...)},
		{"bad location", "delta", bytes.Replace(one, []byte("home"), []byte("HOME"), 1)},
		{"empty", "digest", nil},
		{"wrong kind", "digest", delta},
		{"range past the end", "digest", []byte{'G', 1, 0, 0x81, 0x20}},
		{"empty range", "digest", []byte{'G', 1, 5, 5}},
		{"trailing byte", "digest", append(bytes.Clone(digest), 0)},
		{"empty", "sync", nil},
		{"wrong kind", "sync", delta},
		{"huge digest count", "sync", []byte{'S', 1, 0xff, 0xff, 0x03}},
		{"bad want", "sync", []byte{'S', 1, 0, 1, 9, 3, 'D', 1, 0}},
		{"no delta", "sync", []byte{'S', 1, 0, 0}},
		{"trailing byte", "sync", append(bytes.Clone(sync), 0)},
	}
	for i := range delta {
		tests = append(tests, struct {
			name string
			kind string
			b    []byte
		}{"truncated delta", "delta", delta[:i]})
	}
	for i := range sync {
		if i%7 == 0 {
			tests = append(tests, struct {
				name string
				kind string
				b    []byte
			}{"truncated sync", "sync", sync[:i]})
		}
	}
	for _, tt := range tests {
		var err error
		switch tt.kind {
		case "delta":
			d := sampleDelta()
			err = d.UnmarshalBinary(tt.b)
			if !slices.Equal(d.Heroes, sampleDelta().Heroes) {
				t.Errorf("%s: failed decode changed the target", tt.name)
			}
		case "digest":
			d := crdt.Digest{Range: crdt.Range{Lo: 1, Hi: 2}}
			err = d.UnmarshalBinary(tt.b)
			if d.Range != (crdt.Range{Lo: 1, Hi: 2}) {
				t.Errorf("%s: failed decode changed the target", tt.name)
			}
		case "sync":
			m := crdt.SyncMsg{Want: []crdt.Range{{Lo: 1, Hi: 2}}}
			err = m.UnmarshalBinary(tt.b)
			if len(m.Want) != 1 {
				t.Errorf("%s: failed decode changed the target", tt.name)
			}
		}
		if !errors.Is(err, crdt.ErrCorrupt) {
			t.Errorf("%s %s (%d bytes): err = %v, want ErrCorrupt", tt.kind, tt.name, len(tt.b), err)
		}
	}
}

// TestDigestSize: a digest of the whole space stays under 2 KB however
// many heroes it covers.
func TestDigestSize(t *testing.T) {
	r, _ := newReplica("a")
	populate(t, r, seeded(22), 20_000)
	b, err := r.Digest().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 2048 {
		t.Fatalf("full digest is %d bytes, want at most 2048", len(b))
	}
}
