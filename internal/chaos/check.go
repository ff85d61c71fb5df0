package chaos

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// AnomalyKind names the rule an anomaly breaks.
type AnomalyKind string

// Anomaly kinds. Check documents the exact rule behind each.
const (
	// LostCreate: a hero acknowledged to exist is missing from a Final.
	LostCreate AnomalyKind = "lost_create"
	// Resurrection: a dead hero was seen live again.
	Resurrection AnomalyKind = "resurrection"
	// LostAssign: a Final holds a hero older than an acknowledged assign.
	LostAssign AnomalyKind = "lost_assign"
	// RuleViolation: a hero broke the game's rules (health out of range,
	// a tombstone with health, health rising without an assign).
	RuleViolation AnomalyKind = "rule_violation"
	// StaleAfterConverge: after the replicas were seen equal, a read
	// showed a hero older than what was known before the last heal.
	StaleAfterConverge AnomalyKind = "stale_after_converge"
	// Diverged: the Finals are not all equal.
	Diverged AnomalyKind = "diverged"
	// NeverConverged: the replicas were not seen equal within the bound
	// after the last heal.
	NeverConverged AnomalyKind = "never_converged"
	// MalformedHistory: the record itself is inconsistent or incomplete
	// (a completion without an invocation, an ok answer without the hero
	// it must carry, a replica without a Final), so the checks it feeds
	// cannot be trusted.
	MalformedHistory AnomalyKind = "malformed_history"
)

// Anomaly is one broken rule, with the evidence that shows it.
type Anomaly struct {
	Kind AnomalyKind `json:"kind"`
	// Hero is the hero concerned, if one is.
	Hero string `json:"hero,omitempty"`
	// Replica is the replica that showed it ("dispatch" or a city), if
	// one did.
	Replica string `json:"replica,omitempty"`
	// Op is the operation concerned: the read that showed it, or the
	// create or assign that was lost; -1 when none is (a Final alone, the
	// convergence time).
	Op int `json:"op"`
	// At is when the evidence was seen: a read's invocation, or the
	// Final's read time.
	At time.Duration `json:"at_ns"`
	// Detail says what was wrong, in words.
	Detail string `json:"detail"`
}

// String formats the anomaly on one line.
func (a Anomaly) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s at %v", a.Kind, a.At)
	if a.Op >= 0 {
		fmt.Fprintf(&b, " op %d", a.Op)
	}
	if a.Replica != "" {
		fmt.Fprintf(&b, " on %s", a.Replica)
	}
	if a.Hero != "" {
		fmt.Fprintf(&b, " hero %s", a.Hero)
	}
	b.WriteString(": ")
	b.WriteString(a.Detail)
	return b.String()
}

// CheckConfig tunes Check. A zero field takes its default.
type CheckConfig struct {
	// ConvergeBound is how long after the last heal the replicas may take
	// to be seen equal. Default 10 s.
	ConvergeBound time.Duration
	// Replicas are the replicas that must each have a Final. Default
	// dispatch, gotham, metropolis and capitol.
	Replicas []string
	// StateLossFaults are the fault kinds that may restart a node with an
	// empty replica, losing its writes not yet spread; a Fault of such a
	// kind names the nodes in its Targets. Default bomb, kill_city,
	// sigkill and restart. Other kinds (sigstop, partition, drop) delay
	// messages but keep every replica's state.
	StateLossFaults []string
	// TombstoneTTL is the nodes' tombstone time-to-live when tombstones
	// may be collected during the run. Zero (the default) means the run is
	// shorter than the TTL, so no tombstone is collected and every
	// acknowledged hero must be in every Final. When set, a hero no Final
	// holds live may be missing from a Final read at least TombstoneTTL
	// after the hero's create was invoked.
	TombstoneTTL time.Duration
}

// DefaultCheckConfig returns the defaults.
func DefaultCheckConfig() CheckConfig {
	return CheckConfig{
		ConvergeBound:   10 * time.Second,
		Replicas:        []string{"dispatch", "gotham", "metropolis", "capitol"},
		StateLossFaults: []string{"bomb", "kill_city", "sigkill", "restart"},
	}
}

