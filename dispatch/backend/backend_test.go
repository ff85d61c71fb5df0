package backend_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/backend"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/testkit"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// recorder is a service.Publisher that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []service.Event
}

func (r *recorder) Publish(ev service.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// shownDown reports whether a published cluster event showed city c down.
func (r *recorder) shownDown(c crdt.Location) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Kind != service.KindCluster {
			continue
		}
		for _, s := range ev.Cluster.Cities {
			if s.Name == c && !s.Up {
				return true
			}
		}
	}
	return false
}

// deltas returns every entry published in delta events, in order.
func (r *recorder) deltas() []crdt.Hero {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []crdt.Hero
	for _, ev := range r.events {
		if ev.Kind == service.KindDelta {
			out = append(out, ev.Heroes...)
		}
	}
	return out
}

// heroesSeen counts the distinct heroes published live.
func (r *recorder) heroesSeen() int {
	seen := map[uuid.UUID]bool{}
	for _, h := range r.deltas() {
		if !h.Dead {
			seen[h.ID] = true
		}
	}
	return len(seen)
}

func (r *recorder) flashes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if ev.Kind == service.KindFlash {
			out = append(out, ev.Message)
		}
	}
	return out
}

// fastGossip makes dispatch's gossip and poll run every few milliseconds.
var fastGossip = func(rc *replication.Config) {
	rc.GossipInterval, rc.PollInterval = 5*time.Millisecond, 7*time.Millisecond
}

// newBackend starts dispatch's replica actor and Backend over fake cities.
// Options adjust the replication policy (default: the production preset,
// gossip every second).
func newBackend(t *testing.T, cities *fakeCities, opts ...func(*replication.Config)) (*backend.Backend, *backend.Replica, *recorder) {
	t.Helper()
	return newBackendWith(t, cities, setup{replication: opts})
}

// setup adjusts newBackendWith.
type setup struct {
	// replication adjusts the replication policy.
	replication []func(*replication.Config)
	// stats receives the replica's counters (default: its own).
	stats *backend.ReplicaStats
	// wrap wraps the cities the Backend requests (default: as they are).
	wrap func(backend.Cities) backend.Cities
}

// newBackendWith is newBackend with more to adjust.
func newBackendWith(t *testing.T, cities *fakeCities, su setup) (*backend.Backend, *backend.Replica, *recorder) {
	t.Helper()
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	pub := &recorder{}
	rc := replication.DefaultDispatchConfig(messages.DispatchName)
	rc.Seed = 1
	for _, o := range su.replication {
		o(&rc)
	}
	net := &fakeNet{f: cities, start: time.Now()}
	replica, group, err := backend.SpawnReplica(system, backend.ReplicaConfig{
		Clock:       crdt.NewClock(messages.DispatchName, func() int64 { return time.Now().UnixNano() }),
		Rules:       city.DefaultConfig(),
		Replication: rc,
		Transport:   net,
		Publish:     func(d crdt.Delta) { pub.Publish(service.DeltaEvent(d)) },
		Logger:      logx.Test(t),
		Stats:       su.stats,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := group.Child(messages.DispatchReplicaChild).Id, messages.DispatchReplicaActor; got != want {
		// Replication messages are addressed to this name (wire.EngineActor).
		t.Fatalf("replica actor is %q, want %q", got, want)
	}
	deliver := replica.Deliver
	net.deliver.Store(&deliver)
	t.Cleanup(group.Stop)
	var bc backend.Cities = cities
	if su.wrap != nil {
		bc = su.wrap(bc)
	}
	b := backend.New(backend.Config{Logger: logx.Test(t), Seed: 1, StatusInterval: 10 * time.Millisecond}, replica, bc, pub)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// A new dispatch answers "catching up" until it has read a city.
	testkit.AwaitCondition(t, 5*time.Second, replica.Ready, "dispatch never caught up")
	return b, replica, pub
}

func newID(t *testing.T) uuid.UUID {
	t.Helper()
	id, err := uuid.NewRandom()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// status waits for the probed status to satisfy cond and returns it.
func status(t *testing.T, b *backend.Backend, what string, cond func(map[crdt.Location]service.CityStatus, service.ClusterStatus) bool) service.ClusterStatus {
	t.Helper()
	var cs service.ClusterStatus
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		cs = b.Cluster(context.Background())
		byName := map[crdt.Location]service.CityStatus{}
		for _, c := range cs.Cities {
			byName[c.Name] = c
		}
		return cond(byName, cs)
	}, what)
	return cs
}

func TestBackendWritesReachTheCities(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis, crdt.Capitol)
	b, _, _ := newBackend(t, cities)
	ctx := context.Background()
	h, err := b.Create(ctx, "Nova")
	if err != nil || h.Location != crdt.Home || h.Health != crdt.MaxHealth {
		t.Fatalf("create: %+v %v", h, err)
	}
	// Pushed to every city within the coalescing window.
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		cities.mu.Lock()
		defer cities.mu.Unlock()
		for _, s := range cities.servers {
			if _, ok := s.Replica().Get(h.ID); !ok {
				return false
			}
		}
		return true
	}, "create not pushed to every city")

	got, err := b.Assign(ctx, h.ID, crdt.Metropolis)
	if err != nil || got.Location != crdt.Metropolis || got.Stamp.Node != "metropolis" {
		t.Fatalf("assign to metropolis: %+v %v", got, err)
	}
	if mine, _ := b.Hero(h.ID); mine.Location != crdt.Metropolis {
		t.Fatalf("dispatch did not adopt the city's answer: %+v", mine)
	}
	home, err := b.Assign(ctx, h.ID, crdt.Home)
	if err != nil || home.Location != crdt.Home || home.Stamp.Node != messages.DispatchName {
		t.Fatalf("assign home: %+v %v", home, err)
	}
}

