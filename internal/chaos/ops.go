package chaos

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// never is the completion time of an operation that never completed: it
// may take effect at any time after its invocation.
const never = time.Duration(math.MaxInt64)

// operation is an invocation paired with its completion.
type operation struct {
	id      int
	kind    Kind
	client  int
	via     string
	hero    string
	to      string
	replica string
	invoke  time.Duration
	// done is the completion time, never for an open operation.
	done time.Duration
	// outcome is OK, Fail or Unknown; an open operation is Unknown.
	outcome Outcome
	open    bool
	status  int
	err     string
	heroes  []Hero
}

// answered reports whether a node answered the operation (ok or fail).
func (o *operation) answered() bool { return o.outcome == OK || o.outcome == Fail }

// mayHaveApplied reports whether the operation may have taken effect. A
// failure with a 4xx status is a refusal that changed nothing; any other
// failure (a 5xx, or no status) is treated as possibly applied, so that a
// misclassified timeout can never make the checker cry wolf.
func (o *operation) mayHaveApplied() bool {
	return o.outcome != Fail || o.status < 400 || o.status > 499
}

// isRead reports whether the operation only reads.
func (o *operation) isRead() bool {
	return o.kind == KindRead || o.kind == KindList || o.kind == KindCityRead
}

// answer returns the hero an ok create or assign answered with: the entry
// of Heroes with the operation's hero id, or the only entry when the
// operation names no hero (a create's id may come only with its answer).
func (o *operation) answer() (Hero, bool) {
	if o.hero == "" {
		if len(o.heroes) == 1 {
			return o.heroes[0], true
		}
		return Hero{}, false
	}
	for _, h := range o.heroes {
		if h.ID == o.hero {
			return h, true
		}
	}
	return Hero{}, false
}

// pairOperations pairs every invocation with its completion. Operations
// never completed are open (Unknown, done = never). Events that do not fit
// (a completion without an invocation, a second invocation or completion,
// a completion before its invocation, an unknown outcome) are returned as
// problems; the history is still checked as far as it goes.
func pairOperations(events []Event) (ops []*operation, problems []Anomaly) {
	byID := map[int]*operation{}
	completed := map[int]bool{}
	bad := func(e Event, format string, args ...any) {
		problems = append(problems, Anomaly{
			Kind: MalformedHistory, Hero: e.Hero, Replica: e.Replica, Op: e.Op, At: e.At,
			Detail: fmt.Sprintf("event %d: ", e.Index) + fmt.Sprintf(format, args...),
		})
	}
	for _, e := range events {
		switch e.Outcome {
		case Invoke:
			if _, dup := byID[e.Op]; dup {
				bad(e, "op %d invoked twice", e.Op)
				continue
			}
			o := &operation{
				id: e.Op, kind: e.Kind, client: e.Client, via: e.Via, hero: e.Hero,
				to: e.To, replica: e.Replica, invoke: e.At, done: never, outcome: Unknown, open: true,
			}
			byID[e.Op] = o
			ops = append(ops, o)
		case OK, Fail, Unknown:
			o, ok := byID[e.Op]
			switch {
			case !ok:
				bad(e, "op %d completed (%s) without an invocation", e.Op, e.Outcome)
				continue
			case completed[e.Op]:
				bad(e, "op %d completed twice", e.Op)
				continue
			case e.At < o.invoke:
				bad(e, "op %d completed at %v, before its invocation at %v", e.Op, e.At, o.invoke)
				continue
			}
			completed[e.Op] = true
			o.done, o.outcome, o.open = e.At, e.Outcome, false
			o.status, o.err, o.heroes = e.Status, e.Error, e.Heroes
			if e.Hero != "" {
				o.hero = e.Hero
			}
		default:
			bad(e, "op %d has outcome %q", e.Op, e.Outcome)
		}
	}
	slices.SortStableFunc(ops, func(a, b *operation) int {
		if a.invoke != b.invoke {
			return cmpDuration(a.invoke, b.invoke)
		}
		return a.id - b.id
	})
	return ops, problems
}

func cmpDuration(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// kindOrder is the order in which reports list operation kinds.
var kindOrder = []Kind{KindCreate, KindAssign, KindTerminate, KindRead, KindList, KindCityRead}

// sortKinds sorts kinds in report order, unknown kinds last by name.
func sortKinds(ks []Kind) {
	rank := func(k Kind) int {
		if i := slices.Index(kindOrder, k); i >= 0 {
			return i
		}
		return len(kindOrder)
	}
	slices.SortFunc(ks, func(a, b Kind) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		if a < b {
			return -1
		}
		if a > b {
			return 1
		}
		return 0
	})
}

// runEnd is the last moment the run recorded anything.
func runEnd(run Run) time.Duration {
	end := max(run.LastHeal, run.Converged)
	for _, e := range run.History {
		end = max(end, e.At)
	}
	for _, f := range run.Faults {
		end = max(end, f.Start, f.End)
	}
	for _, f := range run.Finals {
		end = max(end, f.At)
	}
	return end
}

// fmtStamp formats a stamp as wall.logical@node.
func fmtStamp(s Stamp) string { return fmt.Sprintf("%d.%d@%s", s.Wall, s.Logical, s.Node) }
