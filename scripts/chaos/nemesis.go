package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/superhero-cluster/superhero/internal/chaos"
	"github.com/superhero-cluster/superhero/internal/localcluster"
)

// Fault kinds the nemesis injects (chaos.Fault.Kind).
const (
	// faultBomb crashes a city's actor once; it restarts empty and is
	// refilled by its peers.
	faultBomb = "bomb"
	// faultKillCity bombs a city 4 times within 5 s: its supervisor gives
	// up and the process exits 1; it is started again.
	faultKillCity = "kill_city"
	// faultSigkill kills a node's process (a city or dispatch) and starts
	// it again after a while.
	faultSigkill = "sigkill"
	// faultSigstop freezes a node's process (SIGSTOP) for 1 to 10 s, then
	// thaws it (SIGCONT). Frozen long enough, it is dropped by the others
	// and rejoins on its own under a fresh member id.
	faultSigstop = "sigstop"

	// Network faults, in the lab only (-net; Network). Each holds for a
	// while, then every network fault is taken away.

	// faultIsolate cuts a city from every other host, etcd and the
	// clients' namespace included, as if its host fell off the network.
	faultIsolate = "isolate"
	// faultCutDispatch cuts dispatch from the cities and etcd; the
	// clients still reach it, and it answers what it can.
	faultCutDispatch = "cut_dispatch"
	// faultSplit splits the cluster in two groups that cannot talk; etcd
	// sides with one group or stays reachable from both.
	faultSplit = "split"
	// faultDrop drops a share of one node's packets, in and out.
	faultDrop = "drop"
	// faultClockSkew restarts a node (SIGKILL) with its wall clock
	// shifted by -clock-offset, within the cluster's maximum clock offset
	// (500 ms) so its writes are accepted, and after a while restarts it
	// again with a true clock.
	faultClockSkew = "clock_skew"
)

// etcdName is etcd's host in the lab; a split may put it in a group.
const etcdName = "etcd"

// dispatchName is dispatch's node name.
const dispatchName = "dispatch"

// plannedFault is one fault of the schedule.
type plannedFault struct {
	Kind   string `json:"kind"`
	Target string `json:"target"`
	// Hold is how long the fault lasts: sigkill: down before the restart;
	// sigstop: frozen; network faults: in force; clock_skew: skewed.
	Hold time.Duration `json:"hold_ns,omitempty"`
	// Groups are a split's two sides (etcdName may be in one).
	Groups [][]string `json:"groups,omitempty"`
	// Percent is a drop's share of packets.
	Percent int `json:"percent,omitempty"`
	// Offset is a clock_skew's -clock-offset.
	Offset time.Duration `json:"offset_ns,omitempty"`
}

func (f plannedFault) String() string {
	target := f.Target
	switch f.Kind {
	case faultSplit:
		var gs []string
		for _, g := range f.Groups {
			gs = append(gs, strings.Join(g, ","))
		}
		target = strings.Join(gs, " | ")
	case faultDrop:
		target = fmt.Sprintf("%s %d%%", f.Target, f.Percent)
	case faultClockSkew:
		sign := ""
		if f.Offset > 0 {
			sign = "+"
		}
		target = fmt.Sprintf("%s %s%v", f.Target, sign, f.Offset)
	}
	if f.Hold > 0 {
		return fmt.Sprintf("%s %s %v", f.Kind, target, f.Hold.Round(time.Millisecond))
	}
	return f.Kind + " " + target
}

// nodes are the cluster's nodes the fault acts on (never etcd).
func (f plannedFault) nodes() []string {
	if f.Kind != faultSplit {
		return []string{f.Target}
	}
	var out []string
	for _, g := range f.Groups {
		for _, n := range g {
			if n != etcdName {
				out = append(out, n)
			}
		}
	}
	return out
}

// network reports whether f is a network fault.
func (f plannedFault) network() bool {
	switch f.Kind {
	case faultIsolate, faultCutDispatch, faultSplit, faultDrop:
		return true
	}
	return false
}

// step is one entry of the schedule: one fault, or two at once.
type step struct {
	// At is the earliest start, from the start of the run; a step also
	// waits for the previous one to heal.
	At     time.Duration  `json:"at_ns"`
	Faults []plannedFault `json:"faults"`
}