func TestBackendErrors(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis)
	b, _, pub := newBackend(t, cities)
	ctx := context.Background()
	h, _ := b.Create(ctx, "Doomed")
	if err := b.Delete(ctx, h.ID); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"assign dead", second(b.Assign(ctx, h.ID, crdt.Gotham)), crdt.ErrDead},
		{"assign dead home", second(b.Assign(ctx, h.ID, crdt.Home)), crdt.ErrDead},
		{"assign unknown", second(b.Assign(ctx, uuid.New(), crdt.Gotham)), crdt.ErrUnknown},
		{"assign unknown city", second(b.Assign(ctx, h.ID, "atlantis")), service.ErrUnknownCity},
		{"delete unknown", b.Delete(ctx, uuid.New()), crdt.ErrUnknown},
		{"bomb unknown city", second(b.Bomb(ctx, "atlantis")), service.ErrUnknownCity},
		{"replica of unknown city", second(b.CityHeroes(ctx, "atlantis")), service.ErrUnknownCity},
		// capitol is a known city of the original that is not up.
		{"bomb down city", second(b.Bomb(ctx, crdt.Capitol)), service.ErrCityDown},
		{"assign to down city", second(b.Assign(ctx, uuid.New(), crdt.Capitol)), service.ErrCityDown},
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if err := b.Delete(ctx, h.ID); err != nil {
		t.Errorf("deleting a dead hero again: %v", err)
	}
	if len(pub.flashes()) != 0 {
		t.Errorf("failed bombs flashed: %v", pub.flashes())
	}
}

func second[T any](_ T, err error) error { return err }

func TestBackendClusterStatus(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis)
	b, _, _ := newBackend(t, cities)
	ctx := context.Background()
	cities.write(t, crdt.Gotham, 3)

	status(t, b, "gotham and metropolis up and diverged, capitol (known, never seen) down", func(by map[crdt.Location]service.CityStatus, cs service.ClusterStatus) bool {
		return len(cs.Cities) == 3 && cs.Ready && by[crdt.Gotham].Up && !by[crdt.Capitol].Up && !cs.InSync && by[crdt.Gotham].Heroes == 3 &&
			// Metropolis is behind the city with more heroes.
			by[crdt.Metropolis].Lag > 0 && by[crdt.Gotham].Lag == 0
	})

	// A bomb marks the city restarting.
	c, err := b.Bomb(ctx, crdt.Gotham)
	if err != nil || c != crdt.Gotham {
		t.Fatalf("bomb: %v %v", c, err)
	}
	status(t, b, "bombed gotham restarting", func(by map[crdt.Location]service.CityStatus, _ service.ClusterStatus) bool {
		return by[crdt.Gotham].Restarting
	})

	cities.setDown(crdt.Metropolis, true)
	status(t, b, "metropolis failing its status request shown down", func(by map[crdt.Location]service.CityStatus, _ service.ClusterStatus) bool {
		return !by[crdt.Metropolis].Up
	})
	// Known to be unreachable: answered at once, without a request.
	if _, err := b.Assign(ctx, uuid.New(), crdt.Metropolis); !errors.Is(err, service.ErrCityDown) {
		t.Fatalf("assign to an unreachable city: %v", err)
	}
}

