package crdt

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/google/uuid"
)

// Binary encodings. Every encoding starts with a kind byte and a version
// byte; integers are varints; strings are length-prefixed. Decoders check
// every length against what is left, so garbage yields ErrCorrupt, never a
// panic or a huge allocation.
const (
	kindDelta  = 'D'
	kindDigest = 'G'
	kindSync   = 'S'
	version    = 1

	maxNameLen = 256
	// minEntryLen is the smallest encoded entry: id, flags, health, three
	// empty strings, wall and logical.
	minEntryLen = 16 + 1 + 1 + 3 + 1 + 1
)

// MarshalBinary encodes the delta.
func (d Delta) MarshalBinary() ([]byte, error) { return d.AppendBinary(nil) }

// AppendBinary appends the encoding of d to b.
func (d Delta) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, kindDelta, version)
	b = binary.AppendUvarint(b, uint64(len(d.Heroes)))
	for i := range d.Heroes {
		h := &d.Heroes[i]
		// Refuse what UnmarshalBinary would reject: better an error here
		// than bytes no peer can decode.
		if err := h.check(); err != nil {
			return nil, err
		}
		b = append(b, h.ID[:]...)
		b = append(b, byte(b2i(h.Patrolling)|b2i(h.Dead)<<1), byte(h.Health))
		b = appendString(b, h.Name)
		b = appendString(b, string(h.Location))
		b = binary.AppendVarint(b, h.Stamp.Wall)
		b = binary.AppendUvarint(b, uint64(h.Stamp.Logical))
		b = appendString(b, h.Stamp.Node)
	}
	return b, nil
}

// UnmarshalBinary decodes a delta encoded by MarshalBinary.
func (d *Delta) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	r.header(kindDelta)
	n := r.count(minEntryLen)
	heroes := make([]Hero, 0, n)
	// Locations and node names repeat across entries: share one string each.
	intern := make(map[string]string)
	for i := 0; i < n && r.err == nil; i++ {
		var h Hero
		copy(h.ID[:], r.bytes(16))
		flags := r.byte()
		h.Patrolling, h.Dead = flags&1 != 0, flags&2 != 0
		h.Health = int(r.byte())
		h.Name = r.string(maxNameLen)
		loc := r.string(maxLocationLen)
		h.Stamp.Wall = r.varint()
		h.Stamp.Logical = r.uint32()
		h.Stamp.Node = r.intern(intern, r.string(maxNameLen))
		if r.err != nil {
			break
		}
		switch {
		case flags > 3:
			r.fail("flags %#x", flags)
		case h.Health > MaxHealth:
			r.fail("health %d", h.Health)
		case h.ID == uuid.Nil:
			r.fail("nil id")
		}
		if _, err := ParseLocation(loc); err != nil {
			r.fail("location %q", loc)
		}
		h.Location = Location(r.intern(intern, loc))
		heroes = append(heroes, h)
	}
	r.end()
	if r.err != nil {
		return r.err
	}
	d.Heroes = heroes
	return nil
}

// MarshalBinary encodes the digest.
func (d Digest) MarshalBinary() ([]byte, error) { return d.AppendBinary(nil) }

// AppendBinary appends the encoding of d to b.
func (d Digest) AppendBinary(b []byte) ([]byte, error) {
	if !d.valid() {
		return nil, fmt.Errorf("crdt: invalid digest over %v", d.Range)
	}
	b = append(b, kindDigest, version)
	b = binary.AppendUvarint(b, uint64(d.Range.Lo))
	b = binary.AppendUvarint(b, uint64(d.Range.Hi))
	for i := range d.Sums {
		b = binary.LittleEndian.AppendUint64(b, d.Sums[i])
		b = binary.AppendUvarint(b, uint64(d.Counts[i]))
	}
	return b, nil
}

// UnmarshalBinary decodes a digest encoded by MarshalBinary.
func (d *Digest) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	r.header(kindDigest)
	dg := r.digest()
	r.end()
	if r.err != nil {
		return r.err
	}
	*d = dg
	return nil
}

// MarshalBinary encodes the sync message.
func (m SyncMsg) MarshalBinary() ([]byte, error) {
	b := []byte{kindSync, version}
	b = binary.AppendUvarint(b, uint64(len(m.Digests)))
	for _, d := range m.Digests {
		var err error
		if b, err = d.AppendBinary(b); err != nil {
			return nil, err
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.Want)))
	for _, rg := range m.Want {
		if !rg.Valid() {
			return nil, fmt.Errorf("crdt: invalid range %v", rg)
		}
		b = binary.AppendUvarint(b, uint64(rg.Lo))
		b = binary.AppendUvarint(b, uint64(rg.Hi))
	}
	return m.Delta.AppendBinary(b)
}

// UnmarshalBinary decodes a sync message encoded by MarshalBinary.
func (m *SyncMsg) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	r.header(kindSync)
	var out SyncMsg
	nd := r.count(4)
	for i := 0; i < nd && r.err == nil; i++ {
		r.header(kindDigest)
		out.Digests = append(out.Digests, r.digest())
	}
	nw := r.count(2)
	for i := 0; i < nw && r.err == nil; i++ {
		rg := r.rangeOf()
		out.Want = append(out.Want, rg)
	}
	if r.err != nil {
		return r.err
	}
	if err := out.Delta.UnmarshalBinary(r.b); err != nil {
		return err
	}
	*m = out
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes with a sticky error: after the first failure every read
// returns zero values and the error is reported once, at the end.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	r.b = nil
}

func (r *reader) header(kind byte) {
	if k, v := r.byte(), r.byte(); r.err == nil && (k != kind || v != version) {
		r.fail("header %q v%d, want %q v%d", k, v, kind, version)
	}
}

func (r *reader) end() {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail("short input")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n int) []byte {
	if len(r.b) < n {
		r.fail("short input")
		return make([]byte, n)
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uint32() uint32 {
	v := r.uvarint()
	if v > math.MaxUint32 {
		r.fail("value %d overflows uint32", v)
		return 0
	}
	return uint32(v)
}

// count reads an element count and checks it against the bytes left,
// given the smallest encoding of one element.
func (r *reader) count(minLen int) int {
	v := r.uvarint()
	if v > uint64(len(r.b)/minLen) {
		r.fail("count %d exceeds input", v)
		return 0
	}
	return int(v)
}

func (r *reader) string(maxLen int) string {
	n := r.uvarint()
	if n > uint64(maxLen) {
		r.fail("string of %d bytes", n)
		return ""
	}
	return string(r.bytes(int(n)))
}

func (r *reader) intern(m map[string]string, s string) string {
	if v, ok := m[s]; ok {
		return v
	}
	m[s] = s
	return s
}

func (r *reader) rangeOf() Range {
	lo, hi := r.uvarint(), r.uvarint()
	if lo > Leaves || hi > Leaves {
		r.fail("range [%d,%d)", lo, hi)
		return Range{}
	}
	rg := Range{int(lo), int(hi)}
	if !rg.Valid() {
		r.fail("range %v", rg)
	}
	return rg
}

func (r *reader) digest() Digest {
	d := Digest{Range: r.rangeOf()}
	if r.err != nil {
		return Digest{}
	}
	n := d.Range.parts()
	d.Sums, d.Counts = make([]uint64, n), make([]uint32, n)
	for i := 0; i < n && r.err == nil; i++ {
		d.Sums[i] = binary.LittleEndian.Uint64(r.bytes(8))
		d.Counts[i] = r.uint32()
	}
	return d
}
