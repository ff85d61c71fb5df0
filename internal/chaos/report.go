package chaos

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// summaryExamples is how many anomalies of each kind Summary and Table
// show in full.
const summaryExamples = 5

// anomalyOrder is the order in which reports list anomaly kinds.
var anomalyOrder = []AnomalyKind{
	MalformedHistory, LostCreate, LostAssign, Resurrection, RuleViolation,
	StaleAfterConverge, Diverged, NeverConverged,
}

// Summary is a report reduced for printing or for JSON (the runner's
// -json): counts, the first few anomalies of each kind, and durations in
// seconds or milliseconds.
type Summary struct {
	OK   bool   `json:"ok"`
	Seed uint64 `json:"seed"`
	// Ops counts operations by kind and outcome.
	Ops []OpCount `json:"ops"`
	// Unknown is how many operations have an unknown outcome (Ops has
	// them by kind; Report.Unknown lists them).
	Unknown   int            `json:"unknown"`
	Faults    []FaultSummary `json:"faults"`
	Anomalies []AnomalyGroup `json:"anomalies"`
	Converged bool           `json:"converged"`
	// ConvergeSeconds is how long after the last heal the replicas were
	// seen equal, meaningful when Converged.
	ConvergeSeconds      float64          `json:"converge_s"`
	ConvergeBoundSeconds float64          `json:"converge_bound_s"`
	LastHealSeconds      float64          `json:"last_heal_s"`
	Latency              []LatencySummary `json:"latency"`
}

// FaultSummary is FaultStat in seconds.
type FaultSummary struct {
	Kind         string  `json:"kind"`
	Count        int     `json:"count"`
	TotalSeconds float64 `json:"total_s"`
}

// AnomalyGroup is the anomalies of one kind: how many, and the first few.
type AnomalyGroup struct {
	Kind     AnomalyKind `json:"kind"`
	Count    int         `json:"count"`
	Examples []Anomaly   `json:"examples"`
}