// TestOneLateStatusIsNotDown: a city that misses one status deadline (a
// moment without CPU) stays up for the pages and for commands; two in a
// row show it down, and the next answer shows it up again.
func TestOneLateStatusIsNotDown(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis)
	b, _, pub := newBackend(t, cities)
	status(t, b, "both up", func(by map[crdt.Location]service.CityStatus, _ service.ClusterStatus) bool {
		return by[crdt.Gotham].Up && by[crdt.Metropolis].Up
	})
	gothamDown := func() bool { return pub.shownDown(crdt.Gotham) }
	for range 5 {
		cities.setLate(crdt.Gotham, 1)
		testkit.AwaitCondition(t, 5*time.Second, func() bool { return cities.lateLeft(crdt.Gotham) == 0 }, "the late probe sent")
		// The probe after the late one answers: gotham was never down.
		status(t, b, "the next probe answered", func(by map[crdt.Location]service.CityStatus, _ service.ClusterStatus) bool { return by[crdt.Gotham].Up })
		if _, err := b.Bomb(context.Background(), crdt.Gotham); err != nil {
			t.Fatalf("a command to gotham after one late probe: %v", err)
		}
	}
	if gothamDown() {
		t.Fatal("gotham shown down after single late status requests")
	}
	cities.setLate(crdt.Gotham, 2)
	testkit.AwaitCondition(t, 5*time.Second, gothamDown, "gotham shown down after two late probes in a row")
	status(t, b, "gotham up again once it answers", func(by map[crdt.Location]service.CityStatus, _ service.ClusterStatus) bool { return by[crdt.Gotham].Up })
}

// TestSlowStatusWaitsLonger: after a city misses its status deadline,
// dispatch waits longer for the next answer (it may be dispatch that is
// slow), so a city answering in 1.25 deadlines twice in a row stays up; a
// city that never answers is still shown down.
func TestSlowStatusWaitsLonger(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis)
	b, _, pub := newBackend(t, cities)
	status(t, b, "both up", func(by map[crdt.Location]service.CityStatus, _ service.ClusterStatus) bool {
		return by[crdt.Gotham].Up && by[crdt.Metropolis].Up
	})
	// The backend's first deadline is the default 200 ms.
	before := cities.probes(crdt.Gotham)
	cities.setSlow(crdt.Gotham, 2, 250*time.Millisecond)
	// Rounds run one after the other: once a third request has returned,
	// both slow ones have been judged.
	testkit.AwaitCondition(t, 5*time.Second, func() bool { return cities.probes(crdt.Gotham) >= before+3 }, "both slow probes and the next one returned")
	if pub.shownDown(crdt.Gotham) {
		t.Fatal("gotham shown down after answering late twice, the second time within the lengthened deadline (400 ms)")
	}
	cities.setLate(crdt.Gotham, 2)
	testkit.AwaitCondition(t, 5*time.Second, func() bool { return pub.shownDown(crdt.Gotham) }, "gotham shown down after two missed probes")
}

// TestClusterReadsSendNothing: GET /api/cluster and page snapshots read the
// last probed status; they never ask a city.
func TestClusterReadsSendNothing(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham)
	b, _, _ := newBackend(t, cities)
	status(t, b, "gotham up", func(by map[crdt.Location]service.CityStatus, _ service.ClusterStatus) bool { return by[crdt.Gotham].Up })
	cities.mu.Lock()
	cities.down[crdt.Gotham] = true // the probe loop now fails, but reads must not ask
	before := cities.calls
	cities.mu.Unlock()
	for range 100 {
		b.Cluster(context.Background())
		b.LastStatus()
	}
	cities.mu.Lock()
	after := cities.calls
	cities.mu.Unlock()
	// The status loop may probe a few times meanwhile; 100 reads asking
	// would add 100.
	if after-before >= 50 {
		t.Fatalf("100 status reads made %d requests", after-before)
	}
}

// TestGossipSpreadsACityWriteEverywhere: a write only one city holds
// reaches dispatch's replica, the pages and the other cities through
// dispatch's engine alone (the fake cities run no timers of their own).
func TestGossipSpreadsACityWriteEverywhere(t *testing.T) {
	for _, proto := range []replication.Protocol{replication.ProtocolDefault, replication.ProtocolOriginal} {
		t.Run(string(proto), func(t *testing.T) {
			cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis, crdt.Capitol)
			cities.write(t, crdt.Gotham, 5)
			b, _, pub := newBackend(t, cities, fastGossip, func(rc *replication.Config) {
				if proto == replication.ProtocolOriginal {
					g, p := rc.GossipInterval, rc.PollInterval
					*rc = replication.OriginalDispatchConfig(messages.DispatchName)
					rc.GossipInterval, rc.PollInterval = g, p
				}
			})
			testkit.AwaitCondition(t, 10*time.Second, func() bool {
				hs, err := b.Heroes()
				return err == nil && cities.converged() && len(hs) == 5
			}, "gossip did not spread gotham's writes")
			testkit.AwaitCondition(t, 5*time.Second, func() bool { return pub.heroesSeen() == 5 }, "the pages were not told")
		})
	}
}

