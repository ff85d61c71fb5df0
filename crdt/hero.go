package crdt

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrUnknown means the replica has never seen the hero.
	ErrUnknown = errors.New("crdt: unknown hero")
	// ErrDead means the hero has a tombstone: it died or was terminated.
	ErrDead = errors.New("crdt: hero is dead")
	// ErrLocation means a location name is not valid.
	ErrLocation = errors.New("crdt: invalid location")
	// ErrCorrupt means encoded bytes could not be decoded.
	ErrCorrupt = errors.New("crdt: corrupt encoding")
)

// MaxHealth is the health of a new hero and the cap for healing.
const MaxHealth = 100

// Location is where a hero is: Home or the name of a city. It is the one
// type for locations everywhere in the project.
type Location string

// The original cluster's locations. Other cities may join at run time, so
// any name that passes ParseLocation is a valid city.
const (
	Home       Location = "home"
	Gotham     Location = "gotham"
	Metropolis Location = "metropolis"
	Capitol    Location = "capitol"
)

// DefaultCities are the three cities of the original cluster.
var DefaultCities = []Location{Gotham, Metropolis, Capitol}

// maxLocationLen bounds a location name.
const maxLocationLen = 32

// ParseLocation validates s as a location: "home" or a city name of 1 to 32
// characters from a-z, 0-9 and '-', starting with a letter.
func ParseLocation(s string) (Location, error) {
	if len(s) == 0 || len(s) > maxLocationLen {
		return "", fmt.Errorf("%w: %q", ErrLocation, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '-'):
		default:
			return "", fmt.Errorf("%w: %q", ErrLocation, s)
		}
	}
	return Location(s), nil
}

// IsCity reports whether l names a city rather than Home.
func (l Location) IsCity() bool { return l != Home && l != "" }

// Hero is one entry of a replica. A tombstone is a Hero with Dead set; it
// keeps the hero's last name so that callers can say who died.
type Hero struct {
	ID         uuid.UUID
	Name       string
	Location   Location
	Stamp      Timestamp
	Health     int
	Patrolling bool
	Dead       bool
}

// check reports why h cannot be encoded (and so could never reach a
// peer), or nil. Writes check it first, so a replica only ever holds
// entries that every peer can decode.
func (h *Hero) check() error {
	switch {
	case h.ID == uuid.Nil:
		return fmt.Errorf("crdt: hero has the nil id")
	case len(h.Name) > maxNameLen:
		return fmt.Errorf("crdt: hero %s name of %d bytes, at most %d", h.ID, len(h.Name), maxNameLen)
	case len(h.Stamp.Node) > maxNameLen:
		return fmt.Errorf("crdt: hero %s node name of %d bytes, at most %d", h.ID, len(h.Stamp.Node), maxNameLen)
	case h.Health < 0 || h.Health > MaxHealth:
		return fmt.Errorf("crdt: hero %s health %d out of range", h.ID, h.Health)
	}
	if _, err := ParseLocation(string(h.Location)); err != nil {
		return fmt.Errorf("%w: hero %s at %q", ErrLocation, h.ID, h.Location)
	}
	return nil
}

// Supersedes reports whether entry a wins over b, two entries for the same
// id, by the rule every replica merges by (the table in doc.go). The order
// is total, so merge is commutative, associative and idempotent:
//   - a tombstone beats any live entry, whatever their stamps (no
//     resurrection);
//   - otherwise the later stamp wins;
//   - equal stamps (possible only if a node reuses its clock after a crash
//     with the wall clock stepped back) fall back to comparing content.
//
// Identical entries supersede neither. Change feeds (the hub, the page)
// coalesce by it, so they settle on what a replica merging the same
// entries holds, whatever order they came in.
func (a *Hero) Supersedes(b *Hero) bool {
	if a.Dead != b.Dead {
		return a.Dead
	}
	if c := a.Stamp.Compare(b.Stamp); c != 0 {
		return c > 0
	}
	return a.compareContent(b) > 0
}

func (a *Hero) compareContent(b *Hero) int {
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Location, b.Location); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Health, b.Health); c != 0 {
		return c
	}
	return cmp.Compare(b2i(a.Patrolling), b2i(b.Patrolling))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hash is a 64-bit fingerprint of every field of the entry, used by digests.
// It is FNV-1a over a canonical encoding, finished with a mixer so that the
// sums of hashes in a digest bucket spread well.
func (h *Hero) hash() uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	x := uint64(offset)
	byte1 := func(b byte) { x = (x ^ uint64(b)) * prime }
	u64 := func(v uint64) {
		for i := 0; i < 8; i++ {
			byte1(byte(v >> (8 * i)))
		}
	}
	str := func(s string) {
		u64(uint64(len(s)))
		for i := 0; i < len(s); i++ {
			byte1(s[i])
		}
	}
	for _, b := range h.ID {
		byte1(b)
	}
	u64(uint64(h.Stamp.Wall))
	u64(uint64(h.Stamp.Logical))
	str(h.Stamp.Node)
	str(h.Name)
	str(string(h.Location))
	u64(uint64(h.Health))
	byte1(byte(b2i(h.Patrolling) | b2i(h.Dead)<<1))
	// splitmix64 finaliser.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
