package cityactor_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/testkit"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/locations/cityactor"
	"github.com/superhero-cluster/superhero/messages"
)

const wait = 5 * time.Second

// testLogger routes log lines to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// quietRules keeps the timers out of the way of assertions.
var quietRules = city.Config{PatrolInterval: time.Hour, FightInterval: time.Hour}

func spawnCity(t *testing.T, cfg cityactor.Config) (*actor.ActorSystem, *cityactor.City) {
	t.Helper()
	system := actor.NewActorSystem()
	if cfg.City == "" {
		cfg.City = crdt.Gotham
	}
	if cfg.Clock == nil {
		cfg.Clock = crdt.NewClock(string(cfg.City), func() int64 { return time.Now().UnixNano() })
	}
	cfg.Logger = testLogger(t)
	c, err := cityactor.Spawn(system, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		system.Shutdown()
	})
	return system, c
}

// seed returns a delta holding one fresh hero written by dispatch.
func seed(t *testing.T) (crdt.Hero, []byte) {
	t.Helper()
	r := crdt.NewReplica(crdt.NewClock(messages.DispatchName, func() int64 { return time.Now().UnixNano() }))
	h, d, err := r.Create(uuid.New(), "Test Hero")
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return h, b
}

func state(t *testing.T, p *testkit.TestProbe, pid *actor.PID) *messages.State {
	t.Helper()
	p.Send(pid, &messages.GetState{})
	return testkit.ExpectMessageOf[*messages.State](t, p, wait)
}

func TestCityMergesAndAssigns(t *testing.T) {
	system, c := spawnCity(t, cityactor.Config{Rules: quietRules})
	p := testkit.NewTestProbe(t, system)
	hero, delta := seed(t)

	p.Send(c.State(), &messages.MergeDelta{Delta: delta, From: messages.DispatchName})
	if ack := testkit.ExpectMessageOf[*messages.MergeAck](t, p, wait); ack.Changed != 1 {
		t.Fatalf("changed = %d, want 1", ack.Changed)
	}
	if got, want := c.State().Id, messages.CityStateActor("gotham"); got != want {
		// Replication messages are addressed to this name (wire.EngineActor).
		t.Fatalf("state actor is %q, want %q", got, want)
	}
	if st := state(t, p, c.State()); st.Heroes != 1 || st.City != "gotham" || st.Incarnation != 1 {
		t.Fatalf("state = %+v", st)
	}

	p.Send(c.State(), &messages.AssignHero{HeroId: hero.ID.String()})
	reply := testkit.ExpectMessageOf[*messages.AssignReply](t, p, wait)
	if reply.Error != messages.AssignError_ASSIGN_OK {
		t.Fatalf("assign: %v %s", reply.Error, reply.Message)
	}
	var d crdt.Delta
	if err := d.UnmarshalBinary(reply.Delta); err != nil || d.Len() != 1 {
		t.Fatalf("assign delta: %v, %d entries", err, d.Len())
	}
	if got := d.Heroes[0]; got.Location != crdt.Gotham || got.Health != crdt.MaxHealth || got.Patrolling {
		t.Fatalf("assigned hero = %+v", got)
	}

	p.Send(c.State(), &messages.AssignHero{HeroId: uuid.NewString()})
	if r := testkit.ExpectMessageOf[*messages.AssignReply](t, p, wait); r.Error != messages.AssignError_ASSIGN_UNKNOWN {
		t.Fatalf("unknown hero: got %v", r.Error)
	}
	p.Send(c.State(), &messages.AssignHero{HeroId: "not-a-uuid"})
	if r := testkit.ExpectMessageOf[*messages.AssignReply](t, p, wait); r.Error != messages.AssignError_ASSIGN_BAD_REQUEST {
		t.Fatalf("bad id: got %v", r.Error)
	}
}

func TestAssignDeadHeroAnswersAtOnce(t *testing.T) {
	system, c := spawnCity(t, cityactor.Config{Rules: quietRules})
	p := testkit.NewTestProbe(t, system)

	r := crdt.NewReplica(crdt.NewClock(messages.DispatchName, func() int64 { return time.Now().UnixNano() }))
	h, _, _ := r.Create(uuid.New(), "Doomed")
	tomb, _ := r.Delete(h.ID)
	ctxBytes, _ := tomb.MarshalBinary()

	// The city has never seen the hero; the context dispatch sends says it is dead.
	p.Send(c.State(), &messages.AssignHero{HeroId: h.ID.String(), Context: ctxBytes})
	reply := testkit.ExpectMessageOf[*messages.AssignReply](t, p, time.Second)
	if reply.Error != messages.AssignError_ASSIGN_DEAD {
		t.Fatalf("dead hero: got %v %q", reply.Error, reply.Message)
	}
	// The answer carries the tombstone, so the caller learns the death.
	var d crdt.Delta
	if err := d.UnmarshalBinary(reply.Delta); err != nil || d.Len() != 1 || !d.Heroes[0].Dead || d.Heroes[0].ID != h.ID {
		t.Fatalf("dead reply delta: %v %+v", err, d)
	}
}