func (c CheckConfig) withDefaults() CheckConfig {
	d := DefaultCheckConfig()
	if c.ConvergeBound <= 0 {
		c.ConvergeBound = d.ConvergeBound
	}
	if c.Replicas == nil {
		c.Replicas = d.Replicas
	}
	if c.StateLossFaults == nil {
		c.StateLossFaults = d.StateLossFaults
	}
	return c
}

// OpCount counts the operations of one kind by outcome.
type OpCount struct {
	Kind    Kind `json:"kind"`
	Invoked int  `json:"invoked"`
	OK      int  `json:"ok"`
	Fail    int  `json:"fail"`
	// Unknown counts operations whose outcome is unknown, Open included.
	// They are neither ok nor lost.
	Unknown int `json:"unknown"`
	// Open counts operations that never completed in the history.
	Open int `json:"open"`
}

// OpRef names one operation of unknown outcome.
type OpRef struct {
	Op      int           `json:"op"`
	Kind    Kind          `json:"kind"`
	Hero    string        `json:"hero,omitempty"`
	To      string        `json:"to,omitempty"`
	Replica string        `json:"replica,omitempty"`
	Invoked time.Duration `json:"invoked_ns"`
	// Completed is when it was given up, zero when it never completed.
	Completed time.Duration `json:"completed_ns,omitempty"`
	Open      bool          `json:"open,omitempty"`
	Error     string        `json:"error,omitempty"`
}

// FaultStat sums the faults of one kind.
type FaultStat struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
	// Total is the summed length of their windows; a fault never healed
	// counts until the end of the run.
	Total time.Duration `json:"total_ns"`
}