// LatencySummary is LatencyStat in milliseconds.
type LatencySummary struct {
	Kind Kind `json:"kind"`
	// Window is "outside_faults" or "inside_faults".
	Window string  `json:"window"`
	Count  int     `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Summary reduces the report.
func (r Report) Summary() Summary {
	s := Summary{
		OK:                   r.OK(),
		Seed:                 r.Seed,
		Ops:                  r.Ops,
		Unknown:              len(r.Unknown),
		Faults:               []FaultSummary{},
		Anomalies:            r.groups(),
		Converged:            r.Converged,
		ConvergeSeconds:      r.ConvergeTime.Seconds(),
		ConvergeBoundSeconds: r.ConvergeBound.Seconds(),
		LastHealSeconds:      r.LastHeal.Seconds(),
		Latency:              []LatencySummary{},
	}
	if s.Ops == nil {
		s.Ops = []OpCount{}
	}
	for _, f := range r.Faults {
		s.Faults = append(s.Faults, FaultSummary{Kind: f.Kind, Count: f.Count, TotalSeconds: f.Total.Seconds()})
	}
	for _, l := range r.Latency {
		w := "outside_faults"
		if l.Inside {
			w = "inside_faults"
		}
		s.Latency = append(s.Latency, LatencySummary{Kind: l.Kind, Window: w, Count: l.Count,
			P50Ms: ms(l.P50), P99Ms: ms(l.P99), MaxMs: ms(l.Max)})
	}
	return s
}

// groups groups the anomalies by kind, in anomalyOrder then by name.
func (r Report) groups() []AnomalyGroup {
	out := []AnomalyGroup{}
	for _, a := range r.Anomalies {
		i := slices.IndexFunc(out, func(g AnomalyGroup) bool { return g.Kind == a.Kind })
		if i < 0 {
			out = append(out, AnomalyGroup{Kind: a.Kind, Examples: []Anomaly{}})
			i = len(out) - 1
		}
		out[i].Count++
		if len(out[i].Examples) < summaryExamples {
			out[i].Examples = append(out[i].Examples, a)
		}
	}
	rank := func(k AnomalyKind) int {
		if i := slices.Index(anomalyOrder, k); i >= 0 {
			return i
		}
		return len(anomalyOrder)
	}
	slices.SortStableFunc(out, func(a, b AnomalyGroup) int {
		if ra, rb := rank(a.Kind), rank(b.Kind); ra != rb {
			return ra - rb
		}
		if a.Kind < b.Kind {
			return -1
		}
		if a.Kind > b.Kind {
			return 1
		}
		return 0
	})
	return out
}

// Table prints the report for a person: operations by kind and outcome,
// faults by kind, anomalies by kind with the first few in full, the time
// to converge after the last fault, and latency percentiles per kind
// outside and inside fault windows.
func (r Report) Table(w io.Writer) error {
	s := r.Summary()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }

	verdict := "PASS: no anomaly"
	if !s.OK {
		n := 0
		for _, g := range s.Anomalies {
			n += g.Count
		}
		verdict = fmt.Sprintf("FAIL: %d anomalies", n)
	}
	p("chaos soak, seed %d: %s\n\n", s.Seed, verdict)

	p("operation\tinvoked\tok\tfail\tunknown\tof which open\n")
	for _, o := range s.Ops {
		p("%s\t%d\t%d\t%d\t%d\t%d\n", o.Kind, o.Invoked, o.OK, o.Fail, o.Unknown, o.Open)
	}
	p("\n")

	if len(s.Faults) == 0 {
		p("faults: none\n\n")
	} else {
		p("fault\tcount\ttotal\n")
		for _, f := range s.Faults {
			p("%s\t%d\t%.1fs\n", f.Kind, f.Count, f.TotalSeconds)
		}
		p("\n")
	}

	if len(s.Anomalies) == 0 {
		p("anomalies: none\n\n")
	} else {
		p("anomaly\tcount\t\n")
		for _, g := range s.Anomalies {
			p("%s\t%d\t\n", g.Kind, g.Count)
		}
		// Details go after the table: they are too long for a column.
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, g := range s.Anomalies {
			for _, a := range g.Examples {
				fmt.Fprintf(w, "  - %s\n", a)
			}
			if g.Count > len(g.Examples) {
				fmt.Fprintf(w, "  ... and %d more %s\n", g.Count-len(g.Examples), g.Kind)
			}
		}
		fmt.Fprintln(w)
	}

	if s.Converged {
		p("converged %.2fs after the last heal at %.2fs (bound %.0fs)\n\n", s.ConvergeSeconds, s.LastHealSeconds, s.ConvergeBoundSeconds)
	} else {
		p("never seen converged after the last heal at %.2fs (bound %.0fs)\n\n", s.LastHealSeconds, s.ConvergeBoundSeconds)
	}

	p("latency (ms)\toutside faults n\tp50\tp99\tinside faults n\tp50\tp99\n")
	type pair struct{ out, in *LatencySummary }
	var kinds []Kind
	rows := map[Kind]*pair{}
	for i := range s.Latency {
		l := &s.Latency[i]
		if rows[l.Kind] == nil {
			rows[l.Kind] = &pair{}
			kinds = append(kinds, l.Kind)
		}
		if l.Window == "inside_faults" {
			rows[l.Kind].in = l
		} else {
			rows[l.Kind].out = l
		}
	}
	cell := func(l *LatencySummary) string {
		if l == nil {
			return "0\t-\t-"
		}
		return fmt.Sprintf("%d\t%.1f\t%.1f", l.Count, l.P50Ms, l.P99Ms)
	}
	for _, k := range kinds {
		p("%s\t%s\t%s\n", k, cell(rows[k].out), cell(rows[k].in))
	}
	return tw.Flush()
}