func TestBombRestartsEmpty(t *testing.T) {
	system, c := spawnCity(t, cityactor.Config{Rules: quietRules})
	p := testkit.NewTestProbe(t, system)
	_, delta := seed(t)
	p.Send(c.State(), &messages.MergeDelta{Delta: delta})
	testkit.ExpectMessageOf[*messages.MergeAck](t, p, wait)

	p.Send(c.State(), &messages.Bomb{})
	if ack := testkit.ExpectMessageOf[*messages.BombAck](t, p, wait); ack.City != "gotham" {
		t.Fatalf("bomb ack city = %q", ack.City)
	}
	st := state(t, p, c.State())
	if st.Incarnation != 2 || st.Heroes != 0 {
		t.Fatalf("after bomb: incarnation %d heroes %d, want 2 and 0", st.Incarnation, st.Heroes)
	}
	select {
	case <-c.Down():
		t.Fatal("one bomb took the city down")
	default:
	}
}

func TestFourthBombWithinWindowGivesUp(t *testing.T) {
	system, c := spawnCity(t, cityactor.Config{Rules: quietRules})
	p := testkit.NewTestProbe(t, system)
	for i := 1; i <= cityactor.MaxRestarts; i++ {
		p.Send(c.State(), &messages.Bomb{})
		testkit.ExpectMessageOf[*messages.BombAck](t, p, wait)
		if st := state(t, p, c.State()); st.Incarnation != uint64(i+1) {
			t.Fatalf("after bomb %d: incarnation %d", i, st.Incarnation)
		}
	}
	select {
	case <-c.Down():
		t.Fatalf("%d bombs took the city down", cityactor.MaxRestarts)
	default:
	}
	p.Send(c.State(), &messages.Bomb{})
	testkit.ExpectMessageOf[*messages.BombAck](t, p, wait)
	select {
	case <-c.Down():
	case <-time.After(wait):
		t.Fatal("the 4th bomb within the window did not take the city down")
	}
}

func TestTimersPatrolAndFight(t *testing.T) {
	rules := city.Config{PatrolInterval: 5 * time.Millisecond, FightInterval: 5 * time.Millisecond}
	system, c := spawnCity(t, cityactor.Config{Rules: rules, Seed: 7})
	p := testkit.NewTestProbe(t, system)
	hero, delta := seed(t)
	p.Send(c.State(), &messages.MergeDelta{Delta: delta})
	testkit.ExpectMessageOf[*messages.MergeAck](t, p, wait)
	p.Send(c.State(), &messages.AssignHero{HeroId: hero.ID.String()})
	testkit.ExpectMessageOf[*messages.AssignReply](t, p, wait)

	// Patrol and fight run on their own until the hero dies.
	testkit.AwaitCondition(t, 10*time.Second, func() bool {
		st := state(t, p, c.State())
		var d crdt.Delta
		if err := d.UnmarshalBinary(st.Delta); err != nil {
			t.Fatal(err)
		}
		return d.Len() == 1 && d.Heroes[0].Dead
	}, "hero never died on patrol")
}

// A city that rejoins the cluster under a fresh member id starts from the
// replica it held before; a crash after that still restarts it empty.
func TestCarriedReplicaSeedsOnlyTheFirstIncarnation(t *testing.T) {
	system, old := spawnCity(t, cityactor.Config{Rules: quietRules})
	p := testkit.NewTestProbe(t, system)
	h, delta := seed(t)
	p.Send(old.State(), &messages.MergeDelta{Delta: delta})
	testkit.ExpectMessageOf[*messages.MergeAck](t, p, wait)
	carried, inc, err := old.Snapshot(system, wait)
	if err != nil {
		t.Fatal(err)
	}
	if len(carried.Heroes) != 1 || carried.Heroes[0].ID != h.ID || inc != 1 {
		t.Fatalf("snapshot: %d heroes, incarnation %d", len(carried.Heroes), inc)
	}

	system2, c := spawnCity(t, cityactor.Config{Rules: quietRules, Initial: carried, PriorIncarnations: inc})
	p2 := testkit.NewTestProbe(t, system2)
	if st := state(t, p2, c.State()); st.Heroes != 1 || st.Incarnation != 2 {
		t.Fatalf("rejoined: %d heroes, incarnation %d; want 1 and 2", st.Heroes, st.Incarnation)
	}
	p2.Send(c.State(), &messages.Bomb{})
	testkit.ExpectMessageOf[*messages.BombAck](t, p2, wait)
	if st := state(t, p2, c.State()); st.Heroes != 0 || st.Incarnation != 3 {
		t.Fatalf("after a bomb: %d heroes, incarnation %d; want 0 and 3", st.Heroes, st.Incarnation)
	}
}