// plan returns the nemesis's schedule for seed: steps from `from` until
// `until`, each a pure function of the seed, so the same seed gives the
// same schedule. Weights: a single bomb 20, 4 bombs to kill a city 15,
// SIGKILL a city 20, SIGKILL dispatch 10, SIGSTOP any node 25; with net
// (the lab) also isolate a city 15, cut dispatch away 10, split the
// cluster in two 15, drop packets 10 and skew a node's clock 10. A step
// is two of those at once, on two different nodes, 10 times in 100; at
// most one of the two is a network fault.
func plan(seed uint64, cities []string, from, until time.Duration, net bool) []step {
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	nodes := append([]string{dispatchName}, cities...)
	weights := 90
	if net {
		weights = 150
	}
	single := func(exclude string, processOnly bool) plannedFault {
		for {
			var f plannedFault
			r := rng.IntN(weights)
			if processOnly && r >= 90 {
				continue
			}
			switch {
			case r < 20:
				f = plannedFault{Kind: faultBomb, Target: cities[rng.IntN(len(cities))]}
			case r < 35:
				f = plannedFault{Kind: faultKillCity, Target: cities[rng.IntN(len(cities))]}
			case r < 55:
				f = plannedFault{Kind: faultSigkill, Target: cities[rng.IntN(len(cities))], Hold: between(rng, 500*time.Millisecond, 4*time.Second)}
			case r < 65:
				f = plannedFault{Kind: faultSigkill, Target: dispatchName, Hold: between(rng, 500*time.Millisecond, 3*time.Second)}
			case r < 90:
				f = plannedFault{Kind: faultSigstop, Target: nodes[rng.IntN(len(nodes))], Hold: between(rng, time.Second, 10*time.Second)}
			case r < 105:
				f = plannedFault{Kind: faultIsolate, Target: cities[rng.IntN(len(cities))], Hold: between(rng, 2*time.Second, 12*time.Second)}
			case r < 115:
				f = plannedFault{Kind: faultCutDispatch, Target: dispatchName, Hold: between(rng, 2*time.Second, 10*time.Second)}
			case r < 130:
				f = split(rng, nodes)
			case r < 140:
				f = plannedFault{Kind: faultDrop, Target: nodes[rng.IntN(len(nodes))], Percent: 10 + rng.IntN(31), Hold: between(rng, 2*time.Second, 10*time.Second)}
			default:
				off := between(rng, 100*time.Millisecond, 400*time.Millisecond)
				if rng.IntN(2) == 0 {
					off = -off
				}
				f = plannedFault{Kind: faultClockSkew, Target: nodes[rng.IntN(len(nodes))], Offset: off, Hold: between(rng, 3*time.Second, 12*time.Second)}
			}
			if !slices.Contains(f.nodes(), exclude) {
				return f
			}
		}
	}
	var steps []step
	for at := from; at < until; at += between(rng, time.Second, 4*time.Second) {
		first := single("", false)
		s := step{At: at, Faults: []plannedFault{first}}
		if rng.IntN(100) < 10 {
			// A split touches every node; the second fault is then
			// drawn on none (skipped).
			if second := single(first.Target, first.network()); !slices.ContainsFunc(second.nodes(), func(n string) bool { return slices.Contains(first.nodes(), n) }) {
				s.Faults = append(s.Faults, second)
			}
		}
		steps = append(steps, s)
	}
	return steps
}

// split draws two non-empty sides of nodes, and puts etcd with one of
// them or with neither.
func split(rng *rand.Rand, nodes []string) plannedFault {
	order := slices.Clone(nodes)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	cut := 1 + rng.IntN(len(order)-1)
	a, b := slices.Clone(order[:cut]), slices.Clone(order[cut:])
	switch rng.IntN(3) {
	case 0:
		a = append(a, etcdName)
	case 1:
		b = append(b, etcdName)
	}
	slices.Sort(a)
	slices.Sort(b)
	target := a[0]
	if target == etcdName {
		target = a[1] // a holds a node besides etcd
	}
	return plannedFault{Kind: faultSplit, Target: target, Groups: [][]string{a, b}, Hold: between(rng, 2*time.Second, 12*time.Second)}
}

// between returns a duration in [lo, hi), in whole milliseconds.
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64((hi-lo)/time.Millisecond)))*time.Millisecond
}

// Target is the cluster as the nemesis sees it: processes to kill, freeze
// and start again, cities to bomb, and whether a node answers. The
// loopback cluster implements it (localTarget); the network lab will too,
// adding Network.
type Target interface {
	// Cities names the cities.
	Cities() []string
	// Kill sends SIGKILL to the node's process and waits for it to exit.
	Kill(node string) error
	// Start starts the node again with the flags it had.
	Start(node string) error
	// Freeze and Thaw send SIGSTOP and SIGCONT.
	Freeze(node string) error
	Thaw(node string) error
	// Bomb crashes the city's actor once (messages.Bomb).
	Bomb(ctx context.Context, city string) error
	// Exited is closed when the node's current process has exited.
	Exited(node string) <-chan struct{}
	// Answering returns nil once the node is back: its process answers
	// and the cluster sees it (see localTarget.Answering).
	Answering(ctx context.Context, node string) error
}

