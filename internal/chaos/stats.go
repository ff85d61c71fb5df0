package chaos

import (
	"slices"
	"time"
)

// countOps counts operations by kind and outcome and lists those of
// unknown outcome.
func countOps(ops []*operation) ([]OpCount, []OpRef) {
	byKind := map[Kind]*OpCount{}
	unknown := []OpRef{}
	for _, o := range ops {
		n := byKind[o.kind]
		if n == nil {
			n = &OpCount{Kind: o.kind}
			byKind[o.kind] = n
		}
		n.Invoked++
		switch o.outcome {
		case OK:
			n.OK++
		case Fail:
			n.Fail++
		default:
			n.Unknown++
			ref := OpRef{Op: o.id, Kind: o.kind, Hero: o.hero, To: o.to, Replica: o.replica,
				Invoked: o.invoke, Open: o.open, Error: o.err}
			if o.open {
				n.Open++
			} else {
				ref.Completed = o.done
			}
			unknown = append(unknown, ref)
		}
	}
	kinds := make([]Kind, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sortKinds(kinds)
	counts := make([]OpCount, 0, len(kinds))
	for _, k := range kinds {
		counts = append(counts, *byKind[k])
	}
	return counts, unknown
}

// faultStats sums the faults by kind, in order of their first start.
func faultStats(run Run) []FaultStat {
	end := runEnd(run)
	var out []FaultStat
	for _, f := range run.Faults {
		i := slices.IndexFunc(out, func(s FaultStat) bool { return s.Kind == f.Kind })
		if i < 0 {
			out = append(out, FaultStat{Kind: f.Kind})
			i = len(out) - 1
		}
		stop := f.End
		if stop == 0 {
			stop = end
		}
		out[i].Count++
		out[i].Total += max(stop-f.Start, 0)
	}
	if out == nil {
		out = []FaultStat{}
	}
	return out
}

// inFault reports whether t falls in a fault window [Start, End]; a fault
// never healed lasts for ever.
func inFault(faults []Fault, t time.Duration) bool {
	for _, f := range faults {
		if t >= f.Start && (f.End == 0 || t <= f.End) {
			return true
		}
	}
	return false
}

// latencyStats computes latency percentiles of answered operations per
// kind, outside then inside fault windows; a window without operations
// is left out.
func latencyStats(run Run, ops []*operation) []LatencyStat {
	type key struct {
		kind   Kind
		inside bool
	}
	lat := map[key][]time.Duration{}
	var kinds []Kind
	for _, o := range ops {
		if !o.answered() {
			continue
		}
		k := key{o.kind, inFault(run.Faults, o.invoke)}
		if !slices.Contains(kinds, o.kind) {
			kinds = append(kinds, o.kind)
		}
		lat[k] = append(lat[k], o.done-o.invoke)
	}
	sortKinds(kinds)
	out := []LatencyStat{}
	for _, kind := range kinds {
		for _, inside := range []bool{false, true} {
			ds := lat[key{kind, inside}]
			if len(ds) == 0 {
				continue
			}
			slices.Sort(ds)
			out = append(out, LatencyStat{
				Kind: kind, Inside: inside, Count: len(ds),
				P50: percentile(ds, 1, 2), P99: percentile(ds, 99, 100), Max: ds[len(ds)-1],
			})
		}
	}
	return out
}

// percentile returns the nearest-rank quantile num/den of sorted ds: the
// smallest value with at least num/den of the values at or below it.
// Integer arithmetic keeps the rank exact (p99 of 100 values is the 99th).
func percentile(ds []time.Duration, num, den int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	rank := (len(ds)*num + den - 1) / den
	return ds[min(max(rank, 1), len(ds))-1]
}
