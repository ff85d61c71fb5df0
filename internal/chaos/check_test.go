package chaos_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/chaos"
)

// The clean scenario is full of concurrency that a naive checker takes
// for anomalies: a read seeing an assign before it is answered, a read
// overlapping a terminate showing the hero live, a cut-off replica
// showing a terminated hero live and an older version, health rising on a
// stale replica after an assign answered before both reads, two writers'
// branches, an assign of unknown outcome healing a hero, a create of
// unknown outcome absent from every Final. None of it is an anomaly.
func TestCleanConcurrentHistoryHasNoAnomaly(t *testing.T) {
	rep := chaos.Check(cleanRun(), chaos.CheckConfig{})
	if !rep.OK() {
		t.Fatalf("clean history reported anomalies:\n%s", table(rep))
	}
	if !rep.Converged || rep.ConvergeTime != 500*time.Millisecond {
		t.Errorf("converged %v after %v, want true after 500ms", rep.Converged, rep.ConvergeTime)
	}
}

func TestUnknownOutcomesAreListedApart(t *testing.T) {
	rep := chaos.Check(cleanRun(), chaos.CheckConfig{})
	var got []int
	for _, u := range rep.Unknown {
		got = append(got, u.Op)
		if u.Op == opOpenRead && (!u.Open || u.Completed != 0) {
			t.Errorf("open read listed as %+v, want open without a completion", u)
		}
		if u.Op == opAssignBUnknown && (u.Open || u.Completed != sec(4.1) || u.Hero != heroB || u.To != "gotham") {
			t.Errorf("unknown assign listed as %+v", u)
		}
	}
	if want := []int{3, opAssignBUnknown, opOpenRead}; !slices.Equal(got, want) {
		t.Errorf("unknown ops %v, want %v", got, want)
	}
	want := map[chaos.Kind]chaos.OpCount{
		chaos.KindCreate:    {Kind: chaos.KindCreate, Invoked: 4, OK: 3, Unknown: 1},
		chaos.KindAssign:    {Kind: chaos.KindAssign, Invoked: 5, OK: 4, Unknown: 1},
		chaos.KindTerminate: {Kind: chaos.KindTerminate, Invoked: 1, OK: 1},
		chaos.KindRead:      {Kind: chaos.KindRead, Invoked: 5, OK: 4, Unknown: 1, Open: 1},
		chaos.KindList:      {Kind: chaos.KindList, Invoked: 1, OK: 1},
		chaos.KindCityRead:  {Kind: chaos.KindCityRead, Invoked: 7, OK: 7},
	}
	if len(rep.Ops) != len(want) {
		t.Fatalf("ops %+v, want %d kinds", rep.Ops, len(want))
	}
	for i, k := range []chaos.Kind{chaos.KindCreate, chaos.KindAssign, chaos.KindTerminate, chaos.KindRead, chaos.KindList, chaos.KindCityRead} {
		if rep.Ops[i] != want[k] {
			t.Errorf("ops[%d] = %+v, want %+v", i, rep.Ops[i], want[k])
		}
	}
}

func TestLostCreate(t *testing.T) {
	run := cleanRun()
	run.Finals = setFinal(run.Finals, "capitol", heroA, nil)
	rep := chaos.Check(run, chaos.CheckConfig{})
	a := expect(t, rep, chaos.LostCreate, heroA, "capitol")
	if a.Op != 0 {
		t.Errorf("lost create names op %d, want the create, op 0", a.Op)
	}
	only(t, rep, chaos.LostCreate)
}

// An unknown create may or may not have taken effect: a hero no ok
// create names, on only some replicas, is divergence, not a lost create.
func TestUnknownCreateIsNeverLost(t *testing.T) {
	run := cleanRun()
	d := live("d4d4d4d4-0000-4000-8000-000000000004", "home", 100, 1300, "dispatch")
	run.Finals = setFinal(run.Finals, "dispatch", d.ID, &d)
	rep := chaos.Check(run, chaos.CheckConfig{})
	expect(t, rep, chaos.Diverged, d.ID, "gotham")
	only(t, rep, chaos.Diverged)
}

