package crdt

import (
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// The id space is cut into Leaves leaves by the first LeafBits bits of the
// id. A replica keeps, per leaf, the sum of its entries' hashes and their
// number, updated on every write, so a digest costs O(Leaves), not O(heroes).
const (
	LeafBits = 12
	Leaves   = 1 << LeafBits
	// Fanout is the most parts a Digest splits its range into. With 128
	// parts a full-range digest encodes to about 1.3 KB.
	Fanout = 128
	// SmallRange is the entry count under which anti-entropy stops
	// refining a differing range and sends its entries instead.
	SmallRange = 64
	// MaxSyncEntries caps the entries one anti-entropy message carries
	// (about 470 KB). What does not fit is offered again as digests of the
	// ranges left over, so a large refill takes more steps, never one
	// message larger than a transport accepts.
	MaxSyncEntries = 8192
)

// LeafOf returns the leaf that id falls in.
func LeafOf(id uuid.UUID) int { return int(id[0])<<4 | int(id[1])>>4 }

// Range is the half-open interval [Lo, Hi) of leaves.
type Range struct{ Lo, Hi int }

// FullRange covers the whole id space.
func FullRange() Range { return Range{0, Leaves} }

// Len returns the number of leaves in rg.
func (rg Range) Len() int { return rg.Hi - rg.Lo }

// Valid reports whether rg is a non-empty range inside the id space.
func (rg Range) Valid() bool { return 0 <= rg.Lo && rg.Lo < rg.Hi && rg.Hi <= Leaves }

func (rg Range) String() string { return fmt.Sprintf("[%d,%d)", rg.Lo, rg.Hi) }

// parts returns how many parts a digest of rg has.
func (rg Range) parts() int { return min(Fanout, rg.Len()) }

// part returns the i-th of n equal parts of rg.
func (rg Range) part(i, n int) Range {
	return Range{rg.Lo + i*rg.Len()/n, rg.Lo + (i+1)*rg.Len()/n}
}

// Digest summarises the entries of a replica in Range: for each of up to
// Fanout equal parts of the range, the sum of entry hashes and the entry
// count. Two replicas hold the same entries in a part exactly when (up to
// hash collisions, 2^-64) the part's sums and counts match.
type Digest struct {
	Range  Range
	Sums   []uint64
	Counts []uint32
}

// Fingerprint folds the digest into one number, equal for equal replicas.
func (d Digest) Fingerprint() uint64 {
	var s uint64
	for _, v := range d.Sums {
		s += v
	}
	return s
}

// Total returns the number of entries the digest covers.
func (d Digest) Total() int {
	n := 0
	for _, c := range d.Counts {
		n += int(c)
	}
	return n
}

func (d Digest) valid() bool {
	n := d.Range.parts()
	return d.Range.Valid() && len(d.Sums) == n && len(d.Counts) == n
}

// Digest summarises the whole replica.
func (r *Replica) Digest() Digest { return r.DigestRange(FullRange()) }

// DigestRange summarises the entries in rg, which must be Valid.
func (r *Replica) DigestRange(rg Range) Digest {
	n := rg.parts()
	d := Digest{Range: rg, Sums: make([]uint64, n), Counts: make([]uint32, n)}
	for i := 0; i < n; i++ {
		p := rg.part(i, n)
		for leaf := p.Lo; leaf < p.Hi; leaf++ {
			d.Sums[i] += r.sums[leaf]
			d.Counts[i] += r.counts[leaf]
		}
	}
	return d
}

// Fingerprint is the sum of every entry's hash: equal replicas have equal
// fingerprints. It costs nothing to read.
func (r *Replica) Fingerprint() uint64 { return r.total }

// Diff returns the parts of a's range where a and b differ. Both must
// cover the same range; otherwise Diff reports the whole range of a.
func Diff(a, b Digest) []Range {
	if !a.valid() {
		return nil
	}
	if !b.valid() || a.Range != b.Range {
		return []Range{a.Range}
	}
	var out []Range
	n := len(a.Sums)
	for i := 0; i < n; i++ {
		if a.Sums[i] != b.Sums[i] || a.Counts[i] != b.Counts[i] {
			out = appendRange(out, a.Range.part(i, n))
		}
	}
	return out
}

// appendRange appends rg to rs, merging it with the last range if adjacent.
func appendRange(rs []Range, rg Range) []Range {
	if k := len(rs) - 1; k >= 0 && rs[k].Hi == rg.Lo {
		rs[k].Hi = rg.Hi
		return rs
	}
	return append(rs, rg)
}

// normalise sorts ranges and merges overlapping or adjacent ones, dropping
// invalid ones.
func normalise(rs []Range) []Range {
	rs = slices.DeleteFunc(slices.Clone(rs), func(rg Range) bool { return !rg.Valid() })
	slices.SortFunc(rs, func(a, b Range) int { return a.Lo - b.Lo })
	out := rs[:0]
	for _, rg := range rs {
		if k := len(out) - 1; k >= 0 && out[k].Hi >= rg.Lo {
			out[k].Hi = max(out[k].Hi, rg.Hi)
			continue
		}
		out = append(out, rg)
	}
	return out
}

// Slice returns the entries whose ids fall in any of the ranges.
func (r *Replica) Slice(ranges []Range) Delta {
	ranges = normalise(ranges)
	if len(ranges) == 0 {
		return Delta{}
	}
	var mask [Leaves]bool
	want := 0
	for _, rg := range ranges {
		for leaf := rg.Lo; leaf < rg.Hi; leaf++ {
			mask[leaf] = true
			want += int(r.counts[leaf])
		}
	}
	if want == 0 {
		return Delta{}
	}
	// Visit only the wanted leaves' ids, not the whole map: a sync step
	// that asks for a few leaves of a large replica stays cheap.
	out := make([]Hero, 0, want)
	for leaf, in := range mask {
		if in {
			for _, id := range r.ids[leaf] {
				out = append(out, r.entries[id])
			}
		}
	}
	sortByID(out)
	return Delta{Heroes: out}
}

// SyncMsg is one message of a push-pull anti-entropy exchange between two
// replicas. Both sides run the same step: the initiator sends SyncStart,
// then each side answers the other's message with SyncStep until a step
// returns an empty message.
type SyncMsg struct {
	// Digests are ranges the sender asks the receiver to compare.
	Digests []Digest
	// Want are ranges whose every entry the sender asks for.
	Want []Range
	// Delta is what the sender pushes.
	Delta Delta
}

// IsEmpty reports whether m carries nothing, which ends an exchange.
func (m SyncMsg) IsEmpty() bool {
	return len(m.Digests) == 0 && len(m.Want) == 0 && m.Delta.IsEmpty()
}

// SyncStart opens an anti-entropy exchange.
func (r *Replica) SyncStart() SyncMsg { return SyncMsg{Digests: []Digest{r.Digest()}} }

// SyncStep merges what in pushes, answers what it asks for, and returns the
// reply and the entries that changed this replica. Each round narrows the
// ranges compared, so an exchange between replicas differing in k entries
// ends after a few rounds and moves O(k + SmallRange) entries, not the
// whole state. An exchange ends when SyncStep returns an empty message.
// Like Merge, SyncStep does not check clock offset: check in.Delta with
// CheckOffset first and drop the whole message when it fails.
func (r *Replica) SyncStep(in SyncMsg) (out SyncMsg, changed Delta) {
	// Answer with what this replica held before merging, so entries just
	// received are not echoed back.
	push := slices.Clone(in.Want)
	for _, theirs := range in.Digests {
		if !theirs.valid() {
			continue
		}
		mine := r.DigestRange(theirs.Range)
		n := len(mine.Sums)
		for i := 0; i < n; i++ {
			if mine.Sums[i] == theirs.Sums[i] && mine.Counts[i] == theirs.Counts[i] {
				continue
			}
			p := theirs.Range.part(i, n)
			small := min(mine.Counts[i], theirs.Counts[i]) <= SmallRange
			switch {
			case small || p.Len() == 1:
				if mine.Counts[i] > 0 {
					push = append(push, p)
				}
				if theirs.Counts[i] > 0 {
					out.Want = appendRange(out.Want, p)
				}
			default:
				out.Digests = append(out.Digests, r.DigestRange(p))
			}
		}
	}
	take, rest := r.limit(push, MaxSyncEntries)
	out.Delta = r.Slice(take)
	for _, rg := range rest {
		out.Digests = append(out.Digests, r.DigestRange(rg))
	}
	changed = r.Merge(in.Delta)
	return out, changed
}

// limit splits ranges into those whose entries fit in max (at least one
// leaf, however full) and the rest, at leaf boundaries.
func (r *Replica) limit(ranges []Range, max int) (take, rest []Range) {
	n, full := 0, false
	for _, rg := range normalise(ranges) {
		for leaf := rg.Lo; leaf < rg.Hi; leaf++ {
			c := int(r.counts[leaf])
			full = full || (n > 0 && n+c > max)
			if full {
				rest = appendRange(rest, Range{leaf, leaf + 1})
				continue
			}
			n += c
			take = appendRange(take, Range{leaf, leaf + 1})
		}
	}
	return take, rest
}
