package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTarget records what the nemesis does to it; every node answers.
type fakeTarget struct {
	mu     sync.Mutex
	calls  []string
	exited map[string]chan struct{}
}

func newFakeTarget() *fakeTarget {
	return &fakeTarget{exited: map[string]chan struct{}{}}
}

func (f *fakeTarget) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return nil
}

func (f *fakeTarget) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeTarget) Cities() []string                          { return []string{"gotham", "metropolis"} }
func (f *fakeTarget) Kill(node string) error                    { return f.record("kill %s", node) }
func (f *fakeTarget) Start(node string) error                   { return f.record("start %s", node) }
func (f *fakeTarget) Freeze(node string) error                  { return f.record("freeze %s", node) }
func (f *fakeTarget) Thaw(node string) error                    { return f.record("thaw %s", node) }
func (f *fakeTarget) Bomb(_ context.Context, city string) error { return f.record("bomb %s", city) }
func (f *fakeTarget) Answering(context.Context, string) error   { return nil }
func (f *fakeTarget) Exited(node string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.exited[node] == nil {
		f.exited[node] = make(chan struct{}) // never exits
	}
	return f.exited[node]
}

// fakeLab adds the network and the clock.
type fakeLab struct{ *fakeTarget }

func (f fakeLab) Isolate(node string) error { return f.record("isolate %s", node) }
func (f fakeLab) Partition(groups ...[]string) error {
	var gs []string
	for _, g := range groups {
		gs = append(gs, strings.Join(g, ","))
	}
	return f.record("partition %s", strings.Join(gs, " | "))
}
func (f fakeLab) Drop(node string, percent int) error { return f.record("drop %s %d", node, percent) }
func (f fakeLab) HealNetwork() error                  { return f.record("heal") }
func (f fakeLab) StartSkewed(node string, offset time.Duration) error {
	return f.record("start %s -clock-offset %v", node, offset)
}

func TestNemesisNetworkFaults(t *testing.T) {
	cases := []struct {
		fault plannedFault
		want  []string
	}{
		{plannedFault{Kind: faultIsolate, Target: "gotham", Hold: time.Millisecond}, []string{"isolate gotham", "heal"}},
		{plannedFault{Kind: faultCutDispatch, Target: dispatchName, Hold: time.Millisecond}, []string{"partition dispatch | gotham,metropolis,etcd", "heal"}},
		{plannedFault{Kind: faultSplit, Target: "dispatch", Groups: [][]string{{"dispatch", "etcd"}, {"gotham", "metropolis"}}, Hold: time.Millisecond},
			[]string{"partition dispatch,etcd | gotham,metropolis", "heal"}},
		{plannedFault{Kind: faultDrop, Target: "metropolis", Percent: 25, Hold: time.Millisecond}, []string{"drop metropolis 25", "heal"}},
		{plannedFault{Kind: faultClockSkew, Target: "gotham", Offset: -300 * time.Millisecond, Hold: time.Millisecond},
			[]string{"kill gotham", "start gotham -clock-offset -300ms", "kill gotham", "start gotham"}},
	}
	for _, c := range cases {
		ft := newFakeTarget()
		n := newNemesis(fakeLab{ft}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Duration { return 0 }, time.Second)
		if err := n.apply(context.Background(), c.fault); err != nil {
			t.Fatalf("%v: %v", c.fault, err)
		}
		if got := ft.Calls(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v: did %q, want %q", c.fault, got, c.want)
		}
		// On loopback (no Network, no Skewer) the fault is refused
		// before anything is done.
		plain := newFakeTarget()
		n = newNemesis(plain, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Duration { return 0 }, time.Second)
		if err := n.apply(context.Background(), c.fault); err == nil || !strings.Contains(err.Error(), "-net") {
			t.Errorf("%v on a target without a network: %v", c.fault, err)
		}
		if got := plain.Calls(); len(got) != 0 {
			t.Errorf("%v on a target without a network did %q", c.fault, got)
		}
	}
}

// TestNemesisHealsEveryNode: a split's window ends when every node of
// both sides answers, and its record names them all.
func TestNemesisHealsEveryNode(t *testing.T) {
	ft := newFakeTarget()
	var mu sync.Mutex
	clock := time.Duration(0)
	now := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		clock += 500 * time.Millisecond // the 2 s of stable answers pass in a few polls
		return clock
	}
	n := newNemesis(fakeLab{ft}, slog.New(slog.NewTextHandler(io.Discard, nil)), now, 10*time.Second)
	f := plannedFault{Kind: faultSplit, Target: "dispatch", Groups: [][]string{{"dispatch", "etcd"}, {"gotham", "metropolis"}}, Hold: time.Millisecond}
	n.inject(context.Background(), f)
	faults, active := n.record()
	if active != 0 || len(faults) != 1 {
		t.Fatalf("%d faults, %d active", len(faults), active)
	}
	if want := []string{"dispatch", "gotham", "metropolis"}; !reflect.DeepEqual(faults[0].Targets, want) {
		t.Errorf("targets %v, want %v (etcd is not a node of the cluster)", faults[0].Targets, want)
	}
	if faults[0].End <= faults[0].Start {
		t.Errorf("window %v..%v", faults[0].Start, faults[0].End)
	}
}
