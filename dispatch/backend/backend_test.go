package backend_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/backend"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/internal/testkit"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/messages"
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

func newBackend(t *testing.T, cities *fakeCities) (*backend.Backend, *backend.Store, *recorder) {
	t.Helper()
	pub := &recorder{}
	store := backend.NewStore(crdt.NewClock(messages.DispatchName, func() int64 { return time.Now().UnixNano() }), city.DefaultConfig(),
		func(d crdt.Delta) { pub.Publish(service.DeltaEvent(d)) })
	b := backend.New(backend.Config{Logger: slog.New(slog.DiscardHandler), Seed: 1}, store, cities, pub)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b, store, pub
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

	cs := b.Cluster(ctx)
	byName := map[crdt.Location]service.CityStatus{}
	for _, c := range cs.Cities {
		byName[c.Name] = c
	}
	if len(cs.Cities) != 3 || !byName[crdt.Gotham].Up || byName[crdt.Capitol].Up {
		t.Fatalf("status %+v: want gotham and metropolis up, capitol (known, never seen) down", cs)
	}
	if cs.InSync || byName[crdt.Gotham].Heroes != 3 {
		t.Fatalf("diverged replicas reported in sync: %+v", cs)
	}
	// Metropolis is behind the city with more heroes.
	if byName[crdt.Metropolis].Lag == 0 || byName[crdt.Gotham].Lag != 0 {
		t.Fatalf("lag: gotham %v metropolis %v", byName[crdt.Gotham].Lag, byName[crdt.Metropolis].Lag)
	}

	// A bomb marks the city restarting and flashes every page.
	c, err := b.Bomb(ctx, crdt.Gotham)
	if err != nil || c != crdt.Gotham {
		t.Fatalf("bomb: %v %v", c, err)
	}
	for _, s := range b.Cluster(ctx).Cities {
		if s.Name == crdt.Gotham && !s.Restarting {
			t.Fatal("a bombed city is not reported restarting")
		}
	}

	cities.setDown(crdt.Metropolis, true)
	for _, s := range b.Cluster(ctx).Cities {
		if s.Name == crdt.Metropolis && s.Up {
			t.Fatal("a city failing its status request is reported up")
		}
	}
	// Known to be unreachable: answered at once, without a request.
	if _, err := b.Assign(ctx, uuid.New(), crdt.Metropolis); !errors.Is(err, service.ErrCityDown) {
		t.Fatalf("assign to an unreachable city: %v", err)
	}
}
