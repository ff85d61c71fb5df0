package crdt_test

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

// stamped returns a delta of one live hero per stamp, with distinct ids.
func stamped(stamps ...crdt.Timestamp) crdt.Delta {
	var d crdt.Delta
	for i, s := range stamps {
		id := uuid.UUID{15: byte(i + 1)}
		d.Heroes = append(d.Heroes, crdt.Hero{ID: id, Name: "h", Location: crdt.Home, Health: crdt.MaxHealth, Stamp: s})
	}
	return d
}

// countingClock is a physical clock that counts its reads.
type countingClock struct {
	ns    int64
	reads atomic.Int64
}

func (c *countingClock) Now() int64 { c.reads.Add(1); return c.ns }

// TestCheckOffset: stamps up to max ahead of the physical clock pass,
// anything further fails with an *OffsetError for the stamp furthest
// ahead; max <= 0 turns the check off; the clock is never changed and the
// physical clock is read at most once.
func TestCheckOffset(t *testing.T) {
	const max = crdt.DefaultMaxClockOffset
	at := func(ahead time.Duration, logical uint32, node string) crdt.Timestamp {
		return ts(epoch+int64(ahead), logical, node)
	}
	tests := []struct {
		name   string
		phys   int64 // default epoch
		max    time.Duration
		stamps []crdt.Timestamp
		want   *crdt.OffsetError // nil: accepted
	}{
		{name: "empty", max: max},
		{name: "behind", max: max, stamps: []crdt.Timestamp{at(-time.Hour, 0, "b"), at(-1, 9, "c")}},
		{name: "level", max: max, stamps: []crdt.Timestamp{at(0, math.MaxUint32, "b")}},
		{name: "exactly at the limit", max: max, stamps: []crdt.Timestamp{at(max, math.MaxUint32, "b")}},
		{
			name: "a nanosecond past the limit", max: max,
			stamps: []crdt.Timestamp{at(max+1, 0, "b")},
			want:   &crdt.OffsetError{Node: "b", Stamp: at(max+1, 0, "b"), Ahead: max + 1, Max: max},
		},
		{
			name: "an hour ahead", max: max,
			stamps: []crdt.Timestamp{at(-time.Second, 0, "metropolis"), at(time.Hour, 3, "gotham")},
			want:   &crdt.OffsetError{Node: "gotham", Stamp: at(time.Hour, 3, "gotham"), Ahead: time.Hour, Max: max},
		},
		{
			name: "worst offender reported", max: max,
			stamps: []crdt.Timestamp{at(2*time.Second, 0, "a"), at(time.Hour, 0, "c"), at(0, 0, "d"), at(time.Hour-1, 7, "b")},
			want:   &crdt.OffsetError{Node: "c", Stamp: at(time.Hour, 0, "c"), Ahead: time.Hour, Max: max},
		},
		{
			name: "same wall: higher logical, then node", max: max,
			stamps: []crdt.Timestamp{at(time.Minute, 1, "z"), at(time.Minute, 2, "a"), at(time.Minute, 2, "b"), at(time.Minute, 0, "zz")},
			want:   &crdt.OffsetError{Node: "b", Stamp: at(time.Minute, 2, "b"), Ahead: time.Minute, Max: max},
		},
		{
			name: "one in many", max: max,
			stamps: []crdt.Timestamp{at(0, 0, "a"), at(max, 0, "a"), at(max+time.Millisecond, 0, "b"), at(max, 5, "c")},
			want:   &crdt.OffsetError{Node: "b", Stamp: at(max+time.Millisecond, 0, "b"), Ahead: max + time.Millisecond, Max: max},
		},
		{
			name: "custom max", max: time.Nanosecond,
			stamps: []crdt.Timestamp{at(2, 0, "b")},
			want:   &crdt.OffsetError{Node: "b", Stamp: at(2, 0, "b"), Ahead: 2, Max: time.Nanosecond},
		},
		{name: "max zero disables", max: 0, stamps: []crdt.Timestamp{at(time.Hour, 0, "b")}},
		{name: "negative max disables", max: -time.Second, stamps: []crdt.Timestamp{at(time.Hour, 0, "b")}},
		{
			name: "end of time", max: max,
			stamps: []crdt.Timestamp{ts(math.MaxInt64, math.MaxUint32, "b")},
			want:   &crdt.OffsetError{Node: "b", Stamp: ts(math.MaxInt64, math.MaxUint32, "b"), Ahead: time.Duration(math.MaxInt64 - epoch), Max: max},
		},
		{
			name: "end of time seen from before the epoch saturates", phys: -epoch, max: max,
			stamps: []crdt.Timestamp{ts(math.MaxInt64, 0, "b")},
			want:   &crdt.OffsetError{Node: "b", Stamp: ts(math.MaxInt64, 0, "b"), Ahead: math.MaxInt64, Max: max},
		},
		{name: "start of time does not wrap", max: max, stamps: []crdt.Timestamp{ts(math.MinInt64, 0, "b")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := &countingClock{ns: epoch}
			if tt.phys != 0 {
				pc.ns = tt.phys
			}
			c := crdt.NewClock("a", pc.Now)
			c.Observe(ts(pc.ns-int64(time.Second), 4, "x"))
			before := c.Last()
			pc.reads.Store(0)
			d := stamped(tt.stamps...)
			err := c.CheckOffset(d, tt.max)
			if n := pc.reads.Load(); n > 1 {
				t.Errorf("physical clock read %d times, want at most once", n)
			}
			if got := c.Last(); got != before {
				t.Errorf("Last = %v after CheckOffset, want %v unchanged", got, before)
			}
			checkOffsetErr(t, err, tt.want)
			if r := crdt.NewReplica(c); !sameErr(r.CheckOffset(d, tt.max), err) {
				t.Errorf("Replica.CheckOffset = %v, want %v", r.CheckOffset(d, tt.max), err)
			}
			// CheckStamp agrees entry by entry: the delta fails exactly
			// when one of its stamps does.
			failed := false
			for _, s := range tt.stamps {
				if err := c.CheckStamp(s, tt.max); err != nil {
					failed = true
					if !errors.Is(err, crdt.ErrClockOffset) {
						t.Errorf("CheckStamp(%v) = %v, not ErrClockOffset", s, err)
					}
				}
			}
			if failed != (tt.want != nil) {
				t.Errorf("CheckStamp failed for some entry: %v, want %v", failed, tt.want != nil)
			}
		})
	}
}

// checkOffsetErr fails t unless err is nil when want is, and otherwise an
// *OffsetError equal to want that wraps ErrClockOffset.
func checkOffsetErr(t *testing.T, err error, want *crdt.OffsetError) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, crdt.ErrClockOffset) {
		t.Fatalf("err = %v, want one wrapping ErrClockOffset", err)
	}
	var oe *crdt.OffsetError
	if !errors.As(err, &oe) {
		t.Fatalf("err = %T %v, want *OffsetError", err, err)
	}
	if *oe != *want {
		t.Fatalf("err = %+v, want %+v", *oe, *want)
	}
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

func TestOffsetErrorMessage(t *testing.T) {
	mc := newManualClock(epoch)
	c := crdt.NewClock("metropolis", mc.Now)
	err := c.CheckStamp(ts(epoch+int64(time.Hour), 0, "gotham"), crdt.DefaultMaxClockOffset)
	const want = "crdt: stamp from gotham is 1h0m0s ahead of the local clock (max 500ms)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if wrapped := fmt.Errorf("sync from gotham: %w", err); !errors.Is(wrapped, crdt.ErrClockOffset) {
		t.Fatalf("errors.Is(%v, ErrClockOffset) = false", wrapped)
	}
}