// TestChangesArePublishedInOrder runs deletes against concurrent newer
// writes from a city and checks the stream the pages get: a hero is never
// live after its tombstone. Dispatch used to publish after unlocking its
// store, so a merge could reach the pages after a later delete.
func TestChangesArePublishedInOrder(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham)
	b, replica, pub := newBackend(t, cities)
	ctx := context.Background()
	city := crdt.NewReplica(crdt.NewClock("gotham", func() int64 { return time.Now().UnixNano() }))
	const n = 200
	var ids []uuid.UUID
	for range n {
		h, err := b.Create(ctx, "Racer")
		if err != nil {
			t.Fatal(err)
		}
		city.Merge(crdt.Delta{Heroes: []crdt.Hero{h}})
		ids = append(ids, h.ID)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for _, id := range ids {
			if err := b.Delete(ctx, id); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for _, id := range ids {
			_, d, err := city.Update(id, func(h *crdt.Hero) { h.Patrolling = true })
			if err != nil {
				t.Error(err)
				return
			}
			p, err := wire.Encode(replication.Message{Kind: replication.MsgPush, From: "gotham", Delta: d})
			if err != nil {
				t.Error(err)
				return
			}
			replica.Deliver(p)
		}
	}()
	wg.Wait()
	// A call queues behind every push delivered before it.
	if _, err := replica.Heroes(); err != nil {
		t.Fatal(err)
	}
	dead := map[uuid.UUID]bool{}
	for _, h := range pub.deltas() {
		if h.Dead {
			dead[h.ID] = true
		} else if dead[h.ID] {
			t.Fatalf("%s published live after its tombstone", h.ID)
		}
	}
	if len(dead) != n {
		t.Fatalf("%d tombstones published, want %d", len(dead), n)
	}
}

// gatedCities holds every GetState until the gate opens, and counts them.
type gatedCities struct {
	backend.Cities
	gate   chan struct{}
	states atomic.Int64
}

func (g *gatedCities) Request(ctx context.Context, c crdt.Location, msg proto.Message) (proto.Message, error) {
	if _, ok := msg.(*messages.GetState); ok {
		g.states.Add(1)
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Cities.Request(ctx, c, msg)
}

// Concurrent readers of a city share one read of its replica, each gets
// the whole answer, and a reader that gives up does not fail the others.
func TestCityReadsAreShared(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis)
	gated := &gatedCities{gate: make(chan struct{})}
	b, _, _ := newBackendWith(t, cities, setup{wrap: func(c backend.Cities) backend.Cities {
		gated.Cities = c
		return gated
	}})
	for i := range 3 {
		if _, err := b.Create(context.Background(), fmt.Sprintf("Shared %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	testkit.AwaitCondition(t, 5*time.Second, func() bool { return cities.converged() }, "cities hold the creates")

	// One reader gives up at once: its flight goes on for the others.
	quick, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.CityHeroes(quick, crdt.Gotham); !errors.Is(err, service.ErrCityDown) {
		t.Fatalf("cancelled reader: %v", err)
	}
	const readers = 20
	var wg sync.WaitGroup
	counts := make([]int, readers)
	errs := make([]error, readers)
	for i := range readers {
		wg.Go(func() {
			hs, err := b.CityHeroes(context.Background(), crdt.Gotham)
			counts[i], errs[i] = len(hs), err
		})
	}
	testkit.AwaitCondition(t, 5*time.Second, func() bool { return gated.states.Load() >= 1 }, "a read reached the city")
	close(gated.gate)
	wg.Wait()
	for i := range readers {
		if errs[i] != nil || counts[i] != 3 {
			t.Fatalf("reader %d: %d heroes, %v", i, counts[i], errs[i])
		}
	}
	if n := gated.states.Load(); n > readers/2 {
		t.Fatalf("%d readers made %d reads of the city, want them shared", readers, n)
	}
	t.Logf("%d concurrent readers (and one that gave up): %d reads of the city", readers, gated.states.Load())
}
