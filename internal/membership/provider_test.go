package membership

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"

	"github.com/superhero-cluster/superhero/internal/testkit"
)

const (
	testRefresh = 50 * time.Millisecond
	testCluster = "superhero"
)

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns how many lines contain every substring.
func (l *logBuffer) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
outer:
	for _, line := range strings.Split(l.b.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue outer
			}
		}
		n++
	}
	return n
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog(t *testing.T) (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("provider log:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// recorder keeps the topologies a provider publishes.
type recorder struct {
	mu     sync.Mutex
	last   cluster.Members
	rounds int
}

func (r *recorder) publish(ms cluster.Members) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last, r.rounds = ms, r.rounds+1
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, m := range r.last {
		ids = append(ids, m.Id)
	}
	slices.Sort(ids)
	return ids
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rounds
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// startProvider starts a provider as member id with the given key on
// healthPort, polling peers.
func startProvider(t *testing.T, id string, key []byte, healthPort int, peers []string, log *slog.Logger) (*Provider, *recorder) {
	t.Helper()
	p, err := New(Config{
		HealthPort: healthPort, Peers: peers, RefreshInterval: testRefresh,
		PollTimeout: 500 * time.Millisecond, Key: key, ClusterName: testCluster,
		Logger: log.With(slog.String("node", id)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	self := &Member{ID: id, Host: "127.0.0.1", Port: 9000, Kinds: []string{"kind-" + id}, Cluster: testCluster}
	if err := p.start(self, rec.publish); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(true) })
	return p, rec
}

// serve runs h on a fresh loopback port until the test ends and returns the
// address and a function that stops it.
func serve(t *testing.T, h http.Handler) (string, func()) {
	t.Helper()
	s := httptest.NewServer(h)
	var once sync.Once
	stop := func() { once.Do(s.Close) }
	t.Cleanup(stop)
	return s.Listener.Addr().String(), stop
}

// captured asks the endpoint at target for an answer to a fixed nonce, as
// an eavesdropper would, and returns the body.
func captured(t *testing.T, target string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + target + HealthPath + "?nonce=" + strings.Repeat("ab", NonceBytes))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("capture: %d %v", resp.StatusCode, err)
	}
	return b
}

// relay forwards every request, query included, to target and copies the
// answer back: a proxy on another port.
func relay(target string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get("http://" + target + r.URL.RequestURI())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}

func staticAnswer(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

func TestProbe(t *testing.T) {
	log, _ := newLog(t)
	p, err := New(Config{Key: testKey, ClusterName: testCluster, PollTimeout: 300 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(false) })

	// A real member's endpoint; its answers name its own address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := testMember()
	m.HealthPort = l.Addr().(*net.TCPAddr).Port
	real := &http.Server{Handler: NewHandler(testKey, m), ReadHeaderTimeout: time.Second}
	go func() { _ = real.Serve(l) }()
	t.Cleanup(func() { _ = real.Close() })
	realAddr := l.Addr().String()

	ctx := context.Background()
	got, err := p.Probe(ctx, realAddr)
	if err != nil || got.ID != m.ID {
		t.Fatalf("real member: %+v, %v", got, err)
	}

	wrongCookie, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Its own address, this cluster: only the cookie is wrong.
		other := m
		host, port, _ := net.SplitHostPort(r.Host)
		other.HealthHost = host
		other.HealthPort, _ = strconv.Atoi(port)
		NewHandler(otherKey, other).ServeHTTP(w, r)
	}))
	proxied, _ := serve(t, relay(realAddr))
	replayed, _ := serve(t, staticAnswer(captured(t, realAddr)))
	oldFormat, _ := serve(t, staticAnswer([]byte(`{"id":"fake","address":"127.0.0.1","port":8101,"auto_manage_port":6331,"kinds":["city-gotham"],"cluster_name":"superhero-0011223344556677"}`)))
	huge, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"v":1,"nonce":"`))
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for range 64 { // 4 MiB unless the reader stops early
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	notFound, _ := serve(t, http.NotFoundHandler())
	hanging, stopHanging := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer stopHanging()
	closed := addr(freePort(t))

	for _, tc := range []struct {
		name string
		addr string
		want error
	}{
		{"wrong cookie", wrongCookie, ErrBadMAC},
		{"proxied from another port", proxied, ErrWrongAddress},
		{"replayed answer", replayed, ErrStale},
		{"automanaged format", oldFormat, ErrMalformed},
		{"oversized answer", huge, ErrTooLarge},
		{"not a health endpoint", notFound, ErrStatus},
		{"hanging", hanging, errUnreachable},
		{"nothing listening", closed, errUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			got, err := p.Probe(ctx, tc.addr)
			if !errors.Is(err, tc.want) || got.ID != "" {
				t.Fatalf("Probe = %+v, %v; want %v", got, err, tc.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %v, want at most the poll timeout and a little", d)
			}
			t.Logf("%v", err)
		})
	}
}

