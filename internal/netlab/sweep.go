package netlab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// ErrUnavailable is wrapped by the error of Available, and of New and
// StartEtcd when the machine cannot run a lab.
var ErrUnavailable = errors.New("netlab: unavailable")

// Available returns nil when this process can run a lab: it runs as root
// with CAP_SYS_ADMIN and CAP_NET_ADMIN, and finds ip, nft and every one of
// tools (such as "etcd") in PATH. Otherwise its error wraps ErrUnavailable
// and names everything missing.
func Available(tools ...string) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (running as uid "+strconv.Itoa(os.Geteuid())+")")
	} else if err := haveCaps(); err != nil {
		missing = append(missing, err.Error())
	}
	for _, t := range append([]string{"ip", "nft"}, tools...) {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t+" in PATH")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: needs %s", ErrUnavailable, strings.Join(missing, ", "))
	}
	return nil
}

// haveCaps checks the effective capabilities that namespaces and nftables
// need; root in a restricted container may lack them.
func haveCaps() error {
	const capNetAdmin, capSysAdmin = 12, 21
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("capabilities unknown (%v)", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		hexCaps, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hexCaps), 16, 64)
		if err != nil {
			return fmt.Errorf("capabilities unreadable (%v)", err)
		}
		var lack []string
		if caps&(1<<capNetAdmin) == 0 {
			lack = append(lack, "CAP_NET_ADMIN")
		}
		if caps&(1<<capSysAdmin) == 0 {
			lack = append(lack, "CAP_SYS_ADMIN")
		}
		if len(lack) > 0 {
			return errors.New(strings.Join(lack, " and "))
		}
		return nil
	}
	return errors.New("capabilities unknown (no CapEff in /proc/self/status)")
}

// netnsDir is where ip keeps the named network namespaces.
const netnsDir = "/run/netns"

// Sweep removes the leftovers of dead labs with the prefix: every namespace
// named "<prefix>-<pid>-<id>..." whose pid no longer runs. It kills what
// still runs in them first, and returns the names it deleted. Labs of live
// processes, this one's included, are left alone (so is a dead lab whose
// pid was reused by a new process).
func Sweep(ctx context.Context, prefix string) ([]string, error) {
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("netlab: prefix %q: want a lower-case letter then up to 11 lower-case letters or digits", prefix)
	}
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: sweep: %w", err)
	}
	var stale []string
	for _, e := range entries {
		if pid, ok := ownerPid(prefix, e.Name()); ok && !alive(pid) {
			stale = append(stale, e.Name())
		}
	}
	// Longest first: a lab's node namespaces before its switch.
	slices.SortFunc(stale, func(a, b string) int { return len(b) - len(a) })
	var removed []string
	var errs []error
	for _, ns := range stale {
		killNamespace(ctx, ns)
		if err := runIP(ctx, "netns", "delete", ns); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, ns)
	}
	return removed, errors.Join(errs...)
}

// ownerPid parses "<prefix>-<pid>-<6 hex>[-<node>]".
func ownerPid(prefix, ns string) (int, bool) {
	rest, ok := strings.CutPrefix(ns, prefix+"-")
	if !ok {
		return 0, false
	}
	pidText, rest, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return 0, false
	}
	id, node, _ := strings.Cut(rest, "-")
	if len(id) != 6 || strings.Trim(id, "0123456789abcdef") != "" {
		return 0, false
	}
	if node != "" && !nodeRE.MatchString(node) {
		return 0, false
	}
	return pid, true
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// namespacePids returns the processes running in a named namespace.
func namespacePids(ctx context.Context, ns string) ([]int, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil, fmt.Errorf("netlab: ip netns pids %s: %w", ns, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
