package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/superhero-cluster/superhero/internal/membership"
	"github.com/superhero-cluster/superhero/messages"
)

const testRefresh = 100 * time.Millisecond

var (
	kindGotham     = messages.CityKind("gotham")
	kindMetropolis = messages.CityKind("metropolis")
	kindBlackHole  = messages.CityKind("blackhole")
)

// cityKind is a trivial city: it answers GetState with "<city>@<address of
// the member hosting it>/<grain identity>".
func cityKind(city, kind string) *cluster.Kind {
	return cluster.NewKind(kind, actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*messages.GetState); ok {
			id := ""
			if ci := cluster.GetClusterIdentity(ctx); ci != nil {
				id = ci.Identity
			}
			ctx.Respond(&messages.State{City: city + "@" + ctx.ActorSystem().Address() + "/" + id, Heroes: 7})
		}
	}))
}

// testCluster orchestrates child-process members sharing one peer list.
type testCluster struct {
	t       *testing.T
	peers   []string
	sink    *logSink
	raceDir string
}

func newTestCluster(t *testing.T, healthPorts []int) *testCluster {
	_, sink := testLogger(t, slog.LevelInfo)
	tc := &testCluster{t: t, sink: sink, raceDir: t.TempDir()}
	for _, p := range healthPorts {
		tc.peers = append(tc.peers, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	// Registered first, so it runs after every child has exited.
	t.Cleanup(func() {
		ours, library := classifyRaceReports(t, tc.raceDir)
		for _, r := range ours {
			t.Errorf("data race involving this module:\n%s", r)
		}
		if len(library) > 0 {
			seen := map[string]int{}
			for _, r := range library {
				seen[r]++
			}
			for r, n := range seen {
				t.Logf("protoactor-go internal data race (%dx, not in this module): %s", n, r)
			}
		}
	})
	return tc
}

func (tc *testCluster) spec(name string, port, healthPort int, city, kind string) childSpec {
	return childSpec{
		Name: name, Port: port, HealthPort: healthPort, Peers: tc.peers,
		City: city, Kind: kind, RefreshMillis: int(testRefresh / time.Millisecond), ConnectAttempts: 1,
	}
}

// startAll starts the members concurrently (each start takes over 1 s).
func (tc *testCluster) startAll(specs ...childSpec) []*child {
	tc.t.Helper()
	out := make([]*child, len(specs))
	errs := make([]string, len(specs))
	var wg sync.WaitGroup
	for i, sp := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, r := startChildNoFatal(tc.t, tc.sink, tc.raceDir, sp)
			out[i] = c
			if !r.Ready {
				errs[i] = fmt.Sprintf("%s: %s", sp.Name, r.Err)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			tc.t.Fatalf("start failed: %s", e)
		}
	}
	return out
}

func stopAll(t *testing.T, cs ...*child) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch r := c.do(childCmd{Op: "stop"}); {
			case r.is("shutdown_panic"):
				// The library's own shutdown race (a send on a channel
				// its remote closed), recovered, logged and reported
				// as documented: not this module's failure.
				t.Logf("stop %s: %s", c.name, r.Err)
			case r.Err != "":
				t.Errorf("stop %s: %s", c.name, r.Err)
			}
			c.close()
		}()
	}
	wg.Wait()
}

