package netlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/logx"
)

// The test binary doubles as the lab's helper programs: run with
// NETLAB_TEST_HELPER set, it is one of them instead of the tests.
const helperEnv = "NETLAB_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "echo":
		echoServer(os.Getenv("NETLAB_TEST_ADDR"))
	case "stubborn":
		stubborn()
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// echoServer echoes lines over TCP and datagrams over UDP on addr until
// killed.
func echoServer(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	fmt.Println("echo: listening on", addr)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if _, err := fmt.Fprintln(c, sc.Text()); err != nil {
					return
				}
			}
		}()
	}
}

// stubborn ignores SIGTERM, so only SIGKILL ends it.
func stubborn() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	fmt.Println("stubborn: ignoring SIGTERM")
	for s := range c {
		fmt.Println("stubborn: ignored", s)
	}
}

// requireLab skips the test when this machine cannot run a lab, but fails
// it in CI (CI=true), where the lab must run.
func requireLab(t *testing.T, tools ...string) {
	t.Helper()
	if err := Available(tools...); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skip(err)
	}
}

// newLab builds a lab of nodes for the test, closed when it ends.
func newLab(t *testing.T, nodes ...string) *Lab {
	t.Helper()
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	l, err := New(ctx, Config{Prefix: "shtest", Nodes: nodes, Dir: t.TempDir(), Logger: logx.Test(t), StopTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lab %s of %d nodes built in %v", l.Name(), len(nodes), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

const echoPort = 7000

// startEcho runs an echo server on node's address and waits until it
// answers from the node itself.
func startEcho(t *testing.T, l *Lab, node string) *Proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := l.Command(context.Background(), node, exe)
	cmd.Env = append(os.Environ(), helperEnv+"=echo", "NETLAB_TEST_ADDR="+echoAddr(l, node).String())
	p, err := l.Start(node, cmd)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := echo(l, node, node, time.Second)
		if err == nil {
			return p
		}
		if p.Exited() {
			log, _ := os.ReadFile(p.LogFile())
			t.Fatalf("echo server on %s exited: %v\n%s", node, p.Wait(), log)
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo server on %s not answering: %v", node, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func echoAddr(l *Lab, node string) netip.AddrPort {
	return netip.AddrPortFrom(l.Addr(node), echoPort)
}

// echo sends a line over TCP from one node to the echo server of another
// and checks it comes back, all within timeout.
func echo(l *Lab, from, to string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := l.DialContext(ctx, from, "tcp", echoAddr(l, to).String())
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	msg := from + " to " + to
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != msg+"\n" {
		return fmt.Errorf("echo from %s: got %q, want %q", to, line, msg)
	}
	return nil
}

// shortTimeout is how long a dial that must fail is given.
const shortTimeout = 400 * time.Millisecond

// mustReach fails the test unless from reaches to's echo server.
func mustReach(t *testing.T, l *Lab, from, to string) {
	t.Helper()
	if err := echo(l, from, to, 5*time.Second); err != nil {
		t.Errorf("%s cannot reach %s (faults: %v): %v", from, to, l.Faults(), err)
	}
}

// mustNotReach fails the test if from reaches to's echo server, or if the
// attempt fails other than by timing out (a refusal would mean the packets
// got through).
func mustNotReach(t *testing.T, l *Lab, from, to string) {
	t.Helper()
	err := echo(l, from, to, shortTimeout)
	var ne net.Error
	switch {
	case err == nil:
		t.Errorf("%s reached %s (faults: %v)", from, to, l.Faults())
	case !errors.As(err, &ne) || !ne.Timeout():
		t.Errorf("%s to %s: want a time-out, got %v", from, to, err)
	}
}

// udpRoundTrips sends n datagrams from one node to the echo server of
// another and counts the replies. It sends them in batches small enough
// for the sockets' buffers, so that only the lab drops datagrams.
func udpRoundTrips(t *testing.T, l *Lab, from, to string, n int) int {
	t.Helper()
	c, err := l.DialContext(context.Background(), from, "udp", echoAddr(l, to).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const batch = 25
	got := map[string]bool{}
	buf := make([]byte, 64)
	for sent := 0; sent < n; {
		want := len(got) + min(batch, n-sent)
		for range min(batch, n-sent) {
			if _, err := c.Write([]byte(strconv.Itoa(sent))); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		for len(got) < want {
			// Replies come within milliseconds; a quiet quarter of a
			// second means the rest of the batch was dropped.
			_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			k, err := c.Read(buf)
			if err != nil {
				break
			}
			got[string(buf[:k])] = true
		}
	}
	return len(got)
}