func TestTombstoneTTLExcusesCollectedTombstones(t *testing.T) {
	run := cleanRun()
	for _, r := range []string{"dispatch", "gotham", "metropolis", "capitol"} {
		run.Finals = setFinal(run.Finals, r, heroC, nil)
	}
	rep := chaos.Check(run, chaos.CheckConfig{})
	expect(t, rep, chaos.LostCreate, heroC, "dispatch")
	if n := rep.Count(chaos.LostCreate); n != 4 {
		t.Errorf("%d lost creates, want one per replica:\n%s", n, table(rep))
	}
	if rep := chaos.Check(run, chaos.CheckConfig{TombstoneTTL: 10 * time.Second}); !rep.OK() {
		t.Errorf("tombstones older than the TTL reported:\n%s", table(rep))
	}
	// A is live elsewhere: its absence is no collection.
	run.Finals = setFinal(run.Finals, "gotham", heroA, nil)
	rep = chaos.Check(run, chaos.CheckConfig{TombstoneTTL: 10 * time.Second})
	expect(t, rep, chaos.LostCreate, heroA, "gotham")
	only(t, rep, chaos.LostCreate)
}

func TestResurrection(t *testing.T) {
	heroD := "d4d4d4d4-0000-4000-8000-000000000004"
	// D dies in a fight in gotham; dispatch reads it dead at 4.51.
	withD := func(later ...spec) []spec {
		specs := append(cleanSpecs(),
			spec{kind: chaos.KindCreate, out: chaos.OK, inv: 0.1, done: 0.11, hero: heroD, heroes: heroes(live(heroD, "home", 100, 1150, "dispatch"))},
			spec{kind: chaos.KindAssign, out: chaos.OK, inv: 1.2, done: 1.25, hero: heroD, to: "gotham", heroes: heroes(live(heroD, "gotham", 100, 2150, "gotham"))},
			spec{kind: chaos.KindRead, out: chaos.OK, inv: 4.5, done: 4.51, hero: heroD, status: 410, heroes: heroes(tomb(heroD, "gotham", 2900, "gotham"))},
		)
		return append(specs, later...)
	}
	finalsD := func() []chaos.Final {
		fs := cleanFinals()
		d := tomb(heroD, "gotham", 2900, "gotham")
		for _, r := range []string{"dispatch", "gotham", "metropolis", "capitol"} {
			fs = setFinal(fs, r, heroD, &d)
		}
		return fs
	}
	liveD := heroes(live(heroD, "gotham", 10, 2800, "gotham"))

	t.Run("live read after a terminate answered ok", func(t *testing.T) {
		specs := append(cleanSpecs(), spec{kind: chaos.KindRead, out: chaos.OK, inv: 7.3, done: 7.31, hero: heroC,
			heroes: heroes(live(heroC, "home", 100, 1200, "dispatch"))})
		rep := chaos.Check(runOf(specs, cleanFinals()), chaos.CheckConfig{})
		a := expect(t, rep, chaos.Resurrection, heroC, "dispatch")
		if a.Op != len(specs)-1 || !strings.Contains(a.Detail, "terminate op 14") {
			t.Errorf("resurrection %s, want op %d after terminate op 14", a, len(specs)-1)
		}
		only(t, rep, chaos.Resurrection)
	})
	t.Run("live read after a read showed it dead", func(t *testing.T) {
		specs := withD(spec{kind: chaos.KindRead, out: chaos.OK, inv: 5, done: 5.01, hero: heroD, heroes: liveD})
		rep := chaos.Check(runOf(specs, finalsD()), chaos.CheckConfig{})
		expect(t, rep, chaos.Resurrection, heroD, "dispatch")
		only(t, rep, chaos.Resurrection)
	})
	t.Run("a read invoked before the dead read completed may show it live", func(t *testing.T) {
		specs := withD(spec{kind: chaos.KindRead, out: chaos.OK, inv: 4.505, done: 4.52, hero: heroD, heroes: liveD})
		if rep := chaos.Check(runOf(specs, finalsD()), chaos.CheckConfig{}); !rep.OK() {
			t.Errorf("overlapping reads reported:\n%s", table(rep))
		}
	})
	t.Run("a replica restarted empty after showing it dead may show it live", func(t *testing.T) {
		specs := withD(spec{kind: chaos.KindRead, out: chaos.OK, inv: 5, done: 5.01, hero: heroD, heroes: liveD})
		run := runOf(specs, finalsD())
		run.Faults = append(run.Faults, chaos.Fault{Kind: "sigkill", Targets: []string{"dispatch"}, Start: sec(4.6), End: sec(4.8)})
		if rep := chaos.Check(run, chaos.CheckConfig{}); !rep.OK() {
			t.Errorf("read after a restart reported:\n%s", table(rep))
		}
		// A fault that keeps the state excuses nothing.
		run.Faults[len(run.Faults)-1].Kind = "sigstop"
		expect(t, chaos.Check(run, chaos.CheckConfig{}), chaos.Resurrection, heroD, "dispatch")
	})
	t.Run("a final holds a terminated hero live", func(t *testing.T) {
		c := live(heroC, "home", 100, 1200, "dispatch")
		rep := chaos.Check(runOf(cleanSpecs(), setFinal(cleanFinals(), "gotham", heroC, &c)), chaos.CheckConfig{})
		a := expect(t, rep, chaos.Resurrection, heroC, "gotham")
		if a.Op != -1 {
			t.Errorf("final resurrection names op %d, want -1", a.Op)
		}
		only(t, rep, chaos.Resurrection)
	})
	t.Run("a final holds a hero read dead live", func(t *testing.T) {
		d := live(heroD, "gotham", 10, 2800, "gotham")
		specs := withD()
		rep := chaos.Check(runOf(specs, setFinal(finalsD(), "metropolis", heroD, &d)), chaos.CheckConfig{})
		expect(t, rep, chaos.Resurrection, heroD, "metropolis")
		only(t, rep, chaos.Resurrection)
	})
}

