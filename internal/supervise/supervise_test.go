package supervise_test

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/superhero-cluster/superhero/internal/supervise"
	"github.com/superhero-cluster/superhero/internal/testkit"
)

type crash struct{}

// TestRestartsAreCounted crashes a child until its supervisor gives up:
// every crash but the last is a restart, and a counter shared by two
// groups (a node's two memberships) counts both.
func TestRestartsAreCounted(t *testing.T) {
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	var shared atomic.Uint64
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(crash); ok {
			panic("crash on purpose")
		}
	})
	spawn := func(name string) *supervise.Group {
		g, err := supervise.Spawn(system, supervise.Config{
			Name:        name,
			MaxRestarts: 2,
			Window:      time.Minute,
			Logger:      slog.New(slog.DiscardHandler),
			Restarts:    &shared,
		}, supervise.Child{Name: "child", Props: props})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Stop)
		return g
	}

	first := spawn("first")
	for want := uint64(1); want <= 2; want++ {
		system.Root.Send(first.Child("child"), crash{})
		testkit.AwaitCondition(t, 5*time.Second, func() bool { return first.Restarts() == want }, "restart %d not counted", want)
	}
	system.Root.Send(first.Child("child"), crash{})
	select {
	case <-first.Down():
	case <-time.After(5 * time.Second):
		t.Fatal("the supervisor did not give up after the third crash")
	}
	if n := first.Restarts(); n != 2 {
		t.Fatalf("restarts = %d after giving up, want 2 (the last crash stopped the child)", n)
	}

	second := spawn("second")
	system.Root.Send(second.Child("child"), crash{})
	testkit.AwaitCondition(t, 5*time.Second, func() bool { return shared.Load() == 3 }, "the second group's restart not counted in the shared counter")
}
