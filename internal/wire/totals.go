package wire

import (
	"sync"
	"sync/atomic"

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
