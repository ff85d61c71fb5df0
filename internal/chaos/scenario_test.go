package chaos_test

import (
	"bytes"
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/chaos"
)

// spec is one operation of a test history: its invocation at inv and,
// unless out is empty (the operation never completes), its completion at
// done, both in seconds since the start of the run. A spec's op id is its
// index in the list given to build.
type spec struct {
	kind              chaos.Kind
	out               chaos.Outcome
	inv, done         float64
	hero, to, replica string
	status            int
	err               string
	heroes            []chaos.Hero
}

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// build turns specs into a history ordered by time, as a Recorder would
// record it. A create's invocation names no hero: the id comes with the
// answer.
func build(specs []spec) []chaos.Event {
	var evs []chaos.Event
	for i, s := range specs {
		inv := chaos.Event{Op: i, Client: i % 4, Via: "http", Kind: s.kind, Outcome: chaos.Invoke,
			At: sec(s.inv), Hero: s.hero, To: s.to, Replica: s.replica}
		if s.kind == chaos.KindCreate {
			inv.Hero = ""
		}
		evs = append(evs, inv)
		if s.out != "" {
			c := inv
			c.Outcome, c.At, c.Status, c.Error, c.Heroes, c.Hero = s.out, sec(s.done), s.status, s.err, s.heroes, s.hero
			evs = append(evs, c)
		}
	}
	slices.SortStableFunc(evs, func(a, b chaos.Event) int { return cmp.Compare(a.At, b.At) })
	for i := range evs {
		evs[i].Index = i
	}
	return evs
}

func stamp(wall int64, node string) chaos.Stamp { return chaos.Stamp{Wall: wall, Node: node} }

// live is a live hero version written by node at wall.
func live(id, loc string, health int, wall int64, node string) chaos.Hero {
	return chaos.Hero{ID: id, Name: "name-" + id, Location: loc, Health: health, Stamp: stamp(wall, node)}
}

// patrol is h patrolling.
func patrol(h chaos.Hero) chaos.Hero { h.Patrolling = true; return h }

// tomb is a tombstone written by node at wall, as crdt.Replica.Delete
// makes it: health 0, not patrolling.
func tomb(id, loc string, wall int64, node string) chaos.Hero {
	return chaos.Hero{ID: id, Name: "name-" + id, Location: loc, Dead: true, Stamp: stamp(wall, node)}
}

func heroes(hs ...chaos.Hero) []chaos.Hero { return hs }

// The clean scenario: three heroes on a cluster where gotham is cut off
// from 4 s to 5 s and capitol from 6.5 s to 9 s.
//
//   - A is created, assigned to gotham, fights there (read on gotham),
//     is assigned to metropolis while dispatch reads it (the read sees the
//     assign before it is answered), fights, and is assigned to metropolis
//     again while dispatch reads it: its health rises from 85 to 100 with
//     the assign's stamp.
//   - B is created, assigned to gotham, fights, and an assign of unknown
//     outcome heals it (gotham shows it at 100 later).
//   - C is created, read live by a read overlapping its terminate, read
//     live on cut-off capitol after the terminate (a stale replica), read
//     dead on dispatch.
//   - A create times out (unknown, absent from the Finals); a read is still
//     open at the end.
//   - Cut-off capitol shows A stale; cut-off gotham fights A on a branch of
//     its own.
//   - After the replicas converge, a list and a read of capitol show the
//     final versions.
const (
	heroA = "a1a1a1a1-0000-4000-8000-000000000001"
	heroB = "b2b2b2b2-0000-4000-8000-000000000002"
	heroC = "c3c3c3c3-0000-4000-8000-000000000003"
)

// Op ids of the clean scenario that tests refer to.
const (
	opAssignAGotham   = 4
	opAssignBUnknown  = 7
	opAssignAMetroTwo = 11
	opTerminateC      = 14
	opOpenRead        = 20
)

