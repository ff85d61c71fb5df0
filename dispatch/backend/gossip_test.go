package backend_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/backend"
	"github.com/superhero-cluster/superhero/internal/supervise"
	"github.com/superhero-cluster/superhero/internal/testkit"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
)

func newID(t *testing.T) uuid.UUID {
	t.Helper()
	id, err := uuid.NewRandom()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestGossipRoundConverges(t *testing.T) {
	for _, proto := range []backend.Protocol{backend.ProtocolDefault, backend.ProtocolOriginal} {
		t.Run(string(proto), func(t *testing.T) {
			cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis)
			cities.write(t, crdt.Gotham, 50)
			cities.write(t, crdt.Metropolis, 3)
			g := &backend.Gossiper{Cities: cities, Rand: rand.New(rand.NewPCG(1, 2)), Protocol: proto}
			res, err := g.Round(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.From == res.To {
				t.Fatalf("round gossiped %s to itself", res.From)
			}
			fps := cities.fingerprints()
			switch proto {
			case backend.ProtocolDefault:
				// Push-pull: both sides end with the union.
				if !cities.converged() {
					t.Fatalf("after one push-pull round replicas differ: %v", fps)
				}
			case backend.ProtocolOriginal:
				// One-way copy: the destination holds everything the source has.
				to := cities.servers[res.To].Replica()
				from := cities.servers[res.From].Replica()
				for _, h := range from.Heroes() {
					if _, ok := to.Get(h.ID); !ok {
						t.Fatalf("%s lacks %s after a full copy from %s", res.To, h.Name, res.From)
					}
				}
			}
		})
	}
}

func TestGossipNeedsTwoCities(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham)
	g := &backend.Gossiper{Cities: cities, Rand: rand.New(rand.NewPCG(1, 2)), Protocol: backend.ProtocolDefault}
	if _, err := g.Round(context.Background()); !errors.Is(err, backend.ErrTooFewCities) {
		t.Fatalf("err = %v, want ErrTooFewCities", err)
	}
	if cities.calls != 0 {
		t.Fatalf("a skipped round made %d requests", cities.calls)
	}
}

func fedHeroes(fed []crdt.Delta) int {
	n := 0
	for _, d := range fed {
		n += d.Len()
	}
	return n
}

func TestPollMergesIntoStoreAndFeedsPages(t *testing.T) {
	for _, proto := range []backend.Protocol{backend.ProtocolDefault, backend.ProtocolOriginal} {
		t.Run(string(proto), func(t *testing.T) { testPoll(t, proto) })
	}
}

func testPoll(t *testing.T, proto backend.Protocol) {
	cities := newFakeCities(t, crdt.Gotham)
	cities.write(t, crdt.Gotham, 5)
	var fed []crdt.Delta
	store := backend.NewStore(crdt.NewClock(messages.DispatchName, func() int64 { return time.Now().UnixNano() }), city.DefaultConfig(),
		func(d crdt.Delta) { fed = append(fed, d) })
	p := &backend.Poller{Cities: cities, Rand: rand.New(rand.NewPCG(3, 4)), Store: store, Protocol: proto}
	c, changed, err := p.Poll(context.Background())
	if err != nil || c != crdt.Gotham || changed != 5 {
		t.Fatalf("poll = %s, %d changed, %v", c, changed, err)
	}
	if fedHeroes(fed) != 5 {
		t.Fatalf("page feed got %v", fed)
	}
	// Polling again changes nothing and feeds nothing.
	before := len(fed)
	if _, changed, _ := p.Poll(context.Background()); changed != 0 || len(fed) != before {
		t.Fatalf("second poll changed %d, fed %d more", changed, len(fed)-before)
	}
}

func TestGossipActorConvergesCities(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis, crdt.Capitol)
	cities.write(t, crdt.Gotham, 20)
	cities.write(t, crdt.Capitol, 20)
	_, store := spawnActors(t, cities, 5*time.Millisecond, 5*time.Millisecond)
	testkit.AwaitCondition(t, 5*time.Second, cities.converged, "cities never converged through gossip")
	testkit.AwaitCondition(t, 5*time.Second, func() bool { return len(store.Heroes()) == 40 }, "poll never filled dispatch")
}

func TestSupervisorGivesUpOnRepeatedCrashes(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis)
	cities.setDown(crdt.Metropolis, true)
	cities.setDown(crdt.Gotham, true)
	// Every round fails, far faster than once a second: the fourth crash
	// within 1 s exceeds the limit and the supervisor gives up.
	group, _ := spawnActors(t, cities, 2*time.Millisecond, time.Hour)
	select {
	case <-group.Down():
		if group.Reason() != "gossip" {
			t.Fatalf("gave up on %q, want gossip", group.Reason())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("supervisor never gave up on a gossip actor crashing every 2 ms")
	}
}

func TestGossipActorSurvivesOneCrashPerRound(t *testing.T) {
	cities := newFakeCities(t, crdt.Gotham, crdt.Metropolis)
	cities.setDown(crdt.Metropolis, true)
	// At 400 ms a round, at most 3 crashes fit in any 1 s window: the
	// limit is never exceeded, the actor keeps restarting and rounds resume
	// once the city is back.
	group, _ := spawnActors(t, cities, 400*time.Millisecond, time.Hour)
	cities.write(t, crdt.Gotham, 3)
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		cities.mu.Lock()
		defer cities.mu.Unlock()
		return cities.calls >= 4
	}, "gossip stopped running rounds")
	cities.setDown(crdt.Metropolis, false)
	testkit.AwaitCondition(t, 5*time.Second, cities.converged, "gossip never resumed after the city came back")
	select {
	case <-group.Down():
		t.Fatal("supervisor gave up although crashes stayed under the limit")
	default:
	}
}

// spawnActors runs dispatch's gossip and poll actors over cities, with the
// given intervals, until the test ends.
func spawnActors(t *testing.T, cities *fakeCities, gossip, poll time.Duration) (*supervise.Group, *backend.Store) {
	t.Helper()
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	store := backend.NewStore(crdt.NewClock(messages.DispatchName, func() int64 { return time.Now().UnixNano() }), city.DefaultConfig(), nil)
	g := &backend.Gossiper{Cities: cities, Rand: rand.New(rand.NewPCG(5, 6)), Protocol: backend.ProtocolDefault}
	p := &backend.Poller{Cities: cities, Rand: rand.New(rand.NewPCG(7, 8)), Store: store}
	group, err := backend.SpawnActors(system, backend.ActorsConfig{
		GossipInterval: gossip, PollInterval: poll, Logger: slog.New(slog.DiscardHandler),
	}, g, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(group.Stop)
	return group, store
}
