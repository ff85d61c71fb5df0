package netlab

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/testkit"
)

func TestAssignAddresses(t *testing.T) {
	addrs, err := assign([]string{"dispatch", "etcd", "gotham", "metropolis"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"etcd": "198.18.0.2", "dispatch": "198.18.0.10", "gotham": "198.18.0.11", "metropolis": "198.18.0.12"}
	for n, a := range want {
		if got := addrs[n].String(); got != a {
			t.Errorf("%s: got %s, want %s", n, got, a)
		}
	}
	if _, err := assign([]string{"a", "a"}); err == nil {
		t.Error("a node named twice was accepted")
	}
	many := make([]string, 246)
	for i := range many {
		many[i] = "n" + strconv.Itoa(i)
	}
	if _, err := assign(many[:245]); err != nil {
		t.Errorf("245 nodes: %v", err)
	}
	if _, err := assign(many); err == nil {
		t.Error("246 nodes besides etcd were given addresses")
	}
}

func TestConfigRejected(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Nodes: []string{"Gotham"}},
		{Nodes: []string{"a-b"}},
		{Nodes: []string{"a", "a"}},
		{Prefix: "sh-lab", Nodes: []string{"a"}},
		{Prefix: "averyverylongprefix", Nodes: []string{"a"}},
	} {
		if l, err := New(context.Background(), cfg); err == nil {
			_ = l.Close()
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestOwnerPid(t *testing.T) {
	for ns, want := range map[string]int{
		"shlab-123-0a1b2c":          123,
		"shlab-123-0a1b2c-gotham":   123,
		"shlab-123-0a1b2c-Gotham":   0,
		"shlab-123-0a1b2":           0,
		"shlab-x-0a1b2c":            0,
		"shlabx-123-0a1b2c":         0,
		"other-123-0a1b2c":          0,
		"shlab-123-0a1b2g-dispatch": 0,
	} {
		pid, ok := ownerPid("shlab", ns)
		if (want != 0) != ok || pid != want {
			t.Errorf("ownerPid(%q) = %d, %v; want %d", ns, pid, ok, want)
		}
	}
}

func TestReachCutHeal(t *testing.T) {
	l := newLab(t, "etcd", "alpha", "beta")
	for _, n := range l.Nodes() {
		startEcho(t, l, n)
	}
	mustReach(t, l, "alpha", "beta")
	mustReach(t, l, "beta", "alpha")
	mustReach(t, l, "alpha", "etcd")

	if err := l.Cut("alpha", "beta"); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, l, "alpha", "beta")
	mustNotReach(t, l, "beta", "alpha")
	mustReach(t, l, "alpha", "etcd")
	mustReach(t, l, "beta", "etcd")
	mustReach(t, l, "alpha", "alpha") // loopback of its own address is not cut
	if got := l.Faults().String(); got != "cut alpha-beta" {
		t.Errorf("faults: %q", got)
	}

	if err := l.Heal("beta"); err != nil {
		t.Fatal(err)
	}
	mustReach(t, l, "alpha", "beta")
	mustReach(t, l, "beta", "alpha")
	if got := l.Faults().String(); got != "none" {
		t.Errorf("faults after heal: %q", got)
	}

	if err := l.Isolate("etcd"); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, l, "alpha", "etcd")
	mustNotReach(t, l, "etcd", "beta")
	mustReach(t, l, "alpha", "beta")
	if err := l.HealAll(); err != nil {
		t.Fatal(err)
	}
	mustReach(t, l, "alpha", "etcd")

	for _, err := range []error{l.Cut("alpha", "alpha"), l.Cut("alpha", "nobody"), l.Heal(), l.Isolate("nobody")} {
		if err == nil {
			t.Error("a bad fault was accepted")
		}
	}
}

func TestDrop(t *testing.T) {
	l := newLab(t, "alpha", "beta")
	startEcho(t, l, "beta")
	const n = 200
	if got := udpRoundTrips(t, l, "alpha", "beta", n); got != n {
		t.Fatalf("no drop: %d of %d datagrams came back", got, n)
	}

	if err := l.Drop("beta", 100); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, l, "alpha", "beta")
	if got := udpRoundTrips(t, l, "alpha", "beta", 50); got != 0 {
		t.Errorf("drop 100%%: %d datagrams came back", got)
	}
	if err := l.Drop("beta", 0); err != nil {
		t.Fatal(err)
	}
	mustReach(t, l, "alpha", "beta")

	// Each datagram and its reply cross beta's interface, each passing
	// with probability 1/2: a quarter of the round trips succeed.
	if err := l.Drop("beta", 50); err != nil {
		t.Fatal(err)
	}
	got := udpRoundTrips(t, l, "alpha", "beta", n)
	t.Logf("drop 50%% in and out: %d of %d round trips (expected about %d)", got, n, n/4)
	if got < n/10 || got > n*45/100 {
		t.Errorf("drop 50%%: %d of %d round trips, want about %d", got, n, n/4)
	}
	if err := l.Heal("beta"); err != nil {
		t.Fatal(err)
	}
	if got := udpRoundTrips(t, l, "alpha", "beta", n); got != n {
		t.Errorf("healed: %d of %d datagrams came back", got, n)
	}
	for _, p := range []int{-1, 101} {
		if l.Drop("beta", p) == nil {
			t.Errorf("drop %d%% accepted", p)
		}
	}
}

