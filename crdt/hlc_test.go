package crdt_test

import (
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/superhero-cluster/superhero/crdt"
)

func ts(wall int64, logical uint32, node string) crdt.Timestamp {
	return crdt.Timestamp{Wall: wall, Logical: logical, Node: node}
}

// TestClockNow drives Now through a physical clock that moves forward,
// stalls and steps back: every stamp is strictly after the previous one
// and the wall part never goes backwards.
func TestClockNow(t *testing.T) {
	tests := []struct {
		name string
		phys []int64 // physical reading before each Now
		want []crdt.Timestamp
	}{
		{
			name: "forward",
			phys: []int64{10, 20, 30},
			want: []crdt.Timestamp{ts(10, 0, "a"), ts(20, 0, "a"), ts(30, 0, "a")},
		},
		{
			name: "stall bumps logical",
			phys: []int64{10, 10, 10},
			want: []crdt.Timestamp{ts(10, 0, "a"), ts(10, 1, "a"), ts(10, 2, "a")},
		},
		{
			name: "step back keeps wall",
			phys: []int64{100, 40, 99, 100},
			want: []crdt.Timestamp{ts(100, 0, "a"), ts(100, 1, "a"), ts(100, 2, "a"), ts(100, 3, "a")},
		},
		{
			name: "forward again resets logical",
			phys: []int64{100, 40, 101},
			want: []crdt.Timestamp{ts(100, 0, "a"), ts(100, 1, "a"), ts(101, 0, "a")},
		},
		{
			name: "zero physical clock",
			phys: []int64{0, 0},
			want: []crdt.Timestamp{ts(0, 1, "a"), ts(0, 2, "a")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := newManualClock(0)
			c := crdt.NewClock("a", mc.Now)
			var prev crdt.Timestamp
			for i, p := range tt.phys {
				mc.Set(p)
				got := c.Now()
				if got != tt.want[i] {
					t.Fatalf("Now #%d at phys %d = %v, want %v", i, p, got, tt.want[i])
				}
				if !prev.Less(got) {
					t.Fatalf("Now #%d = %v not after %v", i, got, prev)
				}
				if last := c.Last(); last != got {
					t.Fatalf("Last = %v, want %v", last, got)
				}
				prev = got
			}
		})
	}
}

// TestClockObserve checks that after Observe(remote) the next Now is after
// remote, and that an older remote changes nothing.
func TestClockObserve(t *testing.T) {
	tests := []struct {
		name   string
		phys   int64
		before []int64 // local Now calls (physical readings) before Observe
		remote crdt.Timestamp
		want   crdt.Timestamp // next Now at phys
	}{
		{"remote ahead of physical", 100, nil, ts(200, 5, "b"), ts(200, 6, "a")},
		{"remote same wall, higher logical", 100, []int64{100}, ts(100, 7, "b"), ts(100, 8, "a")},
		{"remote same wall and logical", 100, []int64{100, 100}, ts(100, 1, "b"), ts(100, 2, "a")},
		{"remote behind", 100, []int64{100}, ts(50, 9, "b"), ts(100, 1, "a")},
		{"physical ahead of remote", 300, nil, ts(200, 5, "b"), ts(300, 0, "a")},
		{"remote at logical limit", 100, nil, ts(200, math.MaxUint32, "b"), ts(201, 0, "a")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := newManualClock(0)
			c := crdt.NewClock("a", mc.Now)
			for _, p := range tt.before {
				mc.Set(p)
				c.Now()
			}
			mc.Set(tt.phys)
			c.Observe(tt.remote)
			got := c.Now()
			if got != tt.want {
				t.Fatalf("Now after Observe(%v) = %v, want %v", tt.remote, got, tt.want)
			}
			if !tt.remote.Less(got) {
				t.Fatalf("Now = %v is not after observed %v", got, tt.remote)
			}
		})
	}
}