// Network is what a target in the network lab (-net, package
// internal/netlab) adds: faults between hosts rather than in them. The
// schedule draws network faults only in -net mode, whose target
// implements it (labTarget).
type Network interface {
	// Isolate cuts the node's host from every other host.
	Isolate(node string) error
	// Partition cuts every host of each group from those of the other
	// groups; hosts in no group (etcd unless named, the clients) still
	// reach everyone.
	Partition(groups ...[]string) error
	// Drop loses percent of the node's packets, in and out.
	Drop(node string, percent int) error
	// HealNetwork removes every network fault.
	HealNetwork() error
}

// Skewer starts a node with its wall clock shifted (-clock-offset).
type Skewer interface {
	// StartSkewed starts the node again, as Target.Start does, with
	// -clock-offset offset.
	StartSkewed(node string, offset time.Duration) error
}

// nemesis runs a schedule against a target and records each fault's
// window.
type nemesis struct {
	target Target
	log    *slog.Logger
	now    func() time.Duration
	// healWithin bounds how long a fault may take to heal; one that has
	// not by then keeps End zero, and its node gets no more faults.
	healWithin time.Duration

	mu       sync.Mutex
	faults   []chaos.Fault
	active   int
	unhealed map[string]bool
}

func newNemesis(t Target, log *slog.Logger, now func() time.Duration, healWithin time.Duration) *nemesis {
	return &nemesis{target: t, log: log, now: now, healWithin: healWithin, unhealed: map[string]bool{}}
}

// run runs the steps in order, each at its time and after the previous
// one healed, until the schedule ends, a step would start after until, or
// ctx ends.
func (n *nemesis) run(ctx context.Context, steps []step, until time.Duration) {
	for i, s := range steps {
		if err := sleepUntil(ctx, n.now, s.At); err != nil {
			return
		}
		if n.now() >= until {
			n.log.Info("nemesis done: faults stop for the heal period", "skipped_steps", len(steps)-i)
			return
		}
		var wg sync.WaitGroup
		for _, f := range s.Faults {
			if slices.ContainsFunc(f.nodes(), n.isUnhealed) {
				n.log.Warn("fault skipped: its node never healed", "fault", f.String())
				continue
			}
			wg.Go(func() { n.inject(ctx, f) })
		}
		wg.Wait()
	}
}

// inject runs one fault and records its window.
func (n *nemesis) inject(ctx context.Context, f plannedFault) {
	i := n.begin(chaos.Fault{Kind: f.Kind, Targets: f.nodes(), Start: n.now()})
	n.log.Info("fault", "fault", f.String())
	var healed time.Duration
	err := n.apply(ctx, f)
	if err == nil {
		// A thawed or reconnected node may find out only after a while
		// (its membership check runs every second) that the others
		// dropped it, and then rejoins: it has healed once it has kept
		// answering for longer.
		var stable time.Duration
		switch {
		case f.Kind == faultSigstop:
			stable = 1500 * time.Millisecond
		case f.network():
			stable = 2 * time.Second
		}
		// Every node of the fault must heal; the fault heals with the
		// last of them.
		for _, node := range f.nodes() {
			var at time.Duration
			if at, err = n.awaitHealed(ctx, node, stable); err != nil {
				break
			}
			healed = max(healed, at)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			n.log.Error("fault did not heal", "fault", f.String(), "err", err)
			n.mu.Lock()
			for _, node := range f.nodes() {
				n.unhealed[node] = true
			}
			n.mu.Unlock()
		}
		n.end(i, 0)
		return
	}
	n.log.Info("healed", "fault", f.String(), "took", (healed - n.faultStart(i)).Round(time.Millisecond))
	n.end(i, healed)
}