func TestProviderAdmitsOnlyProvenMembers(t *testing.T) {
	before := runtime.NumGoroutine()
	log, logs := newLog(t)
	portA, portB, portC := freePort(t), freePort(t), freePort(t)

	// Fakes on peer slots: the old answer format, a captured real answer
	// replayed, a relay to B, a member with another cookie (C), and a slot
	// with nothing on it.
	oldFormat, stopOld := serve(t, staticAnswer([]byte(`{"id":"fake","address":"127.0.0.1","port":8101,"auto_manage_port":6331,"kinds":["kind-b"],"cluster_name":"superhero-0011223344556677"}`)))
	var replayBody []byte
	var replayMu sync.Mutex
	replay, stopReplay := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		replayMu.Lock()
		defer replayMu.Unlock()
		if replayBody == nil {
			http.Error(w, "nothing captured yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(replayBody)
	}))
	proxied, stopRelay := serve(t, relay(addr(portB)))
	free := addr(freePort(t))
	peers := []string{addr(portA), addr(portB), oldFormat, replay, proxied, addr(portC), free}

	b, recB := startProvider(t, "b", testKey, portB, peers, log)
	replayMu.Lock()
	replayBody = captured(t, addr(portB))
	replayMu.Unlock()
	a, recA := startProvider(t, "a", testKey, portA, peers, log)
	c, recC := startProvider(t, "c", otherKey, portC, peers, log)
	if a.HealthAddress() != addr(portA) {
		t.Fatalf("HealthAddress = %q, want %q", a.HealthAddress(), addr(portA))
	}

	want := []string{"a", "b"}
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		return slices.Equal(recA.ids(), want) && slices.Equal(recB.ids(), want)
	}, "a and b see each other")

	// For many rounds nobody else gets in, and C (another cookie) only
	// ever sees itself.
	startRounds := recA.count()
	testkit.AssertNever(t, 15*testRefresh, func() bool {
		return !slices.Equal(recA.ids(), want) || !slices.Equal(recB.ids(), want) || !slices.Equal(recC.ids(), []string{"c"})
	}, "a member that did not prove the cookie was admitted")
	if n := recA.count() - startRounds; n < 5 {
		t.Fatalf("only %d rounds in the window", n)
	}

	// Each refused address is logged once (window 30 s) by each poller,
	// with its reason; the free slot is not a rejection.
	for _, tc := range []struct{ addr, reason string }{
		{oldFormat, "malformed answer"},
		{replay, "answer to another challenge"},
		{proxied, "relayed"},
		{addr(portC), "MAC mismatch"},
	} {
		if n := logs.count("node=a", "refused health answer", "health="+tc.addr, tc.reason); n != 1 {
			t.Errorf("a logged the refusal of %s (%s) %d times, want once", tc.addr, tc.reason, n)
		}
	}
	if n := logs.count("refused health answer", "health="+free); n != 0 {
		t.Errorf("the free slot was logged as refused %d times", n)
	}
	if n := logs.count("node=c", "refused health answer", "health="+addr(portA), "MAC mismatch"); n != 1 {
		t.Errorf("c logged a's refusal %d times, want once", n)
	}
	for _, secret := range []string{"cookie-a", "cookie-b", hex.EncodeToString(testKey), hex.EncodeToString(otherKey)} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("secret material %q in the log", secret)
		}
	}

	// B leaves: A drops it at its next rounds.
	if err := b.Shutdown(true); err != nil {
		t.Fatal(err)
	}
	testkit.AwaitCondition(t, 3*time.Second, func() bool { return slices.Equal(recA.ids(), []string{"a"}) }, "b leaves a's topology")
	if n := logs.count("node=a", "member gone", "member_id=b"); n != 1 {
		t.Errorf("a logged b's departure %d times, want once", n)
	}

	// After Shutdown nothing more is published.
	for _, p := range []*Provider{a, b, c} {
		if err := p.Shutdown(true); err != nil {
			t.Fatal(err)
		}
	}
	done := recA.count()
	testkit.AssertNever(t, 4*testRefresh, func() bool { return recA.count() != done }, "a published after Shutdown")
	if _, err := net.Dial("tcp", addr(portA)); err == nil {
		t.Fatal("a's health endpoint still listens after Shutdown")
	}

	// Every goroutine of the providers and fakes ends.
	stopOld()
	stopReplay()
	stopRelay()
	http.DefaultClient.CloseIdleConnections()
	testkit.AwaitCondition(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "goroutines back to %d", before)
}

