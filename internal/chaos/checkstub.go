package chaos

// STAND-IN, TO DELETE WHEN BRANCH chaoscheck IS MERGED. The checker
// (Check, Report, Report.Table, the JSON Summary, Plot) is written on
// branch chaoscheck; this file gives scripts/chaos the same names with a
// minimal check, so that the soak runs end to end until then. It checks
// only: acknowledged creates present on every final replica, acknowledged
// terminates dead on every one, acknowledged writes not overwritten by an
// older stamp, finals equal, and convergence observed.

import (
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// CheckConfig configures Check (the fields the soak sets, as on branch
// chaoscheck).
type CheckConfig struct {
	// ConvergeBound is how long after the last heal the replicas may take
	// to be seen equal.
	ConvergeBound time.Duration
	// Replicas are the replicas that must each have a Final, dispatch and
	// the cities.
	Replicas []string
}

// Anomaly is one thing the history shows went wrong.
type Anomaly struct {
	Kind   string `json:"kind"`
	Hero   string `json:"hero,omitempty"`
	Detail string `json:"detail"`
}

// OpStats counts one kind of operation by outcome, with the latency of
// its completions.
type OpStats struct {
	Kind    Kind    `json:"kind"`
	OK      int     `json:"ok"`
	Fail    int     `json:"fail"`
	Unknown int     `json:"unknown"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// Summary is the report as JSON.
type Summary struct {
	Seed        uint64         `json:"seed"`
	Ops         []OpStats      `json:"ops"`
	Faults      map[string]int `json:"faults"`
	Unhealed    int            `json:"unhealed_faults"`
	LastHealMs  float64        `json:"last_heal_ms"`
	ConvergeMs  float64        `json:"converge_ms"` // from the last heal; -1 if never
	Anomalies   []Anomaly      `json:"anomalies"`
	AnomalyKind map[string]int `json:"anomaly_kinds"`
}

// Report is what Check found.
type Report struct {
	s Summary
}

// Summary reduces the report for JSON.
func (r Report) Summary() Summary { return r.s }

// OK reports whether there is no anomaly.
func (r Report) OK() bool { return len(r.s.Anomalies) == 0 }

// Check checks a run.
func Check(run Run, cfg CheckConfig) Report {
	s := Summary{Seed: run.Seed, Faults: map[string]int{}, AnomalyKind: map[string]int{}, ConvergeMs: -1, Anomalies: []Anomaly{}}
	s.Ops = opStats(run.History)
	for _, f := range run.Faults {
		s.Faults[f.Kind]++
		if f.End == 0 {
			s.Unhealed++
		}
	}
	s.LastHealMs = ms(run.LastHeal)
	if run.Converged > 0 {
		s.ConvergeMs = ms(run.Converged - run.LastHeal)
	}
	add := func(kind, hero, format string, args ...any) {
		s.Anomalies = append(s.Anomalies, Anomaly{Kind: kind, Hero: hero, Detail: fmt.Sprintf(format, args...)})
		s.AnomalyKind[kind]++
	}
	if run.Converged == 0 || run.Converged-run.LastHeal > cfg.ConvergeBound {
		add("never_converged", "", "replicas not seen equal within %v after the last heal", cfg.ConvergeBound)
	}
	var cities []string
	for _, r := range cfg.Replicas {
		if r != "dispatch" {
			cities = append(cities, r)
		}
	}
	finals := map[string]map[string]Hero{}
	for _, f := range run.Finals {
		m := map[string]Hero{}
		for _, h := range f.Heroes {
			m[h.ID] = h
		}
		finals[f.Replica] = m
	}
	replicas := slices.Sorted(func(yield func(string) bool) {
		for k := range finals {
			if !yield(k) {
				return
			}
		}
	})
	for _, e := range run.History {
		if e.Outcome != OK || e.Hero == "" {
			continue
		}
		for _, rep := range replicas {
			h, ok := finals[rep][e.Hero]
			switch e.Kind {
			case KindCreate:
				if !ok {
					add("lost_create", e.Hero, "op %d acknowledged at %v, absent from %s", e.Op, e.At, rep)
				}
			case KindTerminate:
				if ok && !h.Dead {
					add("resurrected", e.Hero, "op %d terminated at %v, live on %s", e.Op, e.At, rep)
				}
			}
			if e.Kind == KindCreate || e.Kind == KindAssign {
				for _, w := range e.Heroes {
					if ok && !h.Dead && !h.Stamp.IsZero() && h.Stamp.Less(w.Stamp) {
						add("lost_update", e.Hero, "op %d %s acknowledged stamp %v, %s holds older %v", e.Op, e.Kind, w.Stamp, rep, h.Stamp)
					}
				}
			}
		}
	}
	staleReads(run.History, finals, add)
	if len(cities) > 0 {
		ref := finals[cities[0]]
		for _, rep := range replicas {
			for id, a := range ref {
				b, ok := finals[rep][id]
				same := ok && (a == b || (rep == "dispatch" && a.Dead && b.Dead && b.Stamp.IsZero()))
				if !same {
					add("diverged", id, "%s %+v, %s %+v (present %v)", cities[0], a, rep, b, ok)
				}
			}
			for id := range finals[rep] {
				if _, ok := ref[id]; !ok {
					add("diverged", id, "absent from %s, on %s", cities[0], rep)
				}
			}
		}
	}
	return Report{s: s}
}

// staleReads flags reads of dispatch that miss what was acknowledged
// before they began: a list without a hero whose create was acknowledged
// and which is live on every final replica (so it was never dead), a read
// answering 404 for such a hero, and a read or list showing a hero with a
// stamp older than a write to it acknowledged before the read began.
func staleReads(history []Event, finals map[string]map[string]Hero, add func(kind, hero, format string, args ...any)) {
	type write struct {
		at    time.Duration
		stamp Stamp
		op    int
	}
	invoked := map[int]Event{}
	created := map[string]time.Duration{}
	writes := map[string][]write{}
	for _, e := range history {
		if e.Outcome == Invoke {
			invoked[e.Op] = e
			continue
		}
		if e.Outcome != OK {
			continue
		}
		if e.Kind == KindCreate {
			created[e.Hero] = e.At
		}
		if e.Kind == KindCreate || e.Kind == KindAssign {
			for _, h := range e.Heroes {
				writes[h.ID] = append(writes[h.ID], write{e.At, h.Stamp, e.Op})
			}
		}
	}
	liveAtEnd := func(id string) bool {
		for _, f := range finals {
			if h, ok := f[id]; !ok || h.Dead {
				return false
			}
		}
		return len(finals) > 0
	}
	for _, e := range history {
		if e.Outcome != OK || (e.Kind != KindList && e.Kind != KindRead) {
			continue
		}
		start := invoked[e.Op].At
		got := map[string]Hero{}
		for _, h := range e.Heroes {
			got[h.ID] = h
		}
		var ids []string
		if e.Kind == KindRead {
			ids = []string{e.Hero}
		} else {
			for id := range created {
				ids = append(ids, id)
			}
		}
		for _, id := range ids {
			at, ok := created[id]
			h, seen := got[id]
			if ok && at < start && !seen && liveAtEnd(id) {
				add("stale_read", id, "%s op %d began at %v without the hero, created (acknowledged) at %v and live at the end (status %d)", e.Kind, e.Op, start, at, e.Status)
				continue
			}
			if !seen || h.Dead {
				continue
			}
			for _, w := range writes[id] {
				if w.at < start && h.Stamp.Less(w.stamp) {
					add("stale_read", id, "%s op %d began at %v and shows stamp %v, older than op %d's acknowledged at %v (%v)", e.Kind, e.Op, start, h.Stamp, w.op, w.at, w.stamp)
					break
				}
			}
		}
	}
}

func opStats(history []Event) []OpStats {
	invoked := map[int]time.Duration{}
	by := map[Kind]*OpStats{}
	lat := map[Kind][]time.Duration{}
	for _, e := range history {
		if e.Outcome == Invoke {
			invoked[e.Op] = e.At
			continue
		}
		st := by[e.Kind]
		if st == nil {
			st = &OpStats{Kind: e.Kind}
			by[e.Kind] = st
		}
		switch e.Outcome {
		case OK:
			st.OK++
		case Fail:
			st.Fail++
		case Unknown:
			st.Unknown++
		}
		if at, ok := invoked[e.Op]; ok && e.Outcome == OK {
			lat[e.Kind] = append(lat[e.Kind], e.At-at)
		}
	}
	var out []OpStats
	for k, st := range by {
		ds := lat[k]
		slices.Sort(ds)
		if len(ds) > 0 {
			st.P50Ms = ms(ds[(len(ds)-1)*50/100])
			st.P99Ms = ms(ds[(len(ds)-1)*99/100])
			st.MaxMs = ms(ds[len(ds)-1])
		}
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// Table writes the report for people.
func (r Report) Table(w io.Writer) error {
	s := r.s
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "op\tok\tfail\tunknown\tp50_ms\tp99_ms\tmax_ms")
	for _, o := range s.Ops {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\n", o.Kind, o.OK, o.Fail, o.Unknown, o.P50Ms, o.P99Ms, o.MaxMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var faults []string
	for _, k := range slices.Sorted(keys(s.Faults)) {
		faults = append(faults, fmt.Sprintf("%s=%d", k, s.Faults[k]))
	}
	fmt.Fprintf(w, "faults: %s (unhealed %d)\n", strings.Join(faults, " "), s.Unhealed)
	if s.ConvergeMs >= 0 {
		fmt.Fprintf(w, "converged: %.0f ms after the last heal (at %.1f s)\n", s.ConvergeMs, s.LastHealMs/1000)
	} else {
		fmt.Fprintf(w, "converged: never after the last heal (at %.1f s)\n", s.LastHealMs/1000)
	}
	fmt.Fprintf(w, "anomalies: %d\n", len(s.Anomalies))
	for i, a := range s.Anomalies {
		if i == 20 {
			fmt.Fprintf(w, "  ... %d more\n", len(s.Anomalies)-i)
			break
		}
		fmt.Fprintf(w, "  %s %s: %s\n", a.Kind, a.Hero, a.Detail)
	}
	return nil
}

func keys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Plot draws every completion's latency over the run (ok green, fail
// orange, unknown red, log scale) over the fault windows, as SVG.
func Plot(run Run, path string) error {
	const W, H, left, bottom = 1000.0, 420.0, 50.0, 30.0
	var end time.Duration
	for _, e := range run.History {
		end = max(end, e.At)
	}
	if end == 0 {
		end = time.Second
	}
	x := func(d time.Duration) float64 { return left + (W-left-10)*float64(d)/float64(end) }
	y := func(d time.Duration) float64 { // 0.1 ms .. 10 s, log
		v := math.Log10(max(float64(d)/1e6, 0.1))
		return (H - bottom) - (H-bottom-10)*(v+1)/5
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for _, f := range run.Faults {
		stop := f.End
		if stop == 0 {
			stop = end
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="10" width="%.1f" height="%.1f" fill="#88f" fill-opacity="0.15"><title>%s</title></rect>`+"\n",
			x(f.Start), max(x(stop)-x(f.Start), 1), H-bottom-10, html.EscapeString(f.Kind+" "+strings.Join(f.Targets, ",")))
		fmt.Fprintf(&b, `<text x="%.1f" y="20" fill="#446">%s</text>`+"\n", x(f.Start)+2, html.EscapeString(f.Kind+" "+strings.Join(f.Targets, ",")))
	}
	for _, ms := range []float64{0.1, 1, 10, 100, 1000, 10000} {
		yy := y(time.Duration(ms * 1e6))
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="4" y="%.1f">%g ms</text>`+"\n", left, W-10, yy, yy, yy+4, ms)
	}
	color := map[Outcome]string{OK: "#2a2", Fail: "#e90", Unknown: "#d22"}
	invoked := map[int]time.Duration{}
	for _, e := range run.History {
		if e.Outcome == Invoke {
			invoked[e.Op] = e.At
			continue
		}
		if at, ok := invoked[e.Op]; ok {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="1.5" fill="%s"/>`+"\n", x(at), y(e.At-at), color[e.Outcome])
		}
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">time (s, run of %.0f s); ok green, fail orange, unknown red; faults shaded</text>`+"\n", left, H-8, end.Seconds())
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
