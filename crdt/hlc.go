package crdt

import (
	"cmp"
	"fmt"
	"math"
	"sync"
)

// Timestamp is a hybrid logical clock reading. Timestamps are totally
// ordered: first by Wall, then by Logical, then by Node. Two writes made by
// different nodes therefore never compare equal, so last-writer-wins never
// needs to fall back on argument order.
type Timestamp struct {
	// Wall is the physical component, in nanoseconds since the Unix epoch.
	// It is carried at full precision on the wire; never truncate it.
	Wall int64
	// Logical orders events that share a Wall value.
	Logical uint32
	// Node names the replica that made the write; it breaks ties.
	Node string
}

// Compare returns -1, 0 or +1 as t is before, equal to or after o.
func (t Timestamp) Compare(o Timestamp) int {
	if c := cmp.Compare(t.Wall, o.Wall); c != 0 {
		return c
	}
	if c := cmp.Compare(t.Logical, o.Logical); c != 0 {
		return c
	}
	return cmp.Compare(t.Node, o.Node)
}

// Less reports whether t is ordered before o.
func (t Timestamp) Less(o Timestamp) bool { return t.Compare(o) < 0 }

// IsZero reports whether t is the zero Timestamp.
func (t Timestamp) IsZero() bool { return t.Wall == 0 && t.Logical == 0 && t.Node == "" }

func (t Timestamp) String() string { return fmt.Sprintf("%d.%d@%s", t.Wall, t.Logical, t.Node) }

// Clock is a hybrid logical clock in the style of Kulkarni et al. and
// CockroachDB's hlc package. The physical clock is injected, so tests drive
// it by hand. A Clock is safe for concurrent use.
type Clock struct {
	phys func() int64
	node string

	mu      sync.Mutex
	wall    int64
	logical uint32
}

// NewClock returns a clock for the named node reading physical time
// (nanoseconds) from phys.
func NewClock(node string, phys func() int64) *Clock {
	return &Clock{phys: phys, node: node}
}

// Node returns the name stamped on this clock's timestamps.
func (c *Clock) Node() string { return c.node }

// Now returns a timestamp strictly after every timestamp this clock has
// returned or observed, even when the physical clock stalls or steps back.
func (c *Clock) Now() Timestamp {
	pt := c.phys()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case pt > c.wall:
		c.wall, c.logical = pt, 0
	case c.logical == ^uint32(0) && c.wall == math.MaxInt64:
		// The end of time, reachable only by observing a garbage stamp:
		// stay there rather than wrap into the past.
	case c.logical == ^uint32(0):
		// The logical counter is exhausted: borrow a nanosecond from the
		// future rather than wrap around.
		c.wall, c.logical = c.wall+1, 0
	default:
		c.logical++
	}
	return Timestamp{Wall: c.wall, Logical: c.logical, Node: c.node}
}

// Observe moves the clock past remote, so that the next Now is ordered
// after it. Call it for every timestamp received from another replica,
// once CheckStamp has accepted it: Observe itself takes any stamp, however
// far in the future.
func (c *Clock) Observe(remote Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote.Wall > c.wall || (remote.Wall == c.wall && remote.Logical > c.logical) {
		c.wall, c.logical = remote.Wall, remote.Logical
	}
}

// Last returns the latest timestamp issued or observed, without advancing.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Timestamp{Wall: c.wall, Logical: c.logical, Node: c.node}
}

// PhysicalNow reads the injected physical clock.
func (c *Clock) PhysicalNow() int64 { return c.phys() }
