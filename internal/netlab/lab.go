// Package netlab runs a small network of hosts on one Linux machine, so that
// the cluster's nodes can be run and broken as if they were on separate
// hosts. It needs root and the ip (iproute2) and nft (nftables) commands;
// StartEtcd also needs etcd.
//
// # Layout
//
// A lab named "<prefix>-<pid>-<id>" (pid of the owning process, id six
// random hex digits) is made of network namespaces only; nothing is added to
// the machine's own (root) namespace, so all traffic stays inside the lab:
//
//   - the switch namespace, named after the lab, holds a Linux bridge
//     "br-<id>";
//   - every node has a namespace "<lab>-<node>" with loopback up and one
//     interface "lab-<id>", a veth whose other end "p<i>-<id>" (i the
//     node's index in Config.Nodes) is a port of the bridge;
//   - addresses come from 198.18.0.0/24 (a range reserved for network
//     tests): a node named "etcd" gets 198.18.0.2, every other node gets
//     198.18.0.10, .11, ... in Config.Nodes order. Interfaces carry no IPv6
//     address, so nodes talk IPv4 only and the faults cover all they say.
//
// Two labs, even with the same prefix and nodes, never share a name; the
// same addresses in two labs do not meet, as each lab has its own bridge.
//
// # Processes
//
// Command and Start run programs inside a node's namespace (with ip netns
// exec), each in its own process group, with its output in
// Dir/<node>-<n>.log, n counting the processes started on that node from 1.
// Close stops them all.
//
// # Faults
//
// Every node namespace has one nftables table, "inet <prefix>", which the lab
// rewrites whole (atomically) on every change: Cut, Isolate and Partition
// drop the traffic between pairs of nodes, Drop drops a share of a node's
// packets at random, and Heal and HealAll take faults away. Nothing outside
// the lab's namespaces is touched.
//
// # Leftovers
//
// Close deletes every namespace (and with them every link and table) and
// kills what runs in them. A lab whose owner died without Close (SIGKILL,
// crash) is removed by Sweep, which New calls for its prefix; a process of
// the lab gets SIGKILL when the owner dies.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrClosed is returned by the lab's methods after Close.
var ErrClosed = errors.New("netlab: lab closed")

// DefaultPrefix names labs when Config.Prefix is empty.
const DefaultPrefix = "shlab"

// EtcdNode is the node name that gets the address 198.18.0.2.
const EtcdNode = "etcd"

// Config describes a lab.
type Config struct {
	// Prefix starts the name of every namespace of the lab and names its
	// nftables tables: a lower-case letter, then up to 11 lower-case letters
	// or digits. Default DefaultPrefix.
	Prefix string
	// Nodes are the hosts, each a lower-case letter then up to 31
	// lower-case letters or digits; at least one.
	Nodes []string
	// Dir receives the process logs and etcd's data. Default: a new
	// temporary directory, which Close leaves for the logs to be read.
	Dir string
	// Logger receives the lab's own log lines. Default: none.
	Logger *slog.Logger
	// StopTimeout bounds how long Close waits for a process to exit after
	// SIGTERM before it sends SIGKILL. Default 5s.
	StopTimeout time.Duration
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	name, id, prefix, dir string
	log                   *slog.Logger
	stopTimeout           time.Duration
	nodes                 []string
	addrs                 map[string]netip.Addr

	mu         sync.Mutex
	closed     bool
	namespaces []string // created so far, switch first
	procs      []*Proc
	started    map[string]int     // processes started per node, for log names
	cuts       map[[2]string]bool // unordered pairs, lower name first
	drops      map[string]int     // percent per node
	closeOnce  sync.Once
	closeErr   error
}

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)
	nodeRE   = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)
)

// Subnet is the lab's network: every node has an address in it.
var Subnet = netip.MustParsePrefix("198.18.0.0/24")

// assign returns the address of every node: EtcdNode gets .2, the others
// .10, .11, ... in order.
func assign(nodes []string) (map[string]netip.Addr, error) {
	addrs := make(map[string]netip.Addr, len(nodes))
	next := 10
	for _, n := range nodes {
		if _, dup := addrs[n]; dup {
			return nil, fmt.Errorf("netlab: node %q named twice", n)
		}
		if n == EtcdNode {
			addrs[n] = netip.AddrFrom4([4]byte{198, 18, 0, 2})
			continue
		}
		if next > 254 {
			return nil, fmt.Errorf("netlab: more than %d nodes besides %s", 254-10+1, EtcdNode)
		}
		addrs[n] = netip.AddrFrom4([4]byte{198, 18, 0, byte(next)})
		next++
	}
	return addrs, nil
}