// apply injects f and, for a fault with a duration, lifts it again.
func (n *nemesis) apply(ctx context.Context, f plannedFault) error {
	t := n.target
	switch f.Kind {
	case faultBomb:
		return t.Bomb(ctx, f.Target)
	case faultKillCity:
		// Four bombs back to back: each restart counts against the city's
		// supervisor (3 restarts in 5 s), the 4th crash ends the process.
		for i := range 4 {
			if err := t.Bomb(ctx, f.Target); err != nil {
				n.log.Warn("bomb not acknowledged", "city", f.Target, "bomb", i+1, "err", err)
			}
		}
		select {
		case <-t.Exited(f.Target):
		case <-time.After(10 * time.Second):
			n.log.Error("city survived 4 bombs; killing it", "city", f.Target)
			if err := t.Kill(f.Target); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		return t.Start(f.Target)
	case faultSigkill:
		if err := t.Kill(f.Target); err != nil {
			return err
		}
		if err := sleepFor(ctx, f.Hold); err != nil {
			return err
		}
		return t.Start(f.Target)
	case faultSigstop:
		if err := t.Freeze(f.Target); err != nil {
			return err
		}
		err := sleepFor(ctx, f.Hold)
		// Thawed even when the run is ending, so the clean-up finds it
		// running.
		return errors.Join(err, t.Thaw(f.Target))
	case faultIsolate, faultCutDispatch, faultSplit, faultDrop:
		nw, ok := t.(Network)
		if !ok {
			return fmt.Errorf("%s: the target has no network to break (run with -net)", f.Kind)
		}
		var err error
		switch f.Kind {
		case faultIsolate:
			err = nw.Isolate(f.Target)
		case faultCutDispatch:
			err = nw.Partition([]string{dispatchName}, append(t.Cities(), etcdName))
		case faultSplit:
			err = nw.Partition(f.Groups...)
		case faultDrop:
			err = nw.Drop(f.Target, f.Percent)
		}
		if err == nil {
			err = sleepFor(ctx, f.Hold)
		}
		// Healed even when the run is ending.
		return errors.Join(err, nw.HealNetwork())
	case faultClockSkew:
		sk, ok := t.(Skewer)
		if !ok {
			return fmt.Errorf("%s: the target cannot skew a clock (run with -net)", f.Kind)
		}
		if err := t.Kill(f.Target); err != nil {
			return err
		}
		if err := sk.StartSkewed(f.Target, f.Offset); err != nil {
			return err
		}
		err := sleepFor(ctx, f.Hold)
		// Back to a true clock even when the run is ending. The kill
		// waits for the exit; a city that exited on its own meanwhile
		// is started all the same.
		if kerr := t.Kill(f.Target); kerr != nil {
			return errors.Join(err, kerr)
		}
		return errors.Join(err, t.Start(f.Target))
	}
	return fmt.Errorf("unknown fault kind %q", f.Kind)
}

// awaitHealed polls until the node answers and has kept answering for
// stable, within healWithin. The fault heals when it first answered in
// that unbroken run.
func (n *nemesis) awaitHealed(ctx context.Context, node string, stable time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, n.healWithin)
	defer cancel()
	var last error
	var since time.Duration // when the current run of answers began; 0: none
	err := localcluster.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-n.target.Exited(node):
			// The fault ended the process: single bombs close together
			// add up to the supervisor's limit (4 crashes in 5 s) as
			// surely as kill_city does. Start it again, as an operator
			// would, and go on waiting.
			n.log.Warn("node exited; starting it again", "node", node)
			if err := n.target.Start(node); err != nil {
				return false, err
			}
			since = 0
			return false, nil
		default:
		}
		if last = n.target.Answering(ctx, node); last != nil {
			since = 0
			return false, nil
		}
		if since == 0 {
			since = n.now()
		}
		return n.now()-since >= stable, nil
	})
	if err != nil && last != nil {
		return 0, fmt.Errorf("%w (last: %v)", err, last)
	}
	return since, err
}

func (n *nemesis) begin(f chaos.Fault) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults = append(n.faults, f)
	n.active++
	return len(n.faults) - 1
}

func (n *nemesis) end(i int, at time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults[i].End = at
	n.active--
}

func (n *nemesis) faultStart(i int) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.faults[i].Start
}

func (n *nemesis) isUnhealed(node string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.unhealed[node]
}

// record returns the faults so far and how many are active.
func (n *nemesis) record() ([]chaos.Fault, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]chaos.Fault, len(n.faults))
	for i, f := range n.faults {
		f.Targets = slices.Clone(f.Targets)
		out[i] = f
	}
	return out, n.active
}

// activeNames describes the faults now active, for progress lines.
func (n *nemesis) activeNames() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var names []string
	for _, f := range n.faults {
		if f.End == 0 {
			names = append(names, f.Kind+":"+strings.Join(f.Targets, ","))
		}
	}
	return strings.Join(names, " ")
}

// sleepFor waits d, or until ctx ends.
func sleepFor(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// sleepUntil waits until now() reaches at, or ctx ends.
func sleepUntil(ctx context.Context, now func() time.Duration, at time.Duration) error {
	return sleepFor(ctx, max(at-now(), 0))
}
