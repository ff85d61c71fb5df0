package wire

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/superhero-cluster/superhero/replication"
)

// Totals are a node's replication counters since the process started:
// the Stats of every engine it ran, summed (the actor that owns the
// engine starts a new one on each restart, and a rejoin starts a new
// actor), the messages its drivers sent and their payload bytes, by kind,
// and its outboxes' drops. Drivers and outboxes update them (see
// NewDriver and OutboxConfig.Counters); any goroutine may read them, so
// metrics can be taken at scrape time. The zero value is ready to use;
// share one value across restarts and memberships.
type Totals struct {
	// Outbox counts the messages the node's outboxes dropped.
	Outbox Counters

	mu     sync.Mutex
	engine *replication.Engine // the engine last observed
	before replication.Stats   // the engines that ran before it, summed
	last   replication.Stats   // its counters when last observed

	sent [replication.LastMsgKind + 1]struct{ messages, bytes atomic.Uint64 }

	// late counts the deadlines handled per LatenessBuckets bucket (the
	// last one past every bound); lateSum is their lateness, summed, in
	// nanoseconds.
	late    [len(LatenessBuckets) + 1]atomic.Uint64
	lateSum atomic.Uint64
}

// LatenessBuckets are the upper bounds of the TimerLateness buckets.
var LatenessBuckets = [...]time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

// Lateness is how late the engines' deadlines were handled.
type Lateness struct {
	// Buckets[i] counts the deadlines handled at most LatenessBuckets[i]
	// late (cumulative, as a Prometheus histogram counts).
	Buckets [len(LatenessBuckets)]uint64
	Count   uint64        // every deadline
	Sum     time.Duration // their lateness, summed
}

// Over returns how many deadlines were handled more than
// LatenessBuckets[i] late.
func (l Lateness) Over(i int) uint64 { return l.Count - l.Buckets[i] }

// TimerLateness returns how late the drivers' engines handled their
// deadlines: from the deadline a driver's timer was armed for to the
// first Tick after it.
func (t *Totals) TimerLateness() Lateness {
	var l Lateness
	var n uint64
	for i := range t.late {
		n += t.late[i].Load()
		if i < len(l.Buckets) {
			l.Buckets[i] = n
		}
	}
	l.Count, l.Sum = n, time.Duration(t.lateSum.Load())
	return l
}

// observeLateness counts one deadline handled d late. t may be nil.
func (t *Totals) observeLateness(d time.Duration) {
	if t == nil {
		return
	}
	i := 0
	for i < len(LatenessBuckets) && d > LatenessBuckets[i] {
		i++
	}
	t.late[i].Add(1)
	t.lateSum.Add(uint64(d))
}

// Engine returns the engines' counters, summed.
func (t *Totals) Engine() replication.Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.before.Add(t.last)
}

// Sent returns how many messages of kind k were sent, and their payload
// bytes.
func (t *Totals) Sent(k replication.MsgKind) (messages, bytes uint64) {
	if int(k) >= len(t.sent) {
		return 0, 0
	}
	return t.sent[k].messages.Load(), t.sent[k].bytes.Load()
}

// observe takes e's counters. A new engine counts on from the sum of
// those before it. t may be nil.
func (t *Totals) observe(e *replication.Engine) {
	if t == nil {
		return
	}
	st := e.Stats()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e != t.engine {
		t.before = t.before.Add(t.last)
		t.engine = e
	}
	t.last = st
}

// countSent counts a message handed to the transport. t may be nil.
func (t *Totals) countSent(m replication.Message, size int) {
	if t == nil || int(m.Kind) >= len(t.sent) {
		return
	}
	t.sent[m.Kind].messages.Add(1)
	t.sent[m.Kind].bytes.Add(uint64(size))
}