func cleanSpecs() []spec {
	return []spec{
		// 0-3: creates; the fourth times out.
		{kind: chaos.KindCreate, out: chaos.OK, inv: 0.00, done: 0.01, hero: heroA, status: 201, heroes: heroes(live(heroA, "home", 100, 1000, "dispatch"))},
		{kind: chaos.KindCreate, out: chaos.OK, inv: 0.02, done: 0.03, hero: heroB, status: 201, heroes: heroes(live(heroB, "home", 100, 1100, "dispatch"))},
		{kind: chaos.KindCreate, out: chaos.OK, inv: 0.04, done: 0.05, hero: heroC, status: 201, heroes: heroes(live(heroC, "home", 100, 1200, "dispatch"))},
		{kind: chaos.KindCreate, out: chaos.Unknown, inv: 0.06, done: 2.06, err: "timeout"},
		// 4-5: A and B to gotham.
		{kind: chaos.KindAssign, out: chaos.OK, inv: 1.0, done: 1.05, hero: heroA, to: "gotham", status: 200, heroes: heroes(live(heroA, "gotham", 100, 2000, "gotham"))},
		{kind: chaos.KindAssign, out: chaos.OK, inv: 1.1, done: 1.15, hero: heroB, to: "gotham", status: 200, heroes: heroes(live(heroB, "gotham", 100, 2100, "gotham"))},
		// 6: gotham shows both after fights.
		{kind: chaos.KindCityRead, out: chaos.OK, inv: 3.0, done: 3.01, replica: "gotham", status: 200,
			heroes: heroes(patrol(live(heroA, "gotham", 90, 3000, "gotham")), patrol(live(heroB, "gotham", 80, 2200, "gotham")))},
		// 7: B's assign times out; it took effect (stamp 2600).
		{kind: chaos.KindAssign, out: chaos.Unknown, inv: 3.1, done: 4.1, hero: heroB, to: "gotham", err: "timeout"},
		// 8-9: A to metropolis, and a read that sees it before the answer.
		{kind: chaos.KindAssign, out: chaos.OK, inv: 4.0, done: 4.2, hero: heroA, to: "metropolis", status: 200, heroes: heroes(live(heroA, "metropolis", 100, 4000, "metropolis"))},
		{kind: chaos.KindRead, out: chaos.OK, inv: 4.1, done: 4.15, hero: heroA, status: 200, heroes: heroes(live(heroA, "metropolis", 100, 4000, "metropolis"))},
		// 10: A fought in metropolis.
		{kind: chaos.KindCityRead, out: chaos.OK, inv: 5.0, done: 5.01, replica: "metropolis", status: 200, heroes: heroes(patrol(live(heroA, "metropolis", 85, 5000, "metropolis")))},
		// 11-12: A assigned to metropolis again, with a concurrent read
		// that sees its health back up.
		{kind: chaos.KindAssign, out: chaos.OK, inv: 6.0, done: 6.1, hero: heroA, to: "metropolis", status: 200, heroes: heroes(live(heroA, "metropolis", 100, 6000, "metropolis"))},
		{kind: chaos.KindRead, out: chaos.OK, inv: 6.05, done: 6.08, hero: heroA, status: 200, heroes: heroes(live(heroA, "metropolis", 100, 6000, "metropolis"))},
		// 13: gotham shows B healed by the unknown assign.
		{kind: chaos.KindCityRead, out: chaos.OK, inv: 5.5, done: 5.51, replica: "gotham", status: 200, heroes: heroes(live(heroB, "gotham", 100, 2600, "gotham"))},
		// 14-17: C terminated; a read overlapping the terminate shows it
		// live; cut-off capitol shows it live; dispatch shows it dead.
		{kind: chaos.KindTerminate, out: chaos.OK, inv: 7.0, done: 7.2, hero: heroC, status: 204},
		{kind: chaos.KindRead, out: chaos.OK, inv: 7.05, done: 7.1, hero: heroC, status: 200, heroes: heroes(live(heroC, "home", 100, 1200, "dispatch"))},
		{kind: chaos.KindCityRead, out: chaos.OK, inv: 7.5, done: 7.6, replica: "capitol", status: 200, heroes: heroes(live(heroC, "home", 100, 1200, "dispatch"))},
		{kind: chaos.KindRead, out: chaos.OK, inv: 8.0, done: 8.01, hero: heroC, status: 410, heroes: heroes(tomb(heroC, "home", 7100, "dispatch"))},
		// 18-19: after convergence.
		{kind: chaos.KindList, out: chaos.OK, inv: 10.0, done: 10.02, status: 200,
			heroes: heroes(live(heroA, "metropolis", 100, 6000, "metropolis"), live(heroB, "gotham", 100, 2600, "gotham"))},
		{kind: chaos.KindCityRead, out: chaos.OK, inv: 10.1, done: 10.11, replica: "capitol", status: 200,
			heroes: heroes(live(heroA, "metropolis", 100, 6000, "metropolis"), live(heroB, "gotham", 100, 2600, "gotham"))},
		// 20: a read still open when the run ended.
		{kind: chaos.KindRead, inv: 10.5, hero: heroA},
		// 21: cut-off capitol shows A before the second assign, which
		// was answered before this read: a stale replica. Op 19 shows
		// capitol caught up, its health higher at a newer stamp.
		{kind: chaos.KindCityRead, out: chaos.OK, inv: 6.6, done: 6.61, replica: "capitol", status: 200, heroes: heroes(patrol(live(heroA, "metropolis", 85, 5000, "metropolis")))},
		// 22: gotham, cut off while A moved to metropolis, fought A on its
		// own branch: 80 at 4500, below metropolis's 85 at 5000 although
		// no assign lies between them (different writers).
		{kind: chaos.KindCityRead, out: chaos.OK, inv: 4.6, done: 4.61, replica: "gotham", status: 200, heroes: heroes(patrol(live(heroA, "gotham", 80, 4500, "gotham")))},
	}
}

