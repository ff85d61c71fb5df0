package crdt_test

import (
	"encoding"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

// The fuzz targets feed arbitrary bytes to each decoder. A decoder must
// never panic; it either reports ErrCorrupt or returns a value that
// encodes again and decodes to the same value, and that a replica can
// merge or answer without breaking its invariants.

func addSeeds(f *testing.F, values ...interface{ MarshalBinary() ([]byte, error) }) {
	f.Helper()
	for _, v := range values {
		b, err := v.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{'D', 1})
	f.Add([]byte{'G', 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{'S', 1, 0, 0, 'D', 1, 0})
	f.Add([]byte{'S', 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
}

// fuzzReplica is a small replica for decoded messages to act on.
func fuzzReplica(t testing.TB) *crdt.Replica {
	t.Helper()
	r, _ := newReplica("fuzz")
	populate(t, r, seeded(30), 50)
	return r
}

// checkReplica checks the invariants a merge must keep.
func checkReplica(t *testing.T, r *crdt.Replica) {
	t.Helper()
	n := 0
	r.Each(func(crdt.Hero) bool { n++; return true })
	if n != r.Len()+r.Tombstones() {
		t.Fatalf("%d entries, Len %d + Tombstones %d", n, r.Len(), r.Tombstones())
	}
	if r.Digest().Total() != n || r.Digest().Fingerprint() != r.Fingerprint() {
		t.Fatal("digest state out of step with the entries")
	}
	if d := diffStates(r.Slice([]crdt.Range{crdt.FullRange()}), r.State()); d != "" {
		t.Fatalf("Slice of the whole space differs from State: %s", d)
	}
}

func FuzzDeltaUnmarshal(f *testing.F) {
	addSeeds(f, crdt.Delta{}, sampleDelta())
	f.Fuzz(func(t *testing.T, b []byte) {
		d, ok := decodeRoundTrip[crdt.Delta](t, b, func(x, y crdt.Delta) bool { return slices.Equal(x.Heroes, y.Heroes) })
		if !ok {
			return
		}
		r := fuzzReplica(t)
		r.Merge(d)
		checkReplica(t, r)
		// The clock moved past what it merged: the next local stamp is not
		// before any merged one in wall and logical time.
		next := r.Clock().Now()
		for _, h := range d.Heroes {
			if next.Wall < h.Stamp.Wall || next.Wall == h.Stamp.Wall && next.Logical < h.Stamp.Logical {
				t.Fatalf("stamp %v after merging %v", next, h.Stamp)
			}
		}
		// Idempotent even on garbage.
		fp := r.Fingerprint()
		if ch := r.Merge(d); !ch.IsEmpty() || r.Fingerprint() != fp {
			t.Fatal("second merge of the same delta changed the replica")
		}
	})
}

func FuzzDigestUnmarshal(f *testing.F) {
	addSeeds(f, sampleDigest(f, crdt.FullRange()), sampleDigest(f, crdt.Range{Lo: 17, Hi: 18}),
		sampleDigest(f, crdt.Range{Lo: 0, Hi: 200}))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, ok := decodeRoundTrip[crdt.Digest](t, b, sameDigest)
		if !ok {
			return
		}
		// A replica compares it and answers without panicking; the
		// answer encodes.
		r := fuzzReplica(t)
		for _, rg := range crdt.Diff(r.DigestRange(d.Range), d) {
			if !rg.Valid() || rg.Lo < d.Range.Lo || rg.Hi > d.Range.Hi {
				t.Fatalf("Diff returned %v outside %v", rg, d.Range)
			}
		}
		out, _ := r.SyncStep(crdt.SyncMsg{Digests: []crdt.Digest{d}})
		if _, err := out.MarshalBinary(); err != nil {
			t.Fatalf("answer does not encode: %v", err)
		}
	})
}

func FuzzSyncMsgUnmarshal(f *testing.F) {
	r, _ := newReplica("seed")
	populate(f, r, seeded(31), 300)
	start := r.SyncStart()
	empty, _ := newReplica("empty")
	reply, _ := empty.SyncStep(start)
	addSeeds(f, crdt.SyncMsg{}, sampleSync(f), start, reply,
		crdt.SyncMsg{Want: []crdt.Range{crdt.FullRange()}},
		crdt.SyncMsg{Delta: crdt.Delta{Heroes: []crdt.Hero{{ID: uuid.New(), Location: crdt.Home, Dead: true}}}})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := decodeRoundTrip[crdt.SyncMsg](t, b, sameSync)
		if !ok {
			return
		}
		r := fuzzReplica(t)
		out, _ := r.SyncStep(m)
		checkReplica(t, r)
		if _, err := out.MarshalBinary(); err != nil {
			t.Fatalf("answer does not encode: %v", err)
		}
		// A duplicated message changes nothing more.
		fp := r.Fingerprint()
		if _, ch := r.SyncStep(m); !ch.IsEmpty() || r.Fingerprint() != fp {
			t.Fatal("the same message applied twice changed the replica twice")
		}
	})
}

// codec is a decoded value that encodes again.
type codec[T any] interface {
	*T
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// decodeRoundTrip decodes b. Garbage must fail with ErrCorrupt (ok is then
// false); anything that decodes must encode and decode again to an equal
// value.
func decodeRoundTrip[T any, P codec[T]](t *testing.T, b []byte, same func(a, b T) bool) (v T, ok bool) {
	t.Helper()
	if err := P(&v).UnmarshalBinary(b); err != nil {
		if !errors.Is(err, crdt.ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
		return v, false
	}
	enc, err := P(&v).MarshalBinary()
	if err != nil {
		t.Fatalf("decoded %T does not encode: %v", v, err)
	}
	var again T
	if err := P(&again).UnmarshalBinary(enc); err != nil {
		t.Fatalf("re-encoded %T does not decode: %v", v, err)
	}
	if !same(again, v) {
		t.Fatalf("round trip changed the %T:\n%+v\n%+v", v, v, again)
	}
	return v, true
}
