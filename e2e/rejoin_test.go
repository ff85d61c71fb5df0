package e2e

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/proc"
)

// A node frozen (SIGSTOP) for longer than the others' health polls is
// dropped by them, and the library never takes a dropped member id back.
// When it runs again it must notice and rejoin under a fresh member id,
// without a restart and keeping its replica, while the rest of the cluster
// goes on taking writes. Both a city and dispatch are frozen in turn.
func TestFrozenNodesRejoin(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	procs := map[string]*proc.Proc{}
	for _, name := range cities {
		procs[name] = c.startCity(name, quiet...)
	}
	procs["dispatch"] = c.startDispatch()
	allUp := func() bool {
		cs := a.cluster()
		return cs.Ready && cs.city("gotham").Up && cs.city("metropolis").Up && cs.city("capitol").Up
	}
	await(t, 30*time.Second, "three cities up", allUp)
	var ids []string
	create := func(name string) bool {
		var h hero
		code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": name}, &h)
		if code == 201 {
			ids = append(ids, h.ID)
		}
		return code == 201
	}
	for i := range 3 {
		if !create(fmt.Sprintf("Before %d", i)) {
			t.Fatal("create refused before any fault")
		}
	}

	// A frozen city: the others drop it and go on.
	metro := procs["metropolis"]
	if err := metro.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Dispatch shows it down at its next probe; the members drop it at
	// their next failed health polls.
	droppedBy := func(node, kinds string) int { return c.log.count("node="+node, `kinds="[`+kinds+`]"`, "left=1") }
	before := droppedBy("gotham", "city-capitol city-gotham dispatch")
	await(t, 15*time.Second, "metropolis shown down", func() bool { return !a.cluster().city("metropolis").Up })
	await(t, 15*time.Second, "gotham drops the frozen metropolis", func() bool {
		return droppedBy("gotham", "city-capitol city-gotham dispatch") > before
	})
	for i := range 3 {
		if !create(fmt.Sprintf("While frozen %d", i)) {
			t.Fatal("create refused while metropolis is frozen")
		}
	}
	if err := metro.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	back := await(t, 20*time.Second, "metropolis back and every replica equal", func() bool {
		cs := a.cluster()
		return allUp() && cs.InSync && cs.city("metropolis").Heroes == len(ids)
	})
	t.Logf("FIGURE frozen city: SIGCONT to back and converged: %v", back.Round(time.Millisecond))
	select {
	case <-metro.Done():
		t.Fatal("metropolis exited instead of rejoining")
	default:
	}

	// A frozen dispatch: the cities drop it; it rejoins and keeps serving
	// on the same address, with its replica.
	d := procs["dispatch"]
	if err := d.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	before = droppedBy("gotham", "city-capitol city-gotham city-metropolis")
	await(t, 15*time.Second, "gotham drops the frozen dispatch", func() bool {
		return droppedBy("gotham", "city-capitol city-gotham city-metropolis") > before
	})
	if err := d.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	back = await(t, 20*time.Second, "dispatch takes writes again", func() bool { return allUp() && create("After dispatch froze") })
	t.Logf("FIGURE frozen dispatch: SIGCONT to taking writes: %v", back.Round(time.Millisecond))
	await(t, 15*time.Second, "every acknowledged create on every city", func() bool {
		for _, city := range cities {
			hs, ok := a.cityHeroes(city)
			if !ok {
				return false
			}
			for _, id := range ids {
				if _, found := has(hs, id); !found {
					return false
				}
			}
		}
		return true
	})
	if c.log.count("rejoining under a fresh member id") < 2 {
		t.Fatal("metropolis and dispatch did not both log a rejoin: the faults did not drop them, so this test proved nothing")
	}
}
