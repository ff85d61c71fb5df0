package crdt

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// DefaultMaxClockOffset is how far ahead of the local physical clock a
// remote stamp may be before it is refused. See the package documentation.
const DefaultMaxClockOffset = 500 * time.Millisecond

// ErrClockOffset means a remote stamp is further ahead of the local
// physical clock than the maximum offset allows. The error returned is an
// *OffsetError that wraps it.
var ErrClockOffset = errors.New("crdt: remote clock too far ahead")

// OffsetError reports the stamp furthest ahead in a refused delta.
type OffsetError struct {
	// Node is the node that made the stamp (Stamp.Node), which is not
	// necessarily the node that sent it.
	Node string
	// Stamp is the offending stamp.
	Stamp Timestamp
	// Ahead is how far Stamp.Wall is ahead of the local physical clock.
	Ahead time.Duration
	// Max is the maximum offset that was exceeded.
	Max time.Duration
}

func (e *OffsetError) Error() string {
	return fmt.Sprintf("crdt: stamp from %s is %v ahead of the local clock (max %v)", e.Node, e.Ahead, e.Max)
}

// Unwrap returns ErrClockOffset, so errors.Is(err, ErrClockOffset) holds.
func (e *OffsetError) Unwrap() error { return ErrClockOffset }

// CheckOffset returns an *OffsetError for the latest stamp in d when its
// wall time is more than max ahead of the physical clock, and nil
// otherwise; a stamp exactly max ahead passes. The latest stamp is the one
// Merge would observe, and the one furthest ahead. max <= 0 turns the check
// off. CheckOffset reads the physical clock at most once and never changes
// the clock.
//
// Call it on every delta received from another node before merging it,
// and drop the whole delta when it fails; see the package documentation.
func (c *Clock) CheckOffset(d Delta, max time.Duration) error {
	if max <= 0 || len(d.Heroes) == 0 {
		return nil
	}
	latest := d.Heroes[0].Stamp
	for i := 1; i < len(d.Heroes); i++ {
		if s := d.Heroes[i].Stamp; latest.Less(s) {
			latest = s
		}
	}
	return c.CheckStamp(latest, max)
}

// CheckStamp returns an *OffsetError when t's wall time is more than max
// ahead of the physical clock, and nil otherwise. max <= 0 turns the check
// off. It never changes the clock.
func (c *Clock) CheckStamp(t Timestamp, max time.Duration) error {
	if max <= 0 {
		return nil
	}
	if ahead := ahead(t.Wall, c.phys()); ahead > max {
		return &OffsetError{Node: t.Node, Stamp: t, Ahead: ahead, Max: max}
	}
	return nil
}

// CheckOffset checks d against the replica's clock: see Clock.CheckOffset.
func (r *Replica) CheckOffset(d Delta, max time.Duration) error {
	return r.clock.CheckOffset(d, max)
}

// ahead returns wall - phys, saturated instead of overflowing, so a
// garbage stamp far in the past never looks far in the future.
func ahead(wall, phys int64) time.Duration {
	d := wall - phys
	if (wall < 0) != (phys < 0) && (d < 0) != (wall < 0) {
		if wall < 0 {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	return time.Duration(d)
}
