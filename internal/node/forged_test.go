package node

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/membership"
)

// serveHealthFake serves h on 127.0.0.1:port until stop is called or the
// test ends.
func serveHealthFake(t *testing.T, port int, h http.Handler) (stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = srv.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// healthGet asks the health endpoint at addr with query and returns the
// body, as anyone on the host can.
func healthGet(t *testing.T, addr, query string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + membership.HealthPath + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goroutineLevel samples a member's goroutines over a few provider rounds
// and returns the lowest counts seen, so goroutines that come and go with
// each poll round do not count.
func goroutineLevel(c *child) (goroutines, redialers int) {
	goroutines, redialers = 1<<30, 1<<30
	tick := time.NewTicker(testRefresh / 3)
	defer tick.Stop()
	for range 10 {
		r := c.do(childCmd{Op: "goroutines"})
		goroutines, redialers = min(goroutines, r.Goroutines), min(redialers, r.Redialers)
		<-tick.C
	}
	return goroutines, redialers
}

// awaitGoroutineLevel waits until ok holds for dispatch's goroutine level
// and returns it; on time-out it fails the test with the last level seen.
func awaitGoroutineLevel(t *testing.T, c *child, within time.Duration, what string, ok func(g, r int) bool) (int, int) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		g, r := goroutineLevel(c)
		if ok(g, r) {
			return g, r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d goroutines, %d redialling gRPC connections after %v", what, g, r, within)
		}
	}
}

