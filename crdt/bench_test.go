package crdt_test

import (
	"runtime"
	"testing"

	"github.com/superhero-cluster/superhero/crdt"
)

const benchHeroes = 100_000

// BenchmarkMerge1kInto100k merges a delta of 1,000 newer versions of
// existing heroes into a 100,000-hero replica. Target: ≤ 2 ms.
func BenchmarkMerge1kInto100k(b *testing.B) {
	rng := seeded(40)
	r, _ := newReplica("r")
	ids := populate(b, r, rng, benchHeroes)
	w, wc := newReplica("w")
	w.Merge(r.State())
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		wc.Advance(1e9)
		var d crdt.Delta
		for range 1000 {
			_, u, err := w.Update(ids[rng.IntN(len(ids))], func(h *crdt.Hero) { h.Patrolling = !h.Patrolling })
			if err != nil {
				b.Fatal(err)
			}
			d.Heroes = append(d.Heroes, u.Heroes...)
		}
		b.StartTimer()
		if ch := r.Merge(d); ch.Len() != d.Len() {
			b.Fatalf("merge changed %d of %d entries", ch.Len(), d.Len())
		}
	}
}

// BenchmarkDigest100k computes and encodes the digest of a 100,000-hero
// replica. Target: ≤ 2 KB.
func BenchmarkDigest100k(b *testing.B) {
	r, _ := newReplica("r")
	populate(b, r, seeded(41), benchHeroes)
	b.ReportAllocs()
	b.ResetTimer()
	var size int
	for range b.N {
		enc, err := r.Digest().MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		size = len(enc)
	}
	b.ReportMetric(float64(size), "digest-bytes")
}

// BenchmarkSync100kDiff10 reconciles two 100,000-hero replicas that differ
// in 10 heroes: a full SyncStart/SyncStep exchange in memory, comparing
// digests, narrowing to the differing leaves and swapping their entries.
// Target: ≤ 5 ms.
func BenchmarkSync100kDiff10(b *testing.B) {
	rng := seeded(42)
	a, _ := newReplica("a")
	ids := populate(b, a, rng, benchHeroes)
	c, cc := newReplica("c")
	c.Merge(a.State())
	b.ReportAllocs()
	b.ResetTimer()
	var moved, msgs int
	for range b.N {
		b.StopTimer()
		cc.Advance(1e9)
		for range 10 {
			if _, _, err := c.Update(ids[rng.IntN(len(ids))], func(h *crdt.Hero) { h.Health = rng.IntN(crdt.MaxHealth) }); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		msg := a.SyncStart()
		to, other := c, a
		for msgs = 0; !msg.IsEmpty(); msgs++ {
			moved += msg.Delta.Len()
			msg, _ = to.SyncStep(msg)
			to, other = other, to
		}
	}
	b.StopTimer()
	if a.Fingerprint() != c.Fingerprint() {
		b.Fatal("replicas differ after the exchange")
	}
	b.ReportMetric(float64(moved)/float64(b.N), "entries/op")
	b.ReportMetric(float64(msgs), "msgs/op")
}

// BenchmarkMemoryPerHero measures the heap a 100,000-hero replica holds.
func BenchmarkMemoryPerHero(b *testing.B) {
	var perHero float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r, _ := newReplica("r")
		populate(b, r, seeded(43), benchHeroes)
		runtime.GC()
		runtime.ReadMemStats(&after)
		perHero = float64(after.HeapAlloc-before.HeapAlloc) / benchHeroes
		runtime.KeepAlive(r)
	}
	b.ReportMetric(perHero, "bytes/hero")
}