// TestTimestampOrder: wall first, then logical, then node.
func TestTimestampOrder(t *testing.T) {
	tests := []struct {
		a, b crdt.Timestamp
		want int
	}{
		{ts(1, 9, "z"), ts(2, 0, "a"), -1},
		{ts(2, 0, "a"), ts(1, 9, "z"), 1},
		{ts(5, 1, "z"), ts(5, 2, "a"), -1},
		{ts(5, 2, "a"), ts(5, 2, "b"), -1},
		{ts(5, 2, "b"), ts(5, 2, "a"), 1},
		{ts(5, 2, "a"), ts(5, 2, "a"), 0},
		{ts(-1, 0, ""), ts(0, 0, ""), -1},
		{ts(math.MaxInt64, 0, ""), ts(math.MaxInt64-1, math.MaxUint32, "z"), 1},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := tt.a.Less(tt.b); got != (tt.want < 0) {
			t.Errorf("%v.Less(%v) = %v, want %v", tt.a, tt.b, got, tt.want < 0)
		}
	}
	// The order is total: sorting any permutation gives one sequence.
	all := []crdt.Timestamp{ts(2, 0, "b"), ts(1, 1, "a"), ts(2, 0, "a"), ts(1, 0, "c"), ts(2, 1, "a")}
	want := []crdt.Timestamp{ts(1, 0, "c"), ts(1, 1, "a"), ts(2, 0, "a"), ts(2, 0, "b"), ts(2, 1, "a")}
	slices.SortFunc(all, crdt.Timestamp.Compare)
	if !slices.Equal(all, want) {
		t.Errorf("sorted = %v, want %v", all, want)
	}
	if !(crdt.Timestamp{}).IsZero() || ts(0, 0, "a").IsZero() || ts(0, 1, "").IsZero() {
		t.Error("IsZero is wrong")
	}
}

// TestClockLogicalOverflow: when the logical counter is exhausted the clock
// borrows a nanosecond of wall time instead of wrapping, so order holds.
func TestClockLogicalOverflow(t *testing.T) {
	mc := newManualClock(100)
	c := crdt.NewClock("a", mc.Now)
	c.Observe(ts(100, math.MaxUint32-1, "b"))
	want := []crdt.Timestamp{
		ts(100, math.MaxUint32, "a"),
		ts(101, 0, "a"),
		ts(101, 1, "a"),
	}
	var prev crdt.Timestamp
	for i, w := range want {
		got := c.Now()
		if got != w {
			t.Fatalf("Now #%d = %v, want %v", i, got, w)
		}
		if !prev.Less(got) {
			t.Fatalf("Now #%d = %v not after %v", i, got, prev)
		}
		prev = got
	}
	// The physical clock catching up with the borrowed wall does not
	// reissue a stamp.
	mc.Set(101)
	if got := c.Now(); got != ts(101, 2, "a") {
		t.Fatalf("Now at phys 101 = %v, want 101.2", got)
	}
	if c.Node() != "a" || c.PhysicalNow() != 101 {
		t.Fatalf("Node, PhysicalNow = %q, %d", c.Node(), c.PhysicalNow())
	}
}

// TestClockEndOfTime: a garbage remote stamp at the largest wall value
// does not make the clock wrap to negative time, which would make every
// later local write lose to every entry it ever merged.
func TestClockEndOfTime(t *testing.T) {
	mc := newManualClock(epoch)
	c := crdt.NewClock("a", mc.Now)
	end := ts(math.MaxInt64, math.MaxUint32, "b")
	c.Observe(end)
	for i := range 3 {
		if got := c.Now(); got.Wall != math.MaxInt64 || got.Logical != math.MaxUint32 {
			t.Fatalf("Now #%d after observing %v = %v, want to stay at the end", i, end, got)
		}
	}
}

// TestClockConcurrent: stamps taken from many goroutines while another
// observes remote stamps are all distinct (run with -race).
func TestClockConcurrent(t *testing.T) {
	mc := newManualClock(epoch)
	c := crdt.NewClock("a", mc.Now)
	const workers, each = 4, 500
	stamps := make([][]crdt.Timestamp, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if i%50 == 0 {
					mc.Advance(-1000) // step back under the writers' feet
				}
				stamps[w] = append(stamps[w], c.Now())
			}
		})
	}
	wg.Go(func() {
		for i := range each {
			c.Observe(ts(epoch+int64(i), 3, "b"))
		}
	})
	wg.Wait()
	var all []crdt.Timestamp
	for w := range workers {
		for i := 1; i < len(stamps[w]); i++ {
			if !stamps[w][i-1].Less(stamps[w][i]) {
				t.Fatalf("worker %d: stamp %v not after %v", w, stamps[w][i], stamps[w][i-1])
			}
		}
		all = append(all, stamps[w]...)
	}
	slices.SortFunc(all, crdt.Timestamp.Compare)
	if len(slices.Compact(all)) != workers*each {
		t.Fatal("two Now calls returned the same stamp")
	}
}