// TestForgedHealthMembersNeverAdmitted puts three forgeries on free peer
// slots, none holding the cookie: one answering in the automanaged format
// with the old cookie fingerprint (claiming both city kinds at a remote
// port nobody listens on), one replaying an answer captured from gotham, and
// one relaying every challenge to gotham's endpoint. None is ever admitted,
// the real members stay, no connection is ever dialled to a fake, and the
// goroutines of dispatch do not grow while they run, after they go, nor
// after real members leave (by crash and gracefully) while dispatch was
// dialling them.
func TestForgedHealthMembersNeverAdmitted(t *testing.T) {
	ports := freePorts(t, 10)
	// dispatch, gotham, metropolis; ports[6..8] are free peer slots the
	// fakes take; ports[9] is the fakes' claimed remote port.
	tc := newTestCluster(t, []int{ports[1], ports[3], ports[5], ports[6], ports[7], ports[8]})
	dispatchSpec := tc.spec("dispatch", ports[0], ports[1], "", "")
	dispatchSpec.ConnectAttempts = DefaultConnectAttempts // dials as in production
	cs := tc.startAll(
		dispatchSpec,
		tc.spec("gotham", ports[2], ports[3], "gotham", kindGotham),
		tc.spec("metropolis", ports[4], ports[5], "metropolis", kindMetropolis),
	)
	dispatch, gotham, metropolis := cs[0], cs[1], cs[2]
	members := []*child{dispatch, gotham, metropolis}
	realIDs := []string{dispatch.info.MemberID, gotham.info.MemberID, metropolis.info.MemberID}
	slices.Sort(realIDs)

	wholeCluster := func(c *child) bool {
		tp := c.topology()
		slices.Sort(tp.MemberIDs)
		return slices.Equal(tp.MemberIDs, realIDs) &&
			slices.Contains(tp.Kinds, kindGotham) && slices.Contains(tp.Kinds, kindMetropolis)
	}
	AwaitCondition(t, 15*time.Second, func() bool {
		for _, c := range members {
			if !wholeCluster(c) {
				return false
			}
		}
		return true
	}, "every member sees the three members")
	g0, r0 := goroutineLevel(dispatch)
	t.Logf("dispatch before the fakes: %d goroutines, %d redialling gRPC connections", g0, r0)

	// The health endpoint no longer serves anything derived from the
	// cookie but MACs over the caller's nonce: no fingerprint, no
	// automanaged answer without a challenge.
	gothamHealth := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[3]))
	fingerprint := strings.TrimPrefix(effectiveClusterName(DefaultClusterName, DefaultCookie), DefaultClusterName+"-")
	if b := healthGet(t, gothamHealth, ""); strings.Contains(string(b), fingerprint) || strings.Contains(string(b), gotham.info.MemberID) {
		t.Fatalf("unchallenged health request answered %q", b)
	}
	captured := healthGet(t, gothamHealth, "?nonce="+strings.Repeat("5a", membership.NonceBytes))
	if strings.Contains(string(captured), fingerprint) || !strings.Contains(string(captured), gotham.info.MemberID) {
		t.Fatalf("challenge answer %q: want gotham's id and no fingerprint", captured)
	}

	oldFormat, err := json.Marshal(map[string]any{
		"id": "forged", "address": "127.0.0.1", "port": ports[9], "auto_manage_port": ports[6],
		"kinds":        []string{kindGotham, kindMetropolis},
		"cluster_name": effectiveClusterName(DefaultClusterName, DefaultCookie),
	})
	if err != nil {
		t.Fatal(err)
	}
	stopOld := serveHealthFake(t, ports[6], http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(oldFormat)
	}))
	stopReplay := serveHealthFake(t, ports[7], http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(captured)
	}))
	stopRelay := serveHealthFake(t, ports[8], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get("http://" + gothamHealth + r.URL.RequestURI())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(w, resp.Body)
	}))
	fakes := map[string]string{
		"old format": net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[6])),
		"replay":     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[7])),
		"relay":      net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[8])),
	}

	// Every member polls and refuses every fake...
	AwaitCondition(t, 5*time.Second, func() bool {
		for _, c := range members {
			for _, addr := range fakes {
				if tc.sink.count("["+c.name+"]", "refused health answer", "health="+addr) == 0 {
					return false
				}
			}
		}
		return true
	}, "every member refused every fake")
	// ...for twenty rounds, while the cities stay reachable.
	AssertNever(t, 20*testRefresh, func() bool {
		for _, c := range members {
			if !wholeCluster(c) {
				return true
			}
		}
		return false
	}, "a fake was admitted or a real member dropped")
	for _, city := range []struct{ id, kind string }{{"gotham", kindGotham}, {"metropolis", kindMetropolis}} {
		if r := dispatch.request(city.id, city.kind, 3*time.Second); r.Err != "" || !strings.HasPrefix(r.City, city.id+"@") {
			t.Fatalf("dispatch -> %s while the fakes run: %q, %s", city.id, r.City, r.Err)
		}
	}
	for name, addr := range fakes {
		t.Logf("%s fake at %s: %d refusals logged by the three members", name, addr, tc.sink.count("refused health answer", "health="+addr))
	}
	if n := tc.sink.count("EndpointWriter", strconv.Itoa(ports[9])); n > 0 {
		t.Fatalf("a member dialled the fakes' claimed remote port (%d log lines)", n)
	}
	g1, r1 := goroutineLevel(dispatch)
	t.Logf("dispatch while the fakes run: %d goroutines, %d redialling", g1, r1)
	const bound = 8 // idle poll connections to the fakes and scheduling noise
	if g1 > g0+bound || r1 > r0 {
		t.Fatalf("goroutines while the fakes run: %d (redialling %d), before %d (%d)", g1, r1, g0, r0)
	}

	stopOld()
	stopReplay()
	stopRelay()
	g2, r2 := awaitGoroutineLevel(t, dispatch, 10*time.Second, "after the fakes left",
		func(g, r int) bool { return g <= g0+2 && r <= r0 })
	t.Logf("dispatch after the fakes left: %d goroutines, %d redialling", g2, r2)

	// A real member crashes while dispatch talks to it: requests right
	// after the crash, and a message to a PID of the crashed member (as a
	// stale cached PID would send), make dispatch's endpoint writer dial the
	// dead address ConnectAttempts times.
	metropolis.kill()
	for range 3 {
		_ = dispatch.request("metropolis", kindMetropolis, 300*time.Millisecond)
	}
	raw := childCmd{Op: "raw", Msg: "get_state", Address: metropolis.info.Address, PIDID: "gone", TimeoutM: 300}
	if r := dispatch.do(raw); r.Err == "" {
		t.Fatal("a crashed member answered")
	}
	AwaitCondition(t, 5*time.Second, func() bool { return !dispatch.hasKind(kindMetropolis) }, "metropolis leaves dispatch's topology")
	// The writer gives up after ConnectAttempts dials 2 s apart; then every
	// connection it opened must be closed.
	g3, r3 := awaitGoroutineLevel(t, dispatch, 20*time.Second, "after metropolis crashed",
		func(g, r int) bool { return g <= g0 && r == 0 })
	t.Logf("dispatch after metropolis crashed: %d goroutines, %d redialling", g3, r3)

	// Gotham leaves gracefully.
	stopAll(t, gotham)
	AwaitCondition(t, 5*time.Second, func() bool { return !dispatch.hasKind(kindGotham) }, "gotham leaves dispatch's topology")
	g4, r4 := awaitGoroutineLevel(t, dispatch, 20*time.Second, "after gotham left",
		func(g, r int) bool { return g <= g0 && r == 0 })
	t.Logf("dispatch after gotham left: %d goroutines, %d redialling", g4, r4)

	stopAll(t, dispatch)
}
