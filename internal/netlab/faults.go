package netlab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The faults are state in the Lab; every change rewrites the nftables table
// of each node it touches from that state, in one nft transaction per node.
// Rules match the node's lab interface only, so loopback always works. A
// cut is enforced at both ends, so it holds even for a node that sends from
// another address.

// applyTimeout bounds one nft run.
const applyTimeout = 10 * time.Second

// Faults describes the faults in force.
type Faults struct {
	// Cuts are the pairs of nodes that cannot talk, each pair in name
	// order, sorted.
	Cuts [][2]string
	// Drops is the share of packets, in percent, dropped in and out of a
	// node, for every node that has one.
	Drops map[string]int
}

// String returns "none", or the faults as "cut a-b, drop c 30%".
func (f Faults) String() string {
	var parts []string
	for _, c := range f.Cuts {
		parts = append(parts, "cut "+c[0]+"-"+c[1])
	}
	for _, n := range slices.Sorted(maps.Keys(f.Drops)) {
		parts = append(parts, fmt.Sprintf("drop %s %d%%", n, f.Drops[n]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Faults returns the faults in force.
func (l *Lab) Faults() Faults {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.faultsLocked()
}

func (l *Lab) faultsLocked() Faults {
	f := Faults{Drops: maps.Clone(l.drops)}
	for pair := range l.cuts {
		f.Cuts = append(f.Cuts, pair)
	}
	slices.SortFunc(f.Cuts, func(a, b [2]string) int {
		return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1])
	})
	return f
}

func pair(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Cut drops all traffic between a and b, both ways.
func (l *Lab) Cut(a, b string) error {
	if err := l.check(a, b); err != nil {
		return err
	}
	if a == b {
		return fmt.Errorf("netlab: cannot cut %s from itself", a)
	}
	return l.change("cut", []string{a, b}, func() { l.cuts[pair(a, b)] = true })
}

// Isolate cuts node from every other node.
func (l *Lab) Isolate(node string) error {
	if err := l.check(node); err != nil {
		return err
	}
	return l.change("isolate", l.nodes, func() {
		for _, other := range l.nodes {
			if other != node {
				l.cuts[pair(node, other)] = true
			}
		}
	})
}

// Partition cuts every node of each group from every node of the other
// groups; nodes within a group still talk. Nodes in no group keep talking
// to everyone (so "etcd" left out stays reachable from every side). It
// needs two groups or more, and a node in one group at most.
func (l *Lab) Partition(groups ...[]string) error {
	if len(groups) < 2 {
		return fmt.Errorf("netlab: a partition needs two groups or more, got %d", len(groups))
	}
	group := map[string]int{}
	var touched []string
	for i, g := range groups {
		if len(g) == 0 {
			return fmt.Errorf("netlab: partition group %d is empty", i+1)
		}
		if err := l.check(g...); err != nil {
			return err
		}
		for _, n := range g {
			if j, dup := group[n]; dup {
				return fmt.Errorf("netlab: %s is in partition groups %d and %d", n, j+1, i+1)
			}
			group[n] = i
			touched = append(touched, n)
		}
	}
	return l.change("partition", touched, func() {
		for _, a := range touched {
			for _, b := range touched {
				if group[a] != group[b] {
					l.cuts[pair(a, b)] = true
				}
			}
		}
	})
}

// Drop drops percent (0 to 100) of the packets in and out of node, each at
// random (nft numgen random); 0 ends the drop. Both directions count, so a
// request and its reply both run the risk.
func (l *Lab) Drop(node string, percent int) error {
	if err := l.check(node); err != nil {
		return err
	}
	if percent < 0 || percent > 100 {
		return fmt.Errorf("netlab: drop %s: percent %d is not in 0..100", node, percent)
	}
	return l.change("drop", []string{node}, func() {
		if percent == 0 {
			delete(l.drops, node)
		} else {
			l.drops[node] = percent
		}
	})
}

// Heal takes away every fault that involves one of nodes: their cuts (to
// anyone) and their drops. Use HealAll to take away all faults.
func (l *Lab) Heal(nodes ...string) error {
	if len(nodes) == 0 {
		return errors.New("netlab: Heal needs a node (HealAll heals everything)")
	}
	if err := l.check(nodes...); err != nil {
		return err
	}
	return l.change("heal", l.nodes, func() {
		for _, n := range nodes {
			delete(l.drops, n)
			for p := range l.cuts {
				if p[0] == n || p[1] == n {
					delete(l.cuts, p)
				}
			}
		}
	})
}

// HealAll takes away every fault.
func (l *Lab) HealAll() error {
	return l.change("heal all", l.nodes, func() {
		clear(l.cuts)
		clear(l.drops)
	})
}

// change updates the fault state and rewrites the tables of the nodes it
// may touch. On error some tables may be stale; the next change of the
// same nodes (or HealAll) rewrites them.
func (l *Lab) change(what string, touched []string, update func()) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	update()
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	var errs []error
	for _, n := range slices.Compact(slices.Sorted(slices.Values(touched))) {
		if err := l.applyLocked(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	l.log.Info("netlab: "+what, "faults", l.faultsLocked().String(), "err", err)
	return err
}

// applyLocked loads node's table as the fault state says.
func (l *Lab) applyLocked(ctx context.Context, node string) error {
	return run(ctx, []byte(l.ruleset(node)), "ip", "netns", "exec", l.Namespace(node), "nft", "-f", "-")
}

// ruleset renders node's table. The first two lines make sure the table
// exists and delete it, so the whole file replaces it in one transaction.
func (l *Lab) ruleset(node string) string {
	var cut []string
	for _, other := range l.nodes {
		if l.cuts[pair(node, other)] {
			cut = append(cut, l.addrs[other].String())
		}
	}
	dev := l.dev()
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\n", l.prefix, l.prefix)
	fmt.Fprintf(&b, "table inet %s {\n", l.prefix)
	b.WriteString("\tset cut {\n\t\ttype ipv4_addr\n")
	if len(cut) > 0 {
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(cut, ", "))
	}
	b.WriteString("\t}\n")
	for _, c := range []struct{ chain, iface, peer string }{{"input", "iifname", "saddr"}, {"output", "oifname", "daddr"}} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority filter; policy accept;\n", c.chain, c.chain)
		fmt.Fprintf(&b, "\t\t%s %q ip %s @cut drop\n", c.iface, dev, c.peer)
		switch p := l.drops[node]; {
		case p >= 100: // numgen's values are 0..99, and nft rejects "< 100"
			fmt.Fprintf(&b, "\t\t%s %q drop\n", c.iface, dev)
		case p > 0:
			fmt.Fprintf(&b, "\t\t%s %q numgen random mod 100 < %d drop\n", c.iface, dev, p)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