func TestRuleViolations(t *testing.T) {
	withRead := func(s spec) chaos.Report {
		return chaos.Check(runOf(append(cleanSpecs(), s), cleanFinals()), chaos.CheckConfig{})
	}
	detailed := func(t *testing.T, rep chaos.Report, hero, want string) {
		t.Helper()
		for _, a := range rep.Anomalies {
			if a.Kind == chaos.RuleViolation && a.Hero == hero && strings.Contains(a.Detail, want) {
				return
			}
		}
		t.Errorf("no rule violation of %s saying %q:\n%s", hero, want, table(rep))
	}

	t.Run("health above 100", func(t *testing.T) {
		rep := withRead(spec{kind: chaos.KindCityRead, out: chaos.OK, inv: 4.3, done: 4.31, replica: "metropolis",
			heroes: heroes(live(heroA, "metropolis", 120, 4000, "metropolis"))})
		detailed(t, rep, heroA, "health 120 outside 0..100")
		only(t, rep, chaos.RuleViolation)
	})
	t.Run("health rises without an assign", func(t *testing.T) {
		rep := withRead(spec{kind: chaos.KindCityRead, out: chaos.OK, inv: 3.5, done: 3.51, replica: "gotham",
			heroes: heroes(patrol(live(heroA, "gotham", 95, 3500, "gotham")))})
		detailed(t, rep, heroA, "health rose from 90")
		only(t, rep, chaos.RuleViolation)
	})
	t.Run("health rises with only a refused assign", func(t *testing.T) {
		specs := append(cleanSpecs(),
			spec{kind: chaos.KindAssign, out: chaos.Fail, inv: 3.2, done: 3.21, hero: heroA, to: "gotham", status: 409},
			spec{kind: chaos.KindCityRead, out: chaos.OK, inv: 3.5, done: 3.51, replica: "gotham",
				heroes: heroes(patrol(live(heroA, "gotham", 95, 3500, "gotham")))})
		rep := chaos.Check(runOf(specs, cleanFinals()), chaos.CheckConfig{})
		detailed(t, rep, heroA, "health rose from 90")
		// A 503 promises nothing: the assign may have taken effect.
		specs[len(specs)-2].status = 503
		if rep := chaos.Check(runOf(specs, cleanFinals()), chaos.CheckConfig{}); !rep.OK() {
			t.Errorf("rise after an assign failed with 503 reported:\n%s", table(rep))
		}
	})
	t.Run("health rises after the node restarted empty", func(t *testing.T) {
		run := runOf(append(cleanSpecs(), spec{kind: chaos.KindCityRead, out: chaos.OK, inv: 3.5, done: 3.51, replica: "gotham",
			heroes: heroes(patrol(live(heroA, "gotham", 95, 3500, "gotham")))}), cleanFinals())
		run.Faults = append(run.Faults, chaos.Fault{Kind: "bomb", Targets: []string{"gotham"}, Start: sec(3.2), End: sec(3.3)})
		if rep := chaos.Check(run, chaos.CheckConfig{}); !rep.OK() {
			t.Errorf("rise after gotham restarted empty reported:\n%s", table(rep))
		}
	})
	t.Run("dead with health", func(t *testing.T) {
		c := tomb(heroC, "home", 7100, "dispatch")
		c.Health = 40
		rep := withRead(spec{kind: chaos.KindRead, out: chaos.OK, inv: 8.2, done: 8.21, hero: heroC, status: 410, heroes: heroes(c)})
		detailed(t, rep, heroC, "dead with health 40")
		only(t, rep, chaos.RuleViolation)
	})
	t.Run("a bad final entry", func(t *testing.T) {
		a := live(heroA, "metropolis", -5, 6000, "metropolis")
		rep := chaos.Check(runOf(cleanSpecs(), setFinal(cleanFinals(), "gotham", heroA, &a)), chaos.CheckConfig{})
		detailed(t, rep, heroA, "health -5 outside 0..100")
	})
}