func TestProviderLifecycle(t *testing.T) {
	log, _ := newLog(t)
	p, err := New(Config{Key: testKey, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(false); err != nil {
		t.Fatalf("Shutdown before start: %v", err)
	}
	if err := p.start(&Member{ID: "x", Host: "127.0.0.1", Port: 1, Cluster: "c"}, func(cluster.Members) {}); err == nil {
		t.Fatal("start after Shutdown succeeded")
	}

	// A taken health port fails the start.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	p, err = New(Config{Key: testKey, Logger: log, HealthPort: taken.Addr().(*net.TCPAddr).Port})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.start(&Member{ID: "x", Host: "127.0.0.1", Port: 1, Cluster: "c"}, func(cluster.Members) {}); err == nil {
		t.Fatal("start on a taken health port succeeded")
	}
	if err := p.Shutdown(true); err != nil {
		t.Fatalf("Shutdown after a failed start: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no key", Config{}},
		{"short key", Config{Key: []byte("short")}},
		{"unspecified host", Config{Key: testKey, HealthHost: "0.0.0.0"}},
		{"host name", Config{Key: testKey, HealthHost: "example.com"}},
		{"bad port", Config{Key: testKey, HealthPort: 70000}},
		{"bad peer", Config{Key: testKey, Peers: []string{"127.0.0.1"}}},
		{"bad peer port", Config{Key: testKey, Peers: []string{"127.0.0.1:0"}}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	p, err := New(Config{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.HealthHost != DefaultHealthHost || p.cfg.RefreshInterval != DefaultRefreshInterval ||
		p.cfg.PollTimeout != DefaultPollTimeout || p.cfg.RejectLogWindow != DefaultRejectLogWindow {
		t.Fatalf("defaults not applied: %+v", p.cfg)
	}
}

func TestRejectLog(t *testing.T) {
	r := newRejectLog(time.Minute)
	t0 := time.Unix(1000, 0)
	if n, ok := r.allow("x", t0); !ok || n != 0 {
		t.Fatalf("first: %d %v", n, ok)
	}
	for i := range 3 {
		if _, ok := r.allow("x", t0.Add(time.Duration(i+1)*time.Second)); ok {
			t.Fatal("repeat within the window allowed")
		}
	}
	if _, ok := r.allow("y", t0.Add(time.Second)); !ok {
		t.Fatal("another address was held back")
	}
	if n, ok := r.allow("x", t0.Add(time.Minute)); !ok || n != 3 {
		t.Fatalf("after the window: %d %v, want 3 true", n, ok)
	}
	r.clear("x")
	if n, ok := r.allow("x", t0.Add(time.Minute+time.Second)); !ok || n != 0 {
		t.Fatalf("after clear: %d %v", n, ok)
	}
}