// LatencyStat is the latency of the answered (ok or fail) operations of
// one kind, invoked inside or outside every fault window.
type LatencyStat struct {
	Kind Kind `json:"kind"`
	// Inside is true for operations invoked inside a fault window
	// [Start, End] (a fault never healed lasts to the end of the run).
	Inside bool          `json:"inside_faults"`
	Count  int           `json:"count"`
	P50    time.Duration `json:"p50_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
}

// Report is what Check found.
type Report struct {
	// Seed is the run's seed, to replay it.
	Seed uint64 `json:"seed"`
	// Anomalies are the broken rules, ordered by time, then kind, hero and
	// replica. None means the run passed.
	Anomalies []Anomaly `json:"anomalies"`
	// Ops counts operations by kind and outcome, in the order create,
	// assign, terminate, read, list, city_read, then other kinds.
	Ops []OpCount `json:"ops"`
	// Unknown lists every operation of unknown outcome, by invocation
	// time. They are never anomalies by themselves.
	Unknown []OpRef `json:"unknown"`
	// Faults sums the injected faults by kind.
	Faults []FaultStat `json:"faults"`
	// Latency is per kind, outside then inside fault windows.
	Latency []LatencyStat `json:"latency"`
	// LastHeal is when the last fault healed.
	LastHeal time.Duration `json:"last_heal_ns"`
	// Converged reports whether the replicas were seen equal after the
	// last heal; ConvergeTime is then how long after it.
	Converged     bool          `json:"converged"`
	ConvergeTime  time.Duration `json:"converge_ns"`
	ConvergeBound time.Duration `json:"converge_bound_ns"`
}

// OK reports whether the run showed no anomaly.
func (r Report) OK() bool { return len(r.Anomalies) == 0 }

// Count returns how many anomalies of kind the report holds.
func (r Report) Count(kind AnomalyKind) int {
	n := 0
	for _, a := range r.Anomalies {
		if a.Kind == kind {
			n++
		}
	}
	return n
}

// sighting is one hero as one operation or Final showed it.
type sighting struct {
	// op is the operation, -1 for a Final.
	op int
	// kind is the operation's kind, "" for a Final.
	kind    Kind
	replica string
	// invoke and done bound when the replica held it; both are the read
	// time for a Final.
	invoke, done time.Duration
	hero         Hero
}

// where describes the sighting's source for an anomaly's detail.
func (s sighting) where() string {
	if s.op < 0 {
		return "the final read of " + s.replica
	}
	return fmt.Sprintf("op %d (%s of %s, done at %v)", s.op, s.kind, s.replica, s.done)
}

// supersedes reports whether entry a wins over b by the merge rule: a
// tombstone beats any live entry, then the later stamp wins.
func supersedes(a, b Hero) bool {
	if a.Dead != b.Dead {
		return a.Dead
	}
	return b.Stamp.Less(a.Stamp)
}

// describe formats a hero's version for an anomaly's detail.
func describe(h Hero) string {
	state := "live"
	if h.Dead {
		state = "dead"
	}
	return fmt.Sprintf("%s at %s health %d stamp %s", state, h.Location, h.Health, fmtStamp(h.Stamp))
}

// checker holds one Check's working state.
type checker struct {
	run Run
	cfg CheckConfig
	ops []*operation

	// reads are the heroes shown by ok read, list and city_read
	// operations; writes those answered by ok creates and assigns;
	// finals those of the Finals.
	reads, writes, finals []sighting
	// finalOf is every replica's Final by hero id.
	finalOf    map[string]map[string]Hero
	finalOrder []Final

	created    map[string][]*operation // ok creates by hero id
	terminated map[string][]*operation // ok terminates by hero id
	assigns    map[string][]*operation // every assign by hero id
	stateLoss  map[string][]Fault      // state-loss faults by target node

	anomalies []Anomaly
	// reported dedupes anomalies by a key that names their cause.
	reported map[string]bool
}

// add records an anomaly unless one with the same key was recorded; an
// empty key never dedupes.
func (c *checker) add(key string, a Anomaly) {
	if key != "" {
		key = string(a.Kind) + "|" + key
		if c.reported[key] {
			return
		}
		c.reported[key] = true
	}
	c.anomalies = append(c.anomalies, a)
}

// Check checks a run against the cluster's promises and returns what it
// found. It is pure and deterministic. The rules, one anomaly kind each:
//
//   - malformed_history: every completion follows its own invocation,
//     once; an ok create carries the new hero's id; an ok assign carries
//     the hero as applied, with its stamp; an ok terminate names its hero;
//     a city_read names its city; every hero shown live and every entry of
//     a Final carries a stamp; each replica of cfg.Replicas has exactly one
//     Final. Reads and lists read "dispatch" unless Replica says otherwise.
//
//   - lost_create: a hero acknowledged to exist (a create answered ok, or
//     a terminate answered ok) is in every Final, live or tombstoned. With
//     cfg.TombstoneTTL set, a hero no Final holds live may be missing from
//     a Final read at least that long after the create was invoked
//     (its tombstone may have been collected).
//
//   - resurrection: (a) per replica, once a read of a replica completed
//     at T showing a hero dead (or a terminate of it was answered ok at T,
//     which dispatch applies to its own replica before answering), a read
//     of the same replica invoked after T must not show it live, unless a
//     state-loss fault hit that replica after T and before the later read
//     completed (it restarted empty and may have been refilled by a peer
//     that had not yet merged the tombstone). Reads of another replica may
//     be stale: a partitioned city keeps a hero live until it merges the
//     tombstone, which is not a resurrection; (b) every Final holds, as a
//     tombstone (or lacks), every hero terminated ok and every hero a read
//     showed dead, except a death seen only on a replica a state-loss fault
//     hit afterwards (an unacknowledged terminate or a city's fight may die
//     with it).
//
//   - lost_assign: for an assign answered ok with the hero as applied at
//     stamp S and location L, every Final holding the hero live holds it at
//     a stamp >= S, and at L if the stamp is S. A tombstone always wins; a
//     missing hero is lost_create's.
//
//   - rule_violation: every hero shown (by reads, by ok answers, in
//     Finals) has health within 0..100; a tombstone has health 0 and does
//     not patrol (crdt.Replica.Delete, used for terminate and for a death in
//     a fight alike, zeroes both, so every tombstone does); and health
//     rises only by an assign: take the live versions of a hero written by
//     one node (Stamp.Node), seen anywhere (reads, ok answers, Finals), in
//     stamp order; of two consecutive ones the later may have more health
//     only if an assign of the hero explains it: one answered ok whose
//     stamp lies in (earlier, later], or one whose stamp is not known
//     (unknown, still open, answered ok without a stamp, or failed other
//     than with a 4xx, which may be a timeout) invoked before the later
//     version was first seen; or if a state-loss fault hit that node before
//     the later version was first seen. Versions, not reads, are compared, so a stale replica (an older
//     stamp) is never taken for a fall and a rise; a node's own versions
//     form a chain on its replica (a city writes only heroes located there,
//     which only it writes), so a rise on it needs one of its assigns, while
//     versions of different nodes may come from concurrent branches (an
//     assign racing a fight during a partition) whose health is not ordered.
//
//   - stale_after_converge: once the replicas were seen equal (Converged),
//     every read invoked after Converged shows each hero at least at the
//     newest version known before the last heal: a version answered to an
//     ok create or assign, a tombstone of an ok terminate, or a version a
//     read showed, unless a state-loss fault hit the replica it was read
//     from afterwards. Reads of dispatch already reported as resurrection
//     are not reported again.
//
//   - diverged: all Finals hold the same heroes with the same stamps and
//     deaths. Each Final that differs from the winning entry (by the merge
//     rule) of a hero is reported once, unless the same replica and hero
//     were already reported as lost_create, resurrection or lost_assign.
//     With cfg.TombstoneTTL set a Final may lack a hero another holds
//     dead.
//
//   - never_converged: Run.Converged is set, not before Run.LastHeal, and
//     Converged-LastHeal <= cfg.ConvergeBound.
//
// Operations of unknown outcome (or never completed) are listed in
// Report.Unknown and never counted as ok nor as lost; an unknown create
// may or may not be in the Finals.
func Check(run Run, cfg CheckConfig) Report {
	cfg = cfg.withDefaults()
	c := &checker{
		run: run, cfg: cfg,
		finalOf:    map[string]map[string]Hero{},
		created:    map[string][]*operation{},
		terminated: map[string][]*operation{},
		assigns:    map[string][]*operation{},
		stateLoss:  map[string][]Fault{},
		reported:   map[string]bool{},
	}
	var problems []Anomaly
	c.ops, problems = pairOperations(run.History)
	c.anomalies = append(c.anomalies, problems...)
	for _, f := range run.Faults {
		if slices.Contains(cfg.StateLossFaults, f.Kind) {
			for _, t := range f.Targets {
				c.stateLoss[t] = append(c.stateLoss[t], f)
			}
		}
	}
	c.collect()
	c.collectFinals()
	for _, ss := range [][]sighting{c.reads, c.writes, c.finals} {
		for _, s := range ss {
			c.checkHeroRules(s)
		}
	}
	c.checkHealthRises()
	c.checkDeadThenLive()
	c.checkFinals()
	c.checkConvergence()
	c.checkStaleAfterConverge()

	rep := Report{
		Seed:          run.Seed,
		Anomalies:     c.anomalies,
		LastHeal:      run.LastHeal,
		ConvergeBound: cfg.ConvergeBound,
	}
	if run.Converged > 0 && run.Converged >= run.LastHeal {
		rep.Converged, rep.ConvergeTime = true, run.Converged-run.LastHeal
	}
	rep.Ops, rep.Unknown = countOps(c.ops)
	rep.Faults = faultStats(run)
	rep.Latency = latencyStats(run, c.ops)
	sortAnomalies(rep.Anomalies)
	if rep.Anomalies == nil {
		rep.Anomalies = []Anomaly{}
	}
	return rep
}

// collect gathers the sightings of the history's ok operations and
// indexes creates, terminates and assigns by hero.
func (c *checker) collect() {
	bad := func(o *operation, format string, args ...any) {
		c.add("", Anomaly{Kind: MalformedHistory, Hero: o.hero, Replica: o.replica, Op: o.id, At: o.invoke,
			Detail: fmt.Sprintf(format, args...)})
	}
	for _, o := range c.ops {
		if o.kind == KindAssign && o.hero != "" {
			c.assigns[o.hero] = append(c.assigns[o.hero], o)
		}
		if o.outcome != OK {
			continue
		}
		switch {
		case o.isRead():
			replica := o.replica
			if replica == "" {
				if o.kind == KindCityRead {
					bad(o, "city_read names no city")
					continue
				}
				replica = "dispatch"
			}
			for _, h := range o.heroes {
				if !h.Dead && h.Stamp.IsZero() {
					bad(o, "%s shows hero %s live without a stamp", o.kind, h.ID)
					continue
				}
				c.reads = append(c.reads, sighting{op: o.id, kind: o.kind, replica: replica, invoke: o.invoke, done: o.done, hero: h})
			}
		case o.kind == KindCreate:
			h, ok := o.answer()
			id := o.hero
			if id == "" && ok {
				id = h.ID
			}
			if id == "" {
				bad(o, "create answered ok without the created hero")
				continue
			}
			c.created[id] = append(c.created[id], o)
			if ok {
				h.ID = id
				c.writes = append(c.writes, sighting{op: o.id, kind: o.kind, replica: "dispatch", invoke: o.invoke, done: o.done, hero: h})
			}
		case o.kind == KindAssign:
			h, ok := o.answer()
			if !ok || h.Stamp.IsZero() || o.hero == "" {
				bad(o, "assign answered ok without the hero as applied and its stamp")
				continue
			}
			replica := o.to
			if replica == "" || replica == "home" {
				replica = "dispatch"
			}
			c.writes = append(c.writes, sighting{op: o.id, kind: o.kind, replica: replica, invoke: o.invoke, done: o.done, hero: h})
		case o.kind == KindTerminate:
			if o.hero == "" {
				bad(o, "terminate answered ok names no hero")
				continue
			}
			c.terminated[o.hero] = append(c.terminated[o.hero], o)
		}
	}
}

// collectFinals indexes the Finals and checks that each replica has one.
func (c *checker) collectFinals() {
	for _, f := range c.run.Finals {
		if _, dup := c.finalOf[f.Replica]; dup {
			c.add("", Anomaly{Kind: MalformedHistory, Replica: f.Replica, Op: -1, At: f.At,
				Detail: "two final reads of " + f.Replica})
			continue
		}
		m := make(map[string]Hero, len(f.Heroes))
		for _, h := range f.Heroes {
			if h.Stamp.IsZero() {
				c.add("", Anomaly{Kind: MalformedHistory, Hero: h.ID, Replica: f.Replica, Op: -1, At: f.At,
					Detail: "final entry without a stamp"})
			}
			m[h.ID] = h
			c.finals = append(c.finals, sighting{op: -1, replica: f.Replica, invoke: f.At, done: f.At, hero: h})
		}
		c.finalOf[f.Replica] = m
		c.finalOrder = append(c.finalOrder, f)
	}
	for _, r := range c.cfg.Replicas {
		if _, ok := c.finalOf[r]; !ok {
			c.add("", Anomaly{Kind: MalformedHistory, Replica: r, Op: -1, At: runEnd(c.run),
				Detail: "no final read of " + r})
		}
	}
}

// lostState reports whether a state-loss fault hit node after from and
// before to: it started before to and had not healed by from.
func (c *checker) lostState(node string, from, to time.Duration) bool {
	for _, f := range c.stateLoss[node] {
		if f.Start < to && (f.End == 0 || f.End > from) {
			return true
		}
	}
	return false
}

// checkHeroRules checks one hero shown: health in range, tombstones with
// health 0 and not patrolling. Each bad version is reported once.
func (c *checker) checkHeroRules(s sighting) {
	h := s.hero
	key := fmt.Sprintf("%s|%s|%d|%t|%t", h.ID, fmtStamp(h.Stamp), h.Health, h.Dead, h.Patrolling)
	bad := func(rule, detail string) {
		c.add(rule+"|"+key, Anomaly{Kind: RuleViolation, Hero: h.ID, Replica: s.replica, Op: s.op, At: s.invoke,
			Detail: detail + " in " + s.where()})
	}
	if h.Health < 0 || h.Health > 100 {
		bad("range", fmt.Sprintf("health %d outside 0..100 (%s)", h.Health, describe(h)))
	}
	if h.Dead && h.Health != 0 {
		bad("dead-health", fmt.Sprintf("dead with health %d; every tombstone holds health 0 (%s)", h.Health, describe(h)))
	}
	if h.Dead && h.Patrolling {
		bad("dead-patrol", fmt.Sprintf("dead and patrolling (%s)", describe(h)))
	}
}

// version is one live version of a hero and where it was first seen.
type version struct {
	hero  Hero
	first sighting
}

// checkHealthRises applies the rule that health rises only by an assign
// to each node's chain of versions of each hero.
func (c *checker) checkHealthRises() {
	type key struct{ hero, node string }
	chains := map[key]map[Stamp]*version{}
	for _, ss := range [][]sighting{c.reads, c.writes, c.finals} {
		for _, s := range ss {
			h := s.hero
			if h.Dead || h.Stamp.IsZero() {
				continue
			}
			k := key{h.ID, h.Stamp.Node}
			if chains[k] == nil {
				chains[k] = map[Stamp]*version{}
			}
			if v := chains[k][h.Stamp]; v == nil || s.done < v.first.done {
				chains[k][h.Stamp] = &version{hero: h, first: s}
			}
		}
	}
	keys := make([]key, 0, len(chains))
	for k := range chains {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return strings.Compare(a.hero+"\x00"+a.node, b.hero+"\x00"+b.node)
	})
	for _, k := range keys {
		vs := make([]*version, 0, len(chains[k]))
		for _, v := range chains[k] {
			vs = append(vs, v)
		}
		slices.SortFunc(vs, func(a, b *version) int {
			if a.hero.Stamp.Less(b.hero.Stamp) {
				return -1
			}
			return 1
		})
		for i := 1; i < len(vs); i++ {
			lo, hi := vs[i-1], vs[i]
			if hi.hero.Health <= lo.hero.Health || c.riseExcused(k.hero, k.node, lo.hero.Stamp, hi.hero.Stamp, hi.first.done) {
				continue
			}
			c.add("", Anomaly{Kind: RuleViolation, Hero: k.hero, Replica: hi.first.replica, Op: hi.first.op, At: hi.first.invoke,
				Detail: fmt.Sprintf("health rose from %d (stamp %s, first seen in %s) to %d (stamp %s, first seen in %s), both written by %s, with no assign of the hero between them",
					lo.hero.Health, fmtStamp(lo.hero.Stamp), lo.first.where(), hi.hero.Health, fmtStamp(hi.hero.Stamp), hi.first.where(), k.node)})
		}
	}
}

// riseExcused reports whether a rise of hero's health from stamp lo to
// stamp hi, both written by node, the later first seen at seen, is
// explained by an assign or by node losing its state.
func (c *checker) riseExcused(hero, node string, lo, hi Stamp, seen time.Duration) bool {
	for _, a := range c.assigns[hero] {
		if !a.mayHaveApplied() {
			continue
		}
		if a.outcome == OK {
			if h, ok := a.answer(); ok && !h.Stamp.IsZero() {
				if lo.Less(h.Stamp) && !hi.Less(h.Stamp) {
					return true
				}
				continue
			}
		}
		if a.invoke < seen {
			return true
		}
	}
	return c.lostState(node, time.Duration(math.MinInt64), seen)
}

// deathMark is evidence that a replica held a hero dead from at on.
type deathMark struct {
	at     time.Duration
	op     int
	detail string
}

// deathMarks returns, per replica and hero, the moments reads showed the
// hero dead there, and dispatch's for every terminate answered ok, sorted
// by time.
func (c *checker) deathMarks() map[[2]string][]deathMark {
	marks := map[[2]string][]deathMark{}
	for _, s := range c.reads {
		if s.hero.Dead {
			k := [2]string{s.replica, s.hero.ID}
			marks[k] = append(marks[k], deathMark{at: s.done, op: s.op, detail: s.where() + " showed it dead"})
		}
	}
	for id, ts := range c.terminated {
		for _, t := range ts {
			k := [2]string{"dispatch", id}
			marks[k] = append(marks[k], deathMark{at: t.done, op: t.id,
				detail: fmt.Sprintf("terminate op %d was answered ok at %v", t.id, t.done)})
		}
	}
	for _, ms := range marks {
		slices.SortStableFunc(ms, func(a, b deathMark) int { return cmpDuration(a.at, b.at) })
	}
	return marks
}

// checkDeadThenLive applies resurrection rule (a): per replica, dead
// then live.
func (c *checker) checkDeadThenLive() {
	marks := c.deathMarks()
	for _, s := range c.reads {
		if s.hero.Dead {
			continue
		}
		ms := marks[[2]string{s.replica, s.hero.ID}]
		// The latest mark completed before the read was invoked.
		i := sort.Search(len(ms), func(i int) bool { return ms[i].at >= s.invoke }) - 1
		if i < 0 || c.lostState(s.replica, ms[i].at, s.done) {
			continue
		}
		c.add(s.replica+"|"+s.hero.ID, Anomaly{Kind: Resurrection, Hero: s.hero.ID, Replica: s.replica, Op: s.op, At: s.invoke,
			Detail: fmt.Sprintf("%s shows it %s, invoked after %s", s.where(), describe(s.hero), ms[i].detail)})
	}
}

// checkFinals applies the rules on Finals: lost_create, resurrection (b),
// lost_assign and diverged.
func (c *checker) checkFinals() {
	if len(c.finalOrder) == 0 {
		return
	}
	liveInSomeFinal := func(id string) bool {
		for _, f := range c.finalOrder {
			if h, ok := c.finalOf[f.Replica][id]; ok && !h.Dead {
				return true
			}
		}
		return false
	}

	// lost_create: acknowledged heroes missing from a Final.
	type ack struct {
		earliest time.Duration // earliest the hero can have been created
		detail   string
		op       int
	}
	acked := map[string]ack{}
	for id, os := range c.created {
		o := os[0]
		acked[id] = ack{earliest: o.invoke, op: o.id, detail: fmt.Sprintf("create op %d was answered ok at %v", o.id, o.done)}
	}
	for id, os := range c.terminated {
		if _, ok := acked[id]; !ok {
			o := os[0]
			acked[id] = ack{earliest: 0, op: o.id, detail: fmt.Sprintf("terminate op %d was answered ok at %v", o.id, o.done)}
		}
	}
	for _, id := range sortedKeys(acked) {
		a := acked[id]
		for _, f := range c.finalOrder {
			if _, ok := c.finalOf[f.Replica][id]; ok {
				continue
			}
			if c.cfg.TombstoneTTL > 0 && !liveInSomeFinal(id) && f.At >= a.earliest+c.cfg.TombstoneTTL {
				continue
			}
			c.add(f.Replica+"|"+id, Anomaly{Kind: LostCreate, Hero: id, Replica: f.Replica, Op: a.op, At: f.At,
				Detail: fmt.Sprintf("missing from the final read of %s, though %s", f.Replica, a.detail)})
		}
	}

	// resurrection (b): known deaths live in a Final.
	deaths := map[string]string{}
	for id, os := range c.terminated {
		deaths[id] = fmt.Sprintf("terminate op %d was answered ok at %v", os[0].id, os[0].done)
	}
	for _, s := range c.reads {
		if _, ok := deaths[s.hero.ID]; ok || !s.hero.Dead || c.lostState(s.replica, s.done, never) {
			continue
		}
		deaths[s.hero.ID] = s.where() + " showed it dead"
	}
	for _, id := range sortedKeys(deaths) {
		for _, f := range c.finalOrder {
			if h, ok := c.finalOf[f.Replica][id]; ok && !h.Dead {
				c.add(f.Replica+"|"+id, Anomaly{Kind: Resurrection, Hero: id, Replica: f.Replica, Op: -1, At: f.At,
					Detail: fmt.Sprintf("the final read of %s holds it %s, though %s", f.Replica, describe(h), deaths[id])})
			}
		}
	}

	// lost_assign: Finals older than an acknowledged assign.
	for _, s := range c.writes {
		if s.kind != KindAssign {
			continue
		}
		want := s.hero
		for _, f := range c.finalOrder {
			h, ok := c.finalOf[f.Replica][want.ID]
			if !ok || h.Dead {
				continue
			}
			if h.Stamp.Less(want.Stamp) || (h.Stamp == want.Stamp && h.Location != want.Location) {
				c.add(f.Replica+"|"+want.ID+"|"+fmt.Sprint(s.op), Anomaly{Kind: LostAssign, Hero: want.ID, Replica: f.Replica, Op: s.op, At: f.At,
					Detail: fmt.Sprintf("the final read of %s holds it %s, though assign op %d was answered ok at %v with it %s",
						f.Replica, describe(h), s.op, s.done, describe(want))})
			}
		}
	}

	// diverged: Finals that differ from the winning entry.
	explained := map[string]bool{}
	for _, a := range c.anomalies {
		if a.Kind == LostCreate || a.Kind == LostAssign || (a.Kind == Resurrection && a.Op < 0) {
			explained[a.Replica+"|"+a.Hero] = true
		}
	}
	ids := map[string]Hero{}
	for _, f := range c.finalOrder {
		for id, h := range c.finalOf[f.Replica] {
			if w, ok := ids[id]; !ok || supersedes(h, w) {
				ids[id] = h
			}
		}
	}
	for _, id := range sortedKeys(ids) {
		win := ids[id]
		holder := ""
		for _, f := range c.finalOrder {
			if h, ok := c.finalOf[f.Replica][id]; ok && h.Stamp == win.Stamp && h.Dead == win.Dead {
				holder = f.Replica
				break
			}
		}
		for _, f := range c.finalOrder {
			h, ok := c.finalOf[f.Replica][id]
			if ok && h.Stamp == win.Stamp && h.Dead == win.Dead {
				continue
			}
			if explained[f.Replica+"|"+id] || (!ok && win.Dead && c.cfg.TombstoneTTL > 0) {
				continue
			}
			held := "lacks it"
			if ok {
				held = "holds it " + describe(h)
			}
			c.add(f.Replica+"|"+id, Anomaly{Kind: Diverged, Hero: id, Replica: f.Replica, Op: -1, At: f.At,
				Detail: fmt.Sprintf("the final read of %s %s, while %s holds it %s", f.Replica, held, holder, describe(win))})
		}
	}
}

// checkConvergence applies the never_converged rule.
func (c *checker) checkConvergence() {
	run := c.run
	var detail string
	switch {
	case run.Converged == 0:
		detail = fmt.Sprintf("the replicas were never seen equal after the last heal at %v", run.LastHeal)
	case run.Converged < run.LastHeal:
		detail = fmt.Sprintf("converged at %v, before the last heal at %v", run.Converged, run.LastHeal)
	case run.Converged-run.LastHeal > c.cfg.ConvergeBound:
		detail = fmt.Sprintf("the replicas took %v after the last heal to be seen equal, more than the bound %v",
			run.Converged-run.LastHeal, c.cfg.ConvergeBound)
	default:
		return
	}
	c.add("", Anomaly{Kind: NeverConverged, Op: -1, At: max(run.Converged, run.LastHeal), Detail: detail})
}

// checkStaleAfterConverge applies the stale_after_converge rule.
func (c *checker) checkStaleAfterConverge() {
	run := c.run
	if run.Converged == 0 || run.Converged < run.LastHeal {
		return
	}
	type known struct {
		hero   Hero
		detail string
	}
	newest := map[string]known{}
	learn := func(h Hero, detail string) {
		if k, ok := newest[h.ID]; !ok || supersedes(h, k.hero) {
			newest[h.ID] = known{h, detail}
		}
	}
	for _, s := range c.writes {
		if s.done <= run.LastHeal {
			learn(s.hero, fmt.Sprintf("%s op %d was answered ok at %v with it %s", s.kind, s.op, s.done, describe(s.hero)))
		}
	}
	for id, os := range c.terminated {
		for _, o := range os {
			if o.done <= run.LastHeal {
				learn(Hero{ID: id, Dead: true}, fmt.Sprintf("terminate op %d was answered ok at %v", o.id, o.done))
				break
			}
		}
	}
	for _, s := range c.reads {
		if s.done <= run.LastHeal && !c.lostState(s.replica, s.done, never) {
			learn(s.hero, fmt.Sprintf("%s showed it %s", s.where(), describe(s.hero)))
		}
	}
	for _, s := range c.reads {
		k, ok := newest[s.hero.ID]
		if s.invoke <= run.Converged || s.hero.Dead || !ok || !supersedes(k.hero, s.hero) {
			continue
		}
		if c.reported[string(Resurrection)+"|"+s.replica+"|"+s.hero.ID] {
			continue
		}
		c.add(s.replica+"|"+s.hero.ID, Anomaly{Kind: StaleAfterConverge, Hero: s.hero.ID, Replica: s.replica, Op: s.op, At: s.invoke,
			Detail: fmt.Sprintf("%s shows it %s after the replicas converged at %v, though before the last heal %s",
				s.where(), describe(s.hero), run.Converged, k.detail)})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sortAnomalies(as []Anomaly) {
	slices.SortStableFunc(as, func(a, b Anomaly) int {
		if c := cmpDuration(a.At, b.At); c != 0 {
			return c
		}
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		if c := strings.Compare(a.Hero, b.Hero); c != 0 {
			return c
		}
		return strings.Compare(a.Replica, b.Replica)
	})
}
