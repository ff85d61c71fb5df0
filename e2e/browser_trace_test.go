package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/tracing"
	"github.com/chromedp/chromedp"
)

// traceEvent is one event of a Chromium trace (the JSON trace format).
// Times are in microseconds.
type traceEvent struct {
	Name string  `json:"name"`
	Cat  string  `json:"cat"`
	Ph   string  `json:"ph"`
	Ts   float64 `json:"ts"`
	Dur  float64 `json:"dur"`
	TDur float64 `json:"tdur"` // thread (CPU) time
	Pid  int     `json:"pid"`
	Tid  int     `json:"tid"`
}

// tracer records the tasks of a tab's threads and the page's
// performance.mark calls, with Chromium's tracing.
type tracer struct {
	p    *page
	mu   sync.Mutex
	evs  []traceEvent
	bad  error
	done chan struct{}
}

// startTrace starts tracing p's tab: every task each thread runs
// ("toplevel") and the page's user timing marks.
func (p *page) startTrace() *tracer {
	p.t.Helper()
	tr := &tracer{p: p, done: make(chan struct{})}
	var once sync.Once
	if err := chromedp.Listen(p.ctx, func(ev any) {
		switch ev := ev.(type) {
		case *tracing.EventDataCollected:
			tr.mu.Lock()
			defer tr.mu.Unlock()
			for _, v := range ev.Value {
				var e traceEvent
				if err := json.Unmarshal(v, &e); err != nil {
					tr.bad = err
					continue
				}
				if e.Cat == "toplevel" || strings.Contains(e.Cat, "user_timing") {
					tr.evs = append(tr.evs, e)
				}
			}
		case *tracing.EventTracingComplete:
			once.Do(func() { close(tr.done) })
		}
	}); err != nil {
		p.t.Fatalf("%s: listening for the trace: %v", p.name, err)
	}
	if _, err := chromedp.Call(p.bounded(10*time.Second), tracing.Start, tracing.StartParams{
		TransferMode: tracing.StartTransferModeReportEvents,
		TraceConfig:  &tracing.TraceConfig{IncludedCategories: []string{"toplevel", "blink.user_timing"}},
	}); err != nil {
		p.t.Fatalf("%s: starting a trace: %v", p.name, err)
	}
	return tr
}

// stop ends the trace and returns its events.
func (tr *tracer) stop() []traceEvent {
	tr.p.t.Helper()
	if _, err := chromedp.Call(tr.p.bounded(10*time.Second), tracing.End, struct{}{}); err != nil {
		tr.p.t.Fatalf("%s: ending the trace: %v", tr.p.name, err)
	}
	select {
	case <-tr.done:
	case <-time.After(30 * time.Second):
		tr.p.t.Fatalf("%s: the trace did not complete within 30 s", tr.p.name)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.bad != nil {
		tr.p.t.Fatalf("%s: decoding the trace: %v", tr.p.name, tr.bad)
	}
	return tr.evs
}

// taskStats is the longest task of a thread between two marks.
type taskStats struct {
	Tasks   int     // tasks that ran at least partly between the marks
	WallMs  float64 // the longest, by the clock
	CPUMs   float64 // the longest, by the thread's CPU time: what the page's own work costs, whatever else the machine runs
	SpanMs  float64 // from the first mark to the second
	Longest string  // the task longest by CPU time, for the failure message
}

// between returns the longest task of the thread that made the marks from
// and to, among those running at any time between them.
func between(evs []traceEvent, from, to string) (taskStats, error) {
	var a, z *traceEvent
	for i := range evs {
		e := &evs[i]
		if !strings.Contains(e.Cat, "user_timing") {
			continue
		}
		switch e.Name {
		case from:
			a = e
		case to:
			z = e
		}
	}
	if a == nil || z == nil {
		return taskStats{}, fmt.Errorf("marks %q and %q not both in the trace of %d events", from, to, len(evs))
	}
	st := taskStats{SpanMs: (z.Ts - a.Ts) / 1000}
	for _, e := range evs {
		if e.Cat != "toplevel" || e.Ph != "X" || e.Pid != a.Pid || e.Tid != a.Tid {
			continue
		}
		if e.Ts > z.Ts || e.Ts+e.Dur < a.Ts {
			continue
		}
		st.Tasks++
		st.WallMs = max(st.WallMs, e.Dur/1000)
		if e.TDur/1000 > st.CPUMs {
			st.CPUMs = e.TDur / 1000
			st.Longest = fmt.Sprintf("%s (%.1f ms CPU, %.1f ms by the clock)", e.Name, e.TDur/1000, e.Dur/1000)
		}
	}
	return st, nil
}