func (c *Config) validate() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("netlab: prefix %q: want a lower-case letter then up to 11 lower-case letters or digits", c.Prefix)
	}
	if len(c.Nodes) == 0 {
		return errors.New("netlab: no nodes")
	}
	for _, n := range c.Nodes {
		if !nodeRE.MatchString(n) {
			return fmt.Errorf("netlab: node name %q: want a lower-case letter then up to 31 lower-case letters or digits", n)
		}
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// New builds a lab. It first removes the leftovers of dead labs with the
// same prefix (Sweep). On error, whatever was built is removed again.
func New(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	addrs, err := assign(cfg.Nodes)
	if err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", cfg.Prefix+"-"); err != nil {
			return nil, fmt.Errorf("netlab: %w", err)
		}
	} else if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	if removed, err := Sweep(ctx, cfg.Prefix); err != nil {
		cfg.Logger.Warn("netlab: sweeping stale labs", "prefix", cfg.Prefix, "err", err)
	} else if len(removed) > 0 {
		cfg.Logger.Info("netlab: removed stale namespaces", "prefix", cfg.Prefix, "namespaces", removed)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	id := hex.EncodeToString(b[:])
	name := fmt.Sprintf("%s-%d-%s", cfg.Prefix, os.Getpid(), id)
	l := &Lab{
		name: name, id: id, prefix: cfg.Prefix, dir: cfg.Dir,
		log:         cfg.Logger.With("lab", name),
		stopTimeout: cfg.StopTimeout,
		nodes:       slices.Clone(cfg.Nodes),
		addrs:       addrs,
		started:     map[string]int{},
		cuts:        map[[2]string]bool{},
		drops:       map[string]int{},
	}
	start := time.Now()
	if err := l.build(ctx); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	l.log.Info("netlab: lab up", "nodes", len(l.nodes), "dir", l.dir, "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

func (l *Lab) build(ctx context.Context) error {
	sw, br := l.name, "br-"+l.id
	if err := l.addNamespace(ctx, sw); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", sw, "link", "add", br, "type", "bridge"},
		{"-n", sw, "link", "set", br, "addrgenmode", "none"},
		{"-n", sw, "link", "set", br, "up"},
	}
	if err := runIPs(ctx, steps); err != nil {
		return err
	}
	for i, node := range l.nodes {
		ns, port, dev := l.Namespace(node), fmt.Sprintf("p%d-%s", i, l.id), l.dev()
		if err := l.addNamespace(ctx, ns); err != nil {
			return err
		}
		steps := [][]string{
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", sw, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns},
			{"-n", sw, "link", "set", port, "addrgenmode", "none"},
			{"-n", sw, "link", "set", port, "master", br, "up"},
			{"-n", ns, "link", "set", dev, "addrgenmode", "none"},
			{"-n", ns, "addr", "add", netip.PrefixFrom(l.addrs[node], Subnet.Bits()).String(), "dev", dev},
			{"-n", ns, "link", "set", dev, "up"},
		}
		if err := runIPs(ctx, steps); err != nil {
			return err
		}
		l.mu.Lock()
		err := l.applyLocked(ctx, node)
		l.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) addNamespace(ctx context.Context, ns string) error {
	if err := runIP(ctx, "netns", "add", ns); err != nil {
		return err
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
	return nil
}

func runIPs(ctx context.Context, steps [][]string) error {
	for _, s := range steps {
		if err := runIP(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// runIP runs the ip command; its error carries the command and its output.
func runIP(ctx context.Context, args ...string) error {
	return run(ctx, nil, "ip", args...)
}

func run(ctx context.Context, stdin []byte, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Name returns the lab's name, which starts the name of each of its
// namespaces and is the name of its switch namespace.
func (l *Lab) Name() string { return l.name }

// Dir returns the directory of the logs and data.
func (l *Lab) Dir() string { return l.dir }

// Nodes returns the node names in Config order.
func (l *Lab) Nodes() []string { return slices.Clone(l.nodes) }

// Addr returns the node's address, or the zero Addr for an unknown node.
func (l *Lab) Addr(node string) netip.Addr { return l.addrs[node] }

// Namespace returns the name of the node's network namespace, for
// "ip netns exec <namespace> ...", or "" for an unknown node.
func (l *Lab) Namespace(node string) string {
	if _, ok := l.addrs[node]; !ok {
		return ""
	}
	return l.name + "-" + node
}

// dev is the name of every node's interface to the bridge.
func (l *Lab) dev() string { return "lab-" + l.id }

func (l *Lab) check(nodes ...string) error {
	for _, n := range nodes {
		if _, ok := l.addrs[n]; !ok {
			return fmt.Errorf("netlab: unknown node %q (have %s)", n, strings.Join(l.nodes, ", "))
		}
	}
	return nil
}

// Close stops every process the lab started (SIGTERM and SIGCONT, then
// SIGKILL after Config.StopTimeout), kills anything else still running in
// its namespaces, and deletes the namespaces, which takes their links and
// nftables tables with them. Dir is left in place. Close is idempotent; a
// second call returns the first one's result.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		start := time.Now()
		l.mu.Lock()
		l.closed = true
		procs := slices.Clone(l.procs)
		namespaces := slices.Clone(l.namespaces)
		l.mu.Unlock()

		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Go(func() { p.Stop(l.stopTimeout) })
		}
		wg.Wait()

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var errs []error
		// Nodes first, the switch last: deleting a node's namespace also
		// deletes its veth's bridge port.
		for _, ns := range slices.Backward(namespaces) {
			killNamespace(ctx, ns)
			if err := runIP(ctx, "netns", "delete", ns); err != nil {
				errs = append(errs, err)
			}
		}
		l.closeErr = errors.Join(errs...)
		l.log.Info("netlab: lab closed", "processes", len(procs), "namespaces", len(namespaces), "took", time.Since(start).Round(time.Millisecond), "err", l.closeErr)
	})
	return l.closeErr
}

// killNamespace sends SIGKILL to every process in the namespace, and waits
// (bounded by ctx) until none is left, so that deleting it frees it.
func killNamespace(ctx context.Context, ns string) {
	for {
		pids, err := namespacePids(ctx, ns)
		if err != nil || len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}