// cleanFinal is every replica's state at the end of the clean scenario.
func cleanFinal() []chaos.Hero {
	return heroes(
		live(heroA, "metropolis", 100, 6000, "metropolis"),
		live(heroB, "gotham", 100, 2600, "gotham"),
		tomb(heroC, "home", 7100, "dispatch"),
	)
}

func cleanFinals() []chaos.Final {
	var fs []chaos.Final
	for i, r := range []string{"dispatch", "gotham", "metropolis", "capitol"} {
		fs = append(fs, chaos.Final{Replica: r, At: sec(11 + 0.1*float64(i)), Heroes: cleanFinal()})
	}
	return fs
}

// runOf assembles a run with the clean scenario's faults and timing.
func runOf(specs []spec, finals []chaos.Final) chaos.Run {
	return chaos.Run{
		Seed:    42,
		History: build(specs),
		Faults: []chaos.Fault{
			{Kind: "partition", Targets: []string{"gotham"}, Start: sec(4), End: sec(5)},
			{Kind: "partition", Targets: []string{"capitol"}, Start: sec(6.5), End: sec(9)},
		},
		LastHeal:  sec(9),
		Converged: sec(9.5),
		Finals:    finals,
	}
}

func cleanRun() chaos.Run { return runOf(cleanSpecs(), cleanFinals()) }

// setFinal replaces hero id in replica's Final with h, or removes it when h
// is nil.
func setFinal(fs []chaos.Final, replica, id string, h *chaos.Hero) []chaos.Final {
	for i := range fs {
		if fs[i].Replica != replica {
			continue
		}
		var out []chaos.Hero
		for _, x := range fs[i].Heroes {
			if x.ID != id {
				out = append(out, x)
			}
		}
		if h != nil {
			out = append(out, *h)
		}
		fs[i].Heroes = out
	}
	return fs
}

// table renders the report for failure messages.
func table(rep chaos.Report) string {
	var b bytes.Buffer
	_ = rep.Table(&b)
	return b.String()
}

// expect fails unless rep holds an anomaly of kind about hero on replica
// (either may be empty to match any) and returns it.
func expect(t *testing.T, rep chaos.Report, kind chaos.AnomalyKind, hero, replica string) chaos.Anomaly {
	t.Helper()
	for _, a := range rep.Anomalies {
		if a.Kind == kind && (hero == "" || a.Hero == hero) && (replica == "" || a.Replica == replica) {
			return a
		}
	}
	t.Fatalf("no %s anomaly for hero %q on %q; report:\n%s", kind, hero, replica, table(rep))
	return chaos.Anomaly{}
}

// only fails if rep holds an anomaly of a kind not in kinds.
func only(t *testing.T, rep chaos.Report, kinds ...chaos.AnomalyKind) {
	t.Helper()
	for _, a := range rep.Anomalies {
		if !slices.Contains(kinds, a.Kind) {
			t.Errorf("unexpected anomaly %s", a)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", table(rep))
	}
}