func TestCluster(t *testing.T) {
	ports := freePorts(t, 9)
	// dispatch, gotham, metropolis, intruder; ports[8] is a black-hole member.
	tc := newTestCluster(t, []int{ports[1], ports[3], ports[5], ports[7]})
	blackHealth, stopBlackHole := serveBlackHoleMember(t, ports[8])
	tc.peers = append(tc.peers, blackHealth)

	cs := tc.startAll(
		tc.spec(messages.DispatchName, ports[0], ports[1], "", ""),
		tc.spec("gotham", ports[2], ports[3], "gotham", kindGotham),
		tc.spec("metropolis", ports[4], ports[5], "metropolis", kindMetropolis),
	)
	dispatch, gotham, metropolis := cs[0], cs[1], cs[2]
	members := []*child{dispatch, gotham, metropolis}

	AwaitCondition(t, 15*time.Second, func() bool {
		for _, c := range members {
			tp := c.topology()
			if !slices.Contains(tp.Kinds, kindGotham) || !slices.Contains(tp.Kinds, kindMetropolis) || len(tp.MemberIDs) < 3 {
				return false
			}
		}
		return true
	}, "all members see both city kinds")

	t.Run("request routes to the member hosting the kind", func(t *testing.T) {
		for _, from := range members {
			r := from.request("gotham", kindGotham, 5*time.Second)
			if want := "gotham@" + gotham.info.Address + "/gotham"; r.Err != "" || r.City != want {
				t.Fatalf("%s -> gotham: %q, %s; want %q", from.name, r.City, r.Err, want)
			}
			r = from.request("metropolis", kindMetropolis, 5*time.Second)
			if want := "metropolis@" + metropolis.info.Address + "/metropolis"; r.Err != "" || r.City != want {
				t.Fatalf("%s -> metropolis: %q, %s; want %q", from.name, r.City, r.Err, want)
			}
		}
		if r := dispatch.do(childCmd{Op: "send", Identity: "gotham", Kind: kindGotham, TimeoutM: 1000}); r.Err != "" {
			t.Fatalf("one-way send: %s", r.Err)
		}
		// Straight to a named actor beside the grain, without the grain.
		if r := dispatch.do(childCmd{Op: "send_to_actor", Identity: "gotham", Kind: kindGotham, PIDID: probeActor, TimeoutM: 1000}); r.Err != "" {
			t.Fatalf("send to actor: %s", r.Err)
		}
		AwaitCondition(t, 5*time.Second, func() bool { return gotham.do(childCmd{Op: "received"}).Received == 1 },
			"gotham's probe actor takes the message")
		if got := metropolis.do(childCmd{Op: "received"}).Received; got != 0 {
			t.Fatalf("metropolis's probe actor took %d messages meant for gotham's", got)
		}
		if r := dispatch.do(childCmd{Op: "send_to_actor", Identity: "capitol", Kind: messages.CityKind("capitol"), PIDID: probeActor, TimeoutM: 1000}); !r.is("kind_unavailable") {
			t.Fatalf("send to an actor of a kind no member hosts: %+v, want kind_unavailable", r)
		}
		if r := dispatch.do(childCmd{Op: "wrong_type", Identity: "gotham", Kind: kindGotham, TimeoutM: 1000}); !r.is("unexpected_reply") {
			t.Fatalf("typed request with wrong reply type: %+v, want unexpected_reply", r)
		}
	})

	t.Run("unknown kind fails fast", func(t *testing.T) {
		r := dispatch.request("capitol", messages.CityKind("capitol"), 5*time.Second)
		if !r.is("kind_unavailable") {
			t.Fatalf("%+v, want kind_unavailable", r)
		}
		if r.ElapsedMS > 50 {
			t.Fatalf("took %.1f ms, want immediate", r.ElapsedMS)
		}
	})

	t.Run("wrong cookie", func(t *testing.T) {
		sp := tc.spec("intruder", ports[6], ports[7], "intruder", kindGotham)
		sp.Cookie = "not-the-cookie"
		// It even claims to host gotham's kind, trying to take its traffic.
		intruder := tc.startAll(sp)[0]
		defer stopAll(t, intruder)

		if intruder.info.ClusterName == dispatch.info.ClusterName {
			t.Fatal("different cookies produced the same cluster name")
		}
		// The intruder only ever sees itself...
		AwaitCondition(t, 5*time.Second, func() bool {
			ids := intruder.topology().MemberIDs
			return len(ids) == 1 && ids[0] == intruder.info.MemberID
		}, "intruder sees itself")
		// ...and nobody accepts it, although its health endpoint is in
		// everybody's peer list and polled every 100 ms.
		AssertNever(t, 1500*time.Millisecond, func() bool {
			for _, c := range members {
				if slices.Contains(c.topology().MemberIDs, intruder.info.MemberID) {
					return true
				}
			}
			return len(intruder.topology().MemberIDs) != 1
		}, "a member with another cookie joined the topology")
		// Gotham traffic still goes to gotham only (were the intruder a
		// member, rendezvous hashing would send about half of it there).
		for i := range 10 {
			id := fmt.Sprintf("gotham-%d", i)
			r := dispatch.request(id, kindGotham, 3*time.Second)
			if want := "gotham@" + gotham.info.Address + "/" + id; r.Err != "" || r.City != want {
				t.Fatalf("%s: %q, %s; want %q", id, r.City, r.Err, want)
			}
		}
		// Through the cluster API the intruder cannot reach the city at all.
		if r := intruder.request("metropolis", kindMetropolis, time.Second); !r.is("kind_unavailable") {
			t.Fatalf("intruder cluster request: %+v, want kind_unavailable", r)
		}
		// Bypassing membership, straight to the city's placement actor and
		// to a live grain: the city's remote refuses the connection.
		grain := dispatch.do(childCmd{Op: "resolve", Identity: "metropolis", Kind: kindMetropolis, TimeoutM: 2000})
		if grain.Err != "" {
			t.Fatalf("dispatch resolve: %s", grain.Err)
		}
		activation := childCmd{Op: "raw", Msg: "activation", Identity: "metropolis", Kind: kindMetropolis,
			Address: metropolis.info.Address, PIDID: disthash.PartitionActivatorActorName, TimeoutM: 800}
		if r := dispatch.do(activation); r.Err != "" {
			t.Fatalf("control: same-cookie raw activation failed: %s", r.Err)
		}
		if r := intruder.do(activation); r.Err == "" {
			t.Fatalf("intruder got an activation answer from the city: %s", r.City)
		}
		getState := childCmd{Op: "raw", Msg: "get_state", Address: grain.PIDAddress, PIDID: grain.PIDID, TimeoutM: 800}
		if r := dispatch.do(getState); r.Err != "" {
			t.Fatalf("control: same-cookie raw GetState failed: %s", r.Err)
		}
		if r := intruder.do(getState); r.Err == "" {
			t.Fatalf("intruder got a GetState answer from the city: %s", r.City)
		}
		AwaitCondition(t, 5*time.Second, func() bool {
			return tc.sink.count("[metropolis]", "rejected remote connection: cookie check failed", "reason=\"cookie mismatch\"") > 0
		}, "metropolis logged the rejected connection")
		if n := tc.sink.count("not-the-cookie"); n > 0 {
			t.Fatalf("cookie appeared in %d log lines", n)
		}
	})

	t.Run("caller deadline holds against a hanging member", func(t *testing.T) {
		// The black-hole member is in the topology (valid health answer) but
		// its remote port accepts TCP and never answers: the library would
		// wait on it far longer than the caller's deadline.
		AwaitCondition(t, 5*time.Second, func() bool { return dispatch.hasKind(kindBlackHole) }, "black-hole member in topology")
		const deadline = 700 * time.Millisecond
		for range 2 {
			r := dispatch.request("nowhere", kindBlackHole, deadline)
			if !r.is("timeout") || !r.is("ctx_deadline") {
				t.Fatalf("%+v, want timeout", r)
			}
			if d := time.Duration(r.ElapsedMS * float64(time.Millisecond)); d < deadline-50*time.Millisecond || d > deadline+500*time.Millisecond {
				t.Fatalf("returned after %s, want about %s", d, deadline)
			}
			t.Logf("black-hole request returned after %.1f ms: %s", r.ElapsedMS, r.Err)
		}
		// Remove it: members' dialers give up and it leaves the topology.
		stopBlackHole()
		AwaitCondition(t, 5*time.Second, func() bool { return !dispatch.hasKind(kindBlackHole) }, "black-hole member leaves")
	})

	t.Run("caller deadline holds when the target member is gone", func(t *testing.T) {
		// Crash gotham (SIGKILL: no graceful leave) and ask for it at once,
		// while the others' topology still lists it.
		gotham.kill()
		const deadline = time.Second
		for _, from := range []*child{dispatch, metropolis} {
			r := from.request("gotham", kindGotham, deadline)
			if r.Err == "" {
				t.Fatalf("%s: request to a crashed member succeeded", from.name)
			}
			if r.ElapsedMS > float64((deadline+500*time.Millisecond)/time.Millisecond) {
				t.Fatalf("%s: returned after %.1f ms, deadline %s", from.name, r.ElapsedMS, deadline)
			}
			t.Logf("%s -> crashed gotham: %.1f ms: %s", from.name, r.ElapsedMS, r.Err)
		}
		// The departure is noticed quickly; then requests fail at once.
		AwaitCondition(t, 5*time.Second, func() bool {
			return !dispatch.hasKind(kindGotham) && !metropolis.hasKind(kindGotham)
		}, "gotham kind leaves the topology")
		if r := dispatch.request("gotham", kindGotham, 5*time.Second); !r.is("kind_unavailable") || r.ElapsedMS > 50 {
			t.Fatalf("%+v, want kind_unavailable at once", r)
		}
	})

	t.Run("restarted member is reachable on its first request", func(t *testing.T) {
		again := tc.startAll(tc.spec("gotham", ports[2], ports[3], "gotham", kindGotham))[0]
		defer stopAll(t, again)
		AwaitCondition(t, 5*time.Second, func() bool { return dispatch.hasKind(kindGotham) }, "gotham back in topology")
		r := dispatch.request("gotham", kindGotham, 5*time.Second)
		if want := "gotham@" + again.info.Address + "/gotham"; r.Err != "" || r.City != want {
			t.Fatalf("first request after restart: %q, %s; want %q", r.City, r.Err, want)
		}
		t.Logf("first request after restart took %.1f ms", r.ElapsedMS)
	})

	stopAll(t, dispatch, metropolis)
}

