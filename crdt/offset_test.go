package crdt_test

import (
	"errors"
	"fmt"
	"math"
	mathrand "math/rand"
	"reflect"
	"sync/atomic"
	"testing"
	"testing/quick"
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

// TestUncheckedMergeDragsClock is why callers must check: merging, without
// CheckOffset, one write from a node whose clock runs an hour ahead moves
// the receiver's clock an hour ahead for good, and the fast node's write
// then beats a write made after it by a node it never reached. With the
// check the delta is refused, the clock stays put and the later write
// wins.
func TestUncheckedMergeDragsClock(t *testing.T) {
	id := uuid.MustParse("7b4e3c2a-0000-4000-8000-0000000000aa")
	fast := crdt.NewReplica(crdt.NewClock("gotham", func() int64 { return epoch + int64(time.Hour) }))
	_, early, err := fast.Create(id, "Flash")
	if err != nil {
		t.Fatal(err)
	}

	// Unchecked: the receiver's clock jumps an hour.
	dragged, mc := newReplica("metropolis")
	dragged.Merge(early)
	if got := dragged.Clock().Last().Wall - mc.Now(); got != int64(time.Hour) {
		t.Fatalf("unchecked merge: Last is %v ahead, want 1h", time.Duration(got))
	}
	mc.Advance(int64(time.Minute))
	if s := dragged.Clock().Now(); s.Wall < epoch+int64(time.Hour) {
		t.Fatalf("a minute later the dragged clock stamps %v, want still an hour ahead", s)
	}

	// A third node, a second later in real time, writes the same hero: on
	// merge the fast node's earlier write wins.
	late, lmc := newReplica("capitol")
	lmc.Advance(int64(time.Second))
	_, lateWrite, err := late.Create(id, "Storm")
	if err != nil {
		t.Fatal(err)
	}
	dragged.Merge(lateWrite)
	if h, _ := dragged.Get(id); h.Name != "Flash" {
		t.Fatalf("unchecked: winner %q, want the fast node's Flash", h.Name)
	}

	// Checked: the delta is refused and the clock stays put; a second
	// later the capitol write is accepted and stands.
	checked, cmc := newReplica("dispatch")
	before := checked.Clock().Last()
	err = checked.CheckOffset(early, crdt.DefaultMaxClockOffset)
	var oe *crdt.OffsetError
	if !errors.As(err, &oe) || oe.Node != "gotham" || oe.Ahead != time.Hour {
		t.Fatalf("CheckOffset = %v, want gotham 1h ahead", err)
	}
	if got := checked.Clock().Last(); got != before {
		t.Fatalf("Last = %v after a refused delta, want %v", got, before)
	}
	cmc.Advance(int64(time.Second))
	if err := checked.CheckOffset(lateWrite, crdt.DefaultMaxClockOffset); err != nil {
		t.Fatalf("a write made a second later, in sync: %v", err)
	}
	checked.Merge(lateWrite)
	if h, _ := checked.Get(id); h.Name != "Storm" {
		t.Fatalf("checked: winner %q, want the later Storm", h.Name)
	}
}

// offsetScenario is a random history of writes, pushes, late deliveries
// and anti-entropy exchanges among nodes whose physical clocks are offset
// from a shared true time, every received message checked before merging.
// Honest clocks lie within Max of each other; with Rogue, node 0's clock
// is more than Max ahead of all of them.
type offsetScenario struct {
	Seed  uint64
	Nodes int
	Steps int
	Max   time.Duration
	Rogue bool
}

func (offsetScenario) Generate(r *mathrand.Rand, _ int) reflect.Value {
	return reflect.ValueOf(offsetScenario{
		Seed:  r.Uint64(),
		Nodes: 2 + r.Intn(5),
		Steps: 50 + r.Intn(250),
		Max:   time.Duration(1 + r.Int63n(int64(2*time.Second))),
		Rogue: r.Intn(2) == 0,
	})
}

// offsetNode is one node of an offsetScenario.
type offsetNode struct {
	r    *crdt.Replica
	skew int64
}

// offsetWorld runs an offsetScenario, checking on every delivery.
type offsetWorld struct {
	s      offsetScenario
	t      *testing.T
	now    *manualClock // true time
	nodes  []offsetNode
	failed bool
	// What happened, so the test can tell it exercised every case.
	refused, syncDeltas int
}

func (w *offsetWorld) phys(i int) int64 { return w.now.Now() + w.nodes[i].skew }

func (w *offsetWorld) errorf(format string, args ...any) {
	w.t.Helper()
	w.t.Errorf("%+v: "+format, append([]any{w.s}, args...)...)
	w.failed = true
}

// check checks d at node j against the reference rule and reports
// whether it was accepted.
func (w *offsetWorld) check(j int, d crdt.Delta, what string) bool {
	w.t.Helper()
	r := w.nodes[j].r
	before := r.Clock().Last()
	err := r.CheckOffset(d, w.s.Max)
	if got := r.Clock().Last(); got != before {
		w.errorf("%s to n%d: CheckOffset moved Last from %v to %v", what, j, before, got)
	}
	// The reference: the stamp furthest ahead, found and compared naively.
	var worst crdt.Timestamp
	for i, h := range d.Heroes {
		if i == 0 || h.Stamp.Wall > worst.Wall || (h.Stamp.Wall == worst.Wall && worst.Less(h.Stamp)) {
			worst = h.Stamp
		}
	}
	ahead := worst.Wall - w.phys(j)
	if len(d.Heroes) == 0 || ahead <= int64(w.s.Max) {
		if err != nil {
			w.errorf("%s to n%d: refused %v, want accepted (worst %v, %v ahead)", what, j, err, worst, time.Duration(ahead))
		}
	} else {
		var oe *crdt.OffsetError
		if !errors.As(err, &oe) || !errors.Is(err, crdt.ErrClockOffset) ||
			*oe != (crdt.OffsetError{Node: worst.Node, Stamp: worst, Ahead: time.Duration(ahead), Max: w.s.Max}) {
			w.errorf("%s to n%d: err %v, want %v ahead for %v", what, j, err, time.Duration(ahead), worst)
		}
	}
	if err != nil {
		w.refused++
		return false
	}
	return true
}

// merged asserts that node j's clock, having merged what it accepted, is
// not more than max ahead of its physical clock.
func (w *offsetWorld) merged(j int, what string) {
	w.t.Helper()
	if ahead := w.nodes[j].r.Clock().Last().Wall - w.phys(j); ahead > int64(w.s.Max) {
		w.errorf("%s to n%d: clock dragged %v ahead of its physical clock", what, j, time.Duration(ahead))
	}
}

// deliver checks d at node j and merges it if accepted, as the
// replication engine does with a pushed delta, and reports whether it was.
func (w *offsetWorld) deliver(j int, d crdt.Delta, what string) bool {
	w.t.Helper()
	if !w.check(j, d, what) {
		return false
	}
	w.nodes[j].r.Merge(d)
	w.merged(j, what)
	return true
}

// sync runs an anti-entropy exchange from i to j, checking every message
// before the receiver steps, and abandons it at the first refusal.
func (w *offsetWorld) sync(i, j int, what string) {
	w.t.Helper()
	from, to := i, j
	msg := w.nodes[i].r.SyncStart()
	for range 32 {
		if msg.IsEmpty() {
			return
		}
		what := fmt.Sprintf("%s n%d→n%d", what, from, to)
		if !w.check(to, msg.Delta, what) {
			return
		}
		if !msg.Delta.IsEmpty() {
			w.syncDeltas++
		}
		msg, _ = w.nodes[to].r.SyncStep(msg)
		w.merged(to, what)
		from, to = to, from
	}
}

func (s offsetScenario) run(t *testing.T) *offsetWorld {
	rng := seeded(s.Seed)
	w := &offsetWorld{s: s, t: t, now: newManualClock(epoch)}
	max := int64(s.Max)
	lo := rng.Int64N(2*max+1) - max // the slowest honest clock's offset
	for i := range s.Nodes {
		skew := lo + rng.Int64N(max+1)
		if s.Rogue && i == 0 {
			skew = lo + 2*max + 1 + rng.Int64N(int64(time.Hour))
		}
		w.nodes = append(w.nodes, offsetNode{skew: skew})
		w.nodes[i].r = crdt.NewReplica(crdt.NewClock(fmt.Sprintf("n%d", i), func() int64 { return w.phys(i) }))
	}
	rogue := func(i int) bool { return s.Rogue && i == 0 }
	var ids []uuid.UUID
	for range 2 + rng.IntN(6) {
		ids = append(ids, randomID(rng))
	}
	var writes []crdt.Delta
	for step := range s.Steps {
		i, j := rng.IntN(s.Nodes), rng.IntN(s.Nodes-1)
		if j >= i {
			j++
		}
		switch op := rng.IntN(100); {
		case op < 20: // true time passes
			w.now.Advance(rng.Int64N(max/2 + 1))
		case op < 60: // a write, pushed at once
			r, id := w.nodes[i].r, ids[rng.IntN(len(ids))]
			var d crdt.Delta
			var err error
			switch _, ok := r.Get(id); {
			case !ok:
				_, d, err = r.Create(id, names[rng.IntN(len(names))])
			case rng.IntN(8) == 0:
				d, err = r.Delete(id)
			default:
				_, d, err = r.Update(id, func(h *crdt.Hero) { h.Location = locations[rng.IntN(len(locations))] })
			}
			if err != nil || d.IsEmpty() {
				continue
			}
			writes = append(writes, d)
			accepted := w.deliver(j, d, fmt.Sprintf("step %d push n%d→n%d", step, i, j))
			if rogue(i) && accepted {
				w.errorf("step %d: n%d accepted a fresh write from the rogue", step, j)
			}
		case op < 75: // an earlier write arrives late
			if len(writes) > 0 {
				w.deliver(j, writes[rng.IntN(len(writes))], fmt.Sprintf("step %d late to n%d", step, j))
			}
		default:
			w.sync(i, j, fmt.Sprintf("step %d sync", step))
		}
		if w.failed {
			return w
		}
	}
	if !s.Rogue && w.refused > 0 {
		w.errorf("%d messages refused, though every pair of clocks is within max", w.refused)
	}
	return w
}

// TestClockOffsetProperty: every delivery is refused exactly when its
// latest stamp is more than max ahead of the receiver's physical clock,
// with that stamp reported; checking never moves a clock; no clock is
// dragged more than max ahead of its physical clock; a fresh write from a
// clock more than max ahead of everyone is refused by everyone; and when
// all clocks are within max of each other nothing is ever refused, even
// forwarded and anti-entropy data.
func TestClockOffsetProperty(t *testing.T) {
	var refused, syncDeltas int
	prop := func(s offsetScenario) bool {
		w := s.run(t)
		refused += w.refused
		syncDeltas += w.syncDeltas
		return !w.failed
	}
	if err := quick.Check(prop, quickConfig(11, 400)); err != nil {
		t.Fatal(err)
	}
	if refused == 0 || syncDeltas == 0 {
		t.Fatalf("%d refusals, %d sync messages with entries: want some of each", refused, syncDeltas)
	}
}
