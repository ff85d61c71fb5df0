package node

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// AwaitCondition polls cond every 20 ms until it returns true or timeout
// passes, in which case the test fails.
func AwaitCondition(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AssertNever polls cond every 20 ms for the whole window and fails the test
// as soon as it returns true. It is used to show the absence of something
// (a member that must never be accepted), not for synchronisation.
func AssertNever(t testing.TB, window time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("unexpected: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago (all listeners are held until every port is chosen).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	ls := make([]net.Listener, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// logSink routes log output to t.Log while the test runs (and drops it
// afterwards: library goroutines may outlive the test) and remembers the
// messages so tests can assert on them.
type logSink struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
	msgs []string
}

func newLogSink(t testing.TB) *logSink {
	s := &logSink{t: t}
	t.Cleanup(func() {
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
	})
	return s
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := string(bytes.TrimRight(p, "\n"))
	s.msgs = append(s.msgs, line)
	if !s.done {
		s.t.Log(line)
	}
	return len(p), nil
}

// count returns how many logged lines contain all of the substrings.
func (s *logSink) count(substrings ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
outer:
	for _, m := range s.msgs {
		for _, sub := range substrings {
			if !strings.Contains(m, sub) {
				continue outer
			}
		}
		n++
	}
	return n
}

func testLogger(t testing.TB, level slog.Level) (*slog.Logger, *logSink) {
	sink := newLogSink(t)
	return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: level})), sink
}