// serveBlackHoleMember fakes a cluster member that holds the cookie: a
// health endpoint advertising kind kindBlackHole at a remote address whose
// listener accepts connections and never answers. It returns the health address and a
// function that shuts the fake member down (idempotent).
func serveBlackHoleMember(t *testing.T, healthPort int) (string, func()) {
	t.Helper()
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()

	// It holds the cookie, so its health answers verify.
	holePort := hole.Addr().(*net.TCPAddr).Port
	health := membership.NewHandler(membership.DeriveKey(DefaultCookie), membership.Member{
		ID: "blackhole", Host: "127.0.0.1", Port: holePort, HealthHost: "127.0.0.1", HealthPort: healthPort,
		Kinds: []string{kindBlackHole}, Cluster: DefaultClusterName,
	})
	hl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(healthPort)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: health, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(hl) }()

	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			_ = srv.Close()
			_ = hole.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				_ = c.Close()
			}
		})
	}
	t.Cleanup(shutdown)
	return hl.Addr().String(), shutdown
}

func TestStartPortInUse(t *testing.T) {
	logger, _ := testLogger(t, slog.LevelInfo)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().(*net.TCPAddr).Port
	free := freePorts(t, 2)

	for _, tc := range []struct {
		name             string
		port, healthPort int
	}{
		{"remote port taken", busy, free[0]},
		{"health port taken", free[1], busy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig("gotham")
			cfg.Port, cfg.HealthPort = tc.port, tc.healthPort
			var n *Node
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("Start panicked: %v", r)
					}
				}()
				n, err = Start(context.Background(), cfg, logger, cityKind("gotham", kindGotham))
			}()
			if !errors.Is(err, ErrPortInUse) || n != nil {
				t.Fatalf("Start = %v, %v; want nil, ErrPortInUse", n, err)
			}
			t.Logf("error: %v", err)
		})
	}

	cfg := DefaultConfig("")
	if _, err := Start(context.Background(), cfg, logger); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
}
