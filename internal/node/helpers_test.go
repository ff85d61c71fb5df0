package node

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/superhero-cluster/superhero/internal/testkit"
)

// Bounded waiting comes from the project's testkit.
var (
	AwaitCondition = testkit.AwaitCondition
	AssertNever    = testkit.AssertNever
)

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