func TestPartition(t *testing.T) {
	l := newLab(t, "etcd", "a", "b", "c", "d")
	for _, n := range l.Nodes() {
		startEcho(t, l, n)
	}
	if err := l.Partition([]string{"a", "b"}, []string{"c", "d"}); err != nil {
		t.Fatal(err)
	}
	mustReach(t, l, "a", "b")
	mustReach(t, l, "d", "c")
	mustNotReach(t, l, "a", "c")
	mustNotReach(t, l, "d", "b")
	mustReach(t, l, "a", "etcd") // in no group: reachable from both sides
	mustReach(t, l, "c", "etcd")
	if got := l.Faults().String(); got != "cut a-c, cut a-d, cut b-c, cut b-d" {
		t.Errorf("faults: %q", got)
	}
	if err := l.HealAll(); err != nil {
		t.Fatal(err)
	}
	mustReach(t, l, "a", "c")
	mustReach(t, l, "d", "b")

	for _, groups := range [][][]string{{{"a"}}, {{"a"}, {}}, {{"a", "b"}, {"b"}}, {{"a"}, {"zz"}}} {
		if l.Partition(groups...) == nil {
			t.Errorf("partition %v accepted", groups)
		}
	}
}

// Two labs with the same nodes (so the same addresses) are apart: a cut
// in one does not show in the other.
func TestTwoLabs(t *testing.T) {
	one, two := newLab(t, "alpha", "beta"), newLab(t, "alpha", "beta")
	for _, l := range []*Lab{one, two} {
		startEcho(t, l, "beta")
	}
	if err := one.Cut("alpha", "beta"); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, one, "alpha", "beta")
	mustReach(t, two, "alpha", "beta")
}

func TestCloseLeavesNothing(t *testing.T) {
	requireLab(t)
	l, err := New(context.Background(), Config{Prefix: "shtest", Nodes: []string{"alpha", "beta"}, Dir: t.TempDir(), StopTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	echoProc := startEcho(t, l, "alpha")
	exe, _ := os.Executable()
	cmd := l.Command(context.Background(), "beta", exe)
	cmd.Env = append(os.Environ(), helperEnv+"=stubborn")
	stub, err := l.Start("beta", cmd)
	if err != nil {
		t.Fatal(err)
	}
	// Stopped processes must still be ended.
	if err := echoProc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Wait for the helper to install its handler: it logs a line then.
	testkit.AwaitCondition(t, 10*time.Second, func() bool {
		b, _ := os.ReadFile(stub.LogFile())
		return strings.Contains(string(b), "ignoring SIGTERM")
	}, "the helper installs its SIGTERM handler")
	if err := l.Cut("alpha", "beta"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("closed in %v", took.Round(time.Millisecond))
	if took < 500*time.Millisecond {
		t.Errorf("closed in %v: the stubborn process was not given its StopTimeout", took)
	}
	for _, p := range []*Proc{echoProc, stub} {
		if !p.Exited() {
			t.Errorf("%s pid %d still running", p.Node(), p.Pid())
		}
		if err := syscall.Kill(p.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s pid %d: kill 0: %v, want ESRCH", p.Node(), p.Pid(), err)
		}
	}
	if log, _ := os.ReadFile(stub.LogFile()); !strings.Contains(string(log), "ignored terminated") {
		t.Errorf("the stubborn process did not get SIGTERM first; its log:\n%s", log)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), l.Name()) {
		t.Errorf("namespaces left after Close:\n%s", out)
	}
	out, err = exec.Command("ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), l.id) || strings.Contains(string(out), "shtest") {
		t.Errorf("links left after Close:\n%s", out)
	}

	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.Start("alpha", l.Command(context.Background(), "alpha", "true")); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
	if err := l.Cut("alpha", "beta"); !errors.Is(err, ErrClosed) {
		t.Errorf("Cut after Close: %v, want ErrClosed", err)
	}
}

func TestSweep(t *testing.T) {
	requireLab(t)
	ctx := context.Background()
	dead := deadPid(t)
	stale := "shtest-" + strconv.Itoa(dead) + "-abc123"
	live := "shtest-" + strconv.Itoa(os.Getpid()) + "-abc123"
	for _, ns := range []string{stale, stale + "-alpha", live} {
		if err := runIP(ctx, "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = runIP(ctx, "netns", "delete", live) })
	// Something left running in the stale lab.
	exe, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", stale+"-alpha", exe)
	cmd.Env = append(os.Environ(), helperEnv+"=stubborn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Sweep once it runs inside the namespace (its first line says so);
	// before that, on a busy machine, the namespace may hold no process.
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("the stubborn process said nothing: %v", lines.Err())
	}
	go func() {
		for lines.Scan() {
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	removed, err := Sweep(ctx, "shtest")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, " ") != stale+"-alpha "+stale {
		t.Errorf("removed %q, want the two stale namespaces", removed)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Error("the process in the stale lab was not killed")
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), stale) || !strings.Contains(string(out), live) {
		t.Errorf("after Sweep:\n%s", out)
	}
}

// deadPid returns a pid that no process has.
func deadPid(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for pid := max - 1; pid > 1; pid-- {
		if !alive(pid) {
			return pid
		}
	}
	t.Fatal("no free pid")
	return 0
}