func TestNeverConverged(t *testing.T) {
	t.Run("finals differ and the replicas were never seen equal", func(t *testing.T) {
		run := cleanRun()
		old := patrol(live(heroB, "gotham", 80, 2200, "gotham"))
		run.Finals = setFinal(run.Finals, "capitol", heroB, &old)
		run.Converged = 0
		rep := chaos.Check(run, chaos.CheckConfig{})
		expect(t, rep, chaos.NeverConverged, "", "")
		a := expect(t, rep, chaos.Diverged, heroB, "capitol")
		if !strings.Contains(a.Detail, "2200") || !strings.Contains(a.Detail, "2600") {
			t.Errorf("diverged detail %q names neither stamp", a.Detail)
		}
		if n := rep.Count(chaos.Diverged); n != 1 {
			t.Errorf("%d diverged, want 1 (capitol only):\n%s", n, table(rep))
		}
		only(t, rep, chaos.NeverConverged, chaos.Diverged)
	})
	t.Run("converged later than the bound", func(t *testing.T) {
		run := cleanRun()
		run.Converged = run.LastHeal + 11*time.Second
		rep := chaos.Check(run, chaos.CheckConfig{})
		a := expect(t, rep, chaos.NeverConverged, "", "")
		if !strings.Contains(a.Detail, "11s") || !strings.Contains(a.Detail, "10s") {
			t.Errorf("detail %q does not give the time and the bound", a.Detail)
		}
		only(t, rep, chaos.NeverConverged)
		if rep := chaos.Check(run, chaos.CheckConfig{ConvergeBound: 20 * time.Second}); !rep.OK() {
			t.Errorf("within a 20s bound reported:\n%s", table(rep))
		}
	})
	t.Run("converged before the last heal", func(t *testing.T) {
		run := cleanRun()
		run.Converged = run.LastHeal - time.Second
		rep := chaos.Check(run, chaos.CheckConfig{})
		expect(t, rep, chaos.NeverConverged, "", "")
		if rep.Converged {
			t.Error("report says converged")
		}
	})
}

func TestLostAssign(t *testing.T) {
	t.Run("a final older than the assign", func(t *testing.T) {
		old := live(heroA, "metropolis", 100, 4000, "metropolis")
		rep := chaos.Check(runOf(cleanSpecs(), setFinal(cleanFinals(), "gotham", heroA, &old)), chaos.CheckConfig{})
		a := expect(t, rep, chaos.LostAssign, heroA, "gotham")
		if a.Op != opAssignAMetroTwo {
			t.Errorf("lost assign names op %d, want %d", a.Op, opAssignAMetroTwo)
		}
		only(t, rep, chaos.LostAssign)
	})
	t.Run("the assign's stamp at another location", func(t *testing.T) {
		other := live(heroA, "gotham", 100, 6000, "metropolis")
		rep := chaos.Check(runOf(cleanSpecs(), setFinal(cleanFinals(), "capitol", heroA, &other)), chaos.CheckConfig{})
		expect(t, rep, chaos.LostAssign, heroA, "capitol")
		only(t, rep, chaos.LostAssign)
	})
	t.Run("a later write or a tombstone supersedes it", func(t *testing.T) {
		for _, final := range []chaos.Hero{
			patrol(live(heroA, "metropolis", 90, 7000, "metropolis")),
			tomb(heroA, "metropolis", 5500, "metropolis"), // older stamp, still wins
		} {
			fs := cleanFinals()
			for _, r := range []string{"dispatch", "gotham", "metropolis", "capitol"} {
				fs = setFinal(fs, r, heroA, &final)
			}
			if rep := chaos.Check(runOf(cleanSpecs(), fs), chaos.CheckConfig{}); !rep.OK() {
				t.Errorf("final %+v reported:\n%s", final, table(rep))
			}
		}
	})
}

