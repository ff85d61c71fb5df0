// Package chaos holds the chaos soak's record of what happened: the history
// of operations the workload made (Jepsen style: every operation invoked,
// then completed as ok, fail or unknown), the faults the nemesis injected,
// and the final reads of every replica. The checker (Check) reads them and
// reports anomalies; scripts/chaos produces them.
//
// The package has no network, process or wall-clock dependencies: times are
// monotonic offsets from the start of the run, so a history can be written,
// read back and checked anywhere.
package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Kind is what an operation does.
type Kind string

// Operation kinds.
const (
	// KindCreate creates a hero (POST /api/superheroes, or the WebSocket's
	// create command). Its ok completion carries the created hero.
	KindCreate Kind = "create"
	// KindAssign sends a hero to a city or home. Its ok completion
	// carries the hero as applied (with its stamp).
	KindAssign Kind = "assign"
	// KindTerminate tombstones a hero.
	KindTerminate Kind = "terminate"
	// KindRead reads one hero through dispatch (GET /api/superheroes/{id});
	// ok carries it (a tombstone when the answer was 410 Gone).
	KindRead Kind = "read"
	// KindList reads every live hero of dispatch's view.
	KindList Kind = "list"
	// KindCityRead reads one city's own replica (Replica names the city).
	KindCityRead Kind = "city_read"
)

// Outcome is the state of an operation in an event.
type Outcome string

// Outcomes. An operation's first event is Invoke; its second is one of the
// others.
const (
	Invoke Outcome = "invoke"
	// OK: the node answered that the operation took effect (or, for a
	// read, what it read).
	OK Outcome = "ok"
	// Fail: the node answered that the operation did not take effect
	// (a 4xx, or a 503 that promises nothing was done).
	Fail Outcome = "fail"
	// Unknown: no answer in time, the connection broke, or the node said
	// the outcome is unknown. The operation may or may not have taken
	// effect; the checker never counts it as lost nor as done.
	Unknown Outcome = "unknown"
)

// Stamp is a write's hybrid logical clock stamp, as the API shows it.
type Stamp struct {
	Wall    int64  `json:"wall,string"`
	Logical uint32 `json:"logical"`
	Node    string `json:"node"`
}

// Less orders stamps like crdt.Timestamp: wall, then logical, then node.
func (s Stamp) Less(o Stamp) bool {
	if s.Wall != o.Wall {
		return s.Wall < o.Wall
	}
	if s.Logical != o.Logical {
		return s.Logical < o.Logical
	}
	return s.Node < o.Node
}

// IsZero reports whether the stamp is unset.
func (s Stamp) IsZero() bool { return s == Stamp{} }

// Hero is a hero as read or answered.
type Hero struct {
	ID         string `json:"id"`
	Name       string `json:"name,omitempty"`
	Location   string `json:"location"`
	Patrolling bool   `json:"is_patrolling,omitempty"`
	Health     int    `json:"health"`
	Dead       bool   `json:"dead,omitempty"`
	Stamp      Stamp  `json:"stamp"`
}

// Event is one line of the history.
type Event struct {
	// Index is the event's position in the history, from 0.
	Index int `json:"index"`
	// Op identifies the operation; its invoke and its completion share it.
	Op int `json:"op"`
	// Client is the workload client that made it.
	Client int `json:"client"`
	// Via is how: "http" or "ws".
	Via string `json:"via"`
	// Kind is what the operation does.
	Kind Kind `json:"kind"`
	// Outcome is invoke, ok, fail or unknown.
	Outcome Outcome `json:"outcome"`
	// At is the monotonic time since the run started.
	At time.Duration `json:"at_ns"`
	// Hero is the target hero's id (assign, terminate, read), or on a
	// create's ok completion the created hero's id.
	Hero string `json:"hero,omitempty"`
	// To is an assign's target location.
	To string `json:"to,omitempty"`
	// Replica is whose replica a read read: "dispatch" or a city.
	Replica string `json:"replica,omitempty"`
	// Status is the HTTP status (or the WebSocket error's code), 0 if
	// there was no answer.
	Status int `json:"status,omitempty"`
	// Error is the node's error message, or the transport error.
	Error string `json:"error,omitempty"`
	// Heroes is what a completion carried: the hero created or assigned,
	// the hero read, or every hero a list or city read returned.
	Heroes []Hero `json:"heroes,omitempty"`
}