func TestStaleAfterConverge(t *testing.T) {
	specs := cleanSpecs()
	specs = append(specs, spec{kind: chaos.KindCityRead, out: chaos.OK, inv: 10.3, done: 10.31, replica: "gotham",
		heroes: heroes(live(heroA, "metropolis", 100, 4000, "metropolis"))})
	rep := chaos.Check(runOf(specs, cleanFinals()), chaos.CheckConfig{})
	a := expect(t, rep, chaos.StaleAfterConverge, heroA, "gotham")
	if !strings.Contains(a.Detail, "assign op 11") {
		t.Errorf("detail %q does not name the assign it misses", a.Detail)
	}
	only(t, rep, chaos.StaleAfterConverge)

	// The same read before convergence is only a stale replica.
	specs[len(specs)-1].inv, specs[len(specs)-1].done = 9.2, 9.21
	if rep := chaos.Check(runOf(specs, cleanFinals()), chaos.CheckConfig{}); !rep.OK() {
		t.Errorf("stale read before convergence reported:\n%s", table(rep))
	}

	// A city still showing a terminated hero after convergence.
	specs[len(specs)-1] = spec{kind: chaos.KindCityRead, out: chaos.OK, inv: 10.3, done: 10.31, replica: "capitol",
		heroes: heroes(live(heroC, "home", 100, 1200, "dispatch"))}
	rep = chaos.Check(runOf(specs, cleanFinals()), chaos.CheckConfig{})
	expect(t, rep, chaos.StaleAfterConverge, heroC, "capitol")
	only(t, rep, chaos.StaleAfterConverge)
}

func TestMalformedHistory(t *testing.T) {
	t.Run("completion without invocation", func(t *testing.T) {
		run := cleanRun()
		run.History = append(run.History, chaos.Event{Index: len(run.History), Op: 99, Kind: chaos.KindRead, Outcome: chaos.OK, At: sec(10.9)})
		rep := chaos.Check(run, chaos.CheckConfig{})
		a := expect(t, rep, chaos.MalformedHistory, "", "")
		if a.Op != 99 {
			t.Errorf("malformed names op %d, want 99", a.Op)
		}
		only(t, rep, chaos.MalformedHistory)
	})
	t.Run("a replica without a final", func(t *testing.T) {
		run := cleanRun()
		run.Finals = run.Finals[:3]
		rep := chaos.Check(run, chaos.CheckConfig{})
		expect(t, rep, chaos.MalformedHistory, "", "capitol")
		only(t, rep, chaos.MalformedHistory)
		if rep := chaos.Check(run, chaos.CheckConfig{Replicas: []string{"dispatch", "gotham", "metropolis"}}); !rep.OK() {
			t.Errorf("finals of every configured replica reported:\n%s", table(rep))
		}
	})
	t.Run("an ok assign without its stamp", func(t *testing.T) {
		specs := cleanSpecs()
		specs[opAssignAGotham].heroes = nil
		rep := chaos.Check(runOf(specs, cleanFinals()), chaos.CheckConfig{})
		a := expect(t, rep, chaos.MalformedHistory, heroA, "")
		if a.Op != opAssignAGotham {
			t.Errorf("malformed names op %d, want %d", a.Op, opAssignAGotham)
		}
		only(t, rep, chaos.MalformedHistory)
	})
}

// The checker is deterministic: the same run gives the same report.
func TestCheckIsDeterministic(t *testing.T) {
	run := cleanRun()
	run.Finals = setFinal(run.Finals, "capitol", heroA, nil)
	run.Finals = setFinal(run.Finals, "gotham", heroB, nil)
	run.Converged = 0
	first := table(chaos.Check(run, chaos.CheckConfig{}))
	for range 5 {
		if got := table(chaos.Check(run, chaos.CheckConfig{})); got != first {
			t.Fatalf("reports differ:\n%s\n---\n%s", first, got)
		}
	}
}