// Fault is one fault the nemesis injected, from Start until it healed at
// End (End is zero while it lasts).
type Fault struct {
	// Kind names the fault: "bomb", "kill_city" (4 bombs in 5 s),
	// "sigkill", "sigstop", "partition", "drop", ...
	Kind string `json:"kind"`
	// Targets are the nodes it hit.
	Targets []string      `json:"targets"`
	Start   time.Duration `json:"start_ns"`
	End     time.Duration `json:"end_ns"`
}

// Final is a replica's whole state read at the end of the run, after the
// cluster was given time to heal: every hero, tombstones included.
type Final struct {
	// Replica is "dispatch" or a city's name.
	Replica string `json:"replica"`
	// At is when it was read.
	At     time.Duration `json:"at_ns"`
	Heroes []Hero        `json:"heroes"`
}

// Run is everything a soak recorded.
type Run struct {
	Seed    uint64  `json:"seed"`
	History []Event `json:"-"`
	Faults  []Fault `json:"faults"`
	// LastHeal is when the last fault healed.
	LastHeal time.Duration `json:"last_heal_ns"`
	// Converged is when every replica was first seen equal after
	// LastHeal; zero if never within the run.
	Converged time.Duration `json:"converged_ns"`
	Finals    []Final       `json:"finals"`
}

// WriteHistory writes events as JSON lines.
func WriteHistory(w io.Writer, events []Event) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range events {
		if err := enc.Encode(&events[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadHistory reads JSON lines written by WriteHistory.
func ReadHistory(r io.Reader) ([]Event, error) {
	var out []Event
	dec := json.NewDecoder(r)
	for {
		var e Event
		err := dec.Decode(&e)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("chaos: history line %d: %w", len(out)+1, err)
		}
		out = append(out, e)
	}
}

// Recorder appends events to a history; it is safe for concurrent use by
// the workload's clients.
type Recorder struct {
	now func() time.Duration

	mu     sync.Mutex
	events []Event
	nextOp int
	open   map[int]Event // invoked, not completed: op -> invoke event
}

// NewRecorder returns a recorder stamping events with now, the monotonic
// time since the run started.
func NewRecorder(now func() time.Duration) *Recorder {
	return &Recorder{now: now, open: map[int]Event{}}
}

// Invoke records the start of an operation and returns its op id. e's
// Client, Via, Kind, Hero, To and Replica describe it; the rest is set here.
func (r *Recorder) Invoke(e Event) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Op, e.Outcome, e.At = r.nextOp, Invoke, r.now()
	e.Status, e.Error, e.Heroes = 0, "", nil
	r.nextOp++
	e.Index = len(r.events)
	r.events = append(r.events, e)
	r.open[e.Op] = e
	return e.Op
}

// Complete records the end of operation op with its outcome and what the
// node answered. hero, when not empty, replaces the invoke's Hero (a
// create learns its id only now).
func (r *Recorder) Complete(op int, outcome Outcome, status int, err string, hero string, heroes []Hero) {
	r.mu.Lock()
	defer r.mu.Unlock()
	inv, ok := r.open[op]
	if !ok {
		return
	}
	delete(r.open, op)
	e := inv
	e.Outcome, e.At, e.Status, e.Error, e.Heroes = outcome, r.now(), status, err, heroes
	if hero != "" {
		e.Hero = hero
	}
	e.Index = len(r.events)
	r.events = append(r.events, e)
}

// Events returns a copy of the history so far. Operations still open get
// no completion here; CloseOpen completes them as unknown.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// CloseOpen completes every operation still open as unknown (the run
// ended before it answered).
func (r *Recorder) CloseOpen() {
	r.mu.Lock()
	ops := make([]int, 0, len(r.open))
	for op := range r.open {
		ops = append(ops, op)
	}
	r.mu.Unlock()
	for _, op := range ops {
		r.Complete(op, Unknown, 0, "run ended before an answer", "", nil)
	}
}
