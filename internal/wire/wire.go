// Package wire carries the replication engine's messages between cluster
// nodes: it converts replication.Message to and from its protobuf form
// (messages.Replicate, with the crdt package's own binary payloads) and
// sends them one-way through per-peer queues, so the actor that drives an
// engine never waits on the network.
package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// ErrBadMessage means a Replicate message could not be decoded.
var ErrBadMessage = errors.New("wire: bad replication message")

// Encode returns the protobuf form of m.
func Encode(m replication.Message) (*messages.Replicate, error) {
	p := &messages.Replicate{From: m.From, Kind: uint32(m.Kind), Exchange: m.Exchange}
	var err error
	if !m.Delta.IsEmpty() {
		if p.Delta, err = m.Delta.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("wire: encode %v to %s: %w", m.Kind, m.To, err)
		}
	}
	if !m.Sync.IsEmpty() {
		if p.Sync, err = m.Sync.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("wire: encode %v to %s: %w", m.Kind, m.To, err)
		}
	}
	return p, nil
}

// Decode returns the engine message p carries, addressed to self.
func Decode(p *messages.Replicate, self string) (replication.Message, error) {
	m := replication.Message{Kind: replication.MsgKind(p.GetKind()), From: p.GetFrom(), To: self, Exchange: p.GetExchange()}
	if m.Kind < replication.MsgPush || m.Kind > replication.LastMsgKind || m.From == "" {
		return m, fmt.Errorf("%w: kind %d from %q", ErrBadMessage, p.GetKind(), p.GetFrom())
	}
	if len(p.GetDelta()) > 0 {
		if err := m.Delta.UnmarshalBinary(p.GetDelta()); err != nil {
			return m, fmt.Errorf("%w: %v from %s: %w", ErrBadMessage, m.Kind, m.From, err)
		}
	}
	if len(p.GetSync()) > 0 {
		if err := m.Sync.UnmarshalBinary(p.GetSync()); err != nil {
			return m, fmt.Errorf("%w: %v from %s: %w", ErrBadMessage, m.Kind, m.From, err)
		}
	}
	return m, nil
}

// Sender delivers one message one-way to the named node, within ctx.
type Sender func(ctx context.Context, to string, msg proto.Message) error

// Counters are an outbox's cumulative counters.
type Counters struct {
	// Dropped counts messages dropped because a peer's queue was full or
	// the send failed; anti-entropy repairs what they carried. Messages
	// the transport accepted and could not deliver later (dead letters on
	// a peer that went away) are not counted.
	Dropped atomic.Uint64
}

// OutboxConfig configures an Outbox. Zero fields take the defaults.
type OutboxConfig struct {
	// Send delivers a message. Required.
	Send Sender
	// QueueLen is how many messages may wait per peer. Default 1024.
	QueueLen int
	// Timeout bounds one send. Default 1 s.
	Timeout time.Duration
	// Logger receives debug lines about failed sends.
	Logger *slog.Logger
	// Counters receives the outbox's counts; share one across outboxes
	// (a node's successive memberships) to count since the process
	// started. Default: the outbox's own.
	Counters *Counters
}

// Outbox sends messages through one queue and one goroutine per peer, so a
// slow or unreachable peer delays no one else and a send never blocks the
// caller. It is safe for concurrent use.
type Outbox struct {
	cfg OutboxConfig
	// warned is when a drop to each peer was last logged at Warn.
	warnMu sync.Mutex
	warned map[string]time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	queues map[string]chan *messages.Replicate
	closed bool
}

// NewOutbox returns an outbox; Close stops its goroutines.
func NewOutbox(cfg OutboxConfig) *Outbox {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1024
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Counters == nil {
		cfg.Counters = &Counters{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Outbox{cfg: cfg, ctx: ctx, cancel: cancel, queues: map[string]chan *messages.Replicate{}, warned: map[string]time.Time{}}
}

// Counters returns the outbox's counters.
func (o *Outbox) Counters() *Counters { return o.cfg.Counters }

// Send encodes m on the caller's goroutine and queues it for m.To. It never
// blocks: a message for a full queue is dropped and counted. It returns
// the encoded payload size.
func (o *Outbox) Send(m replication.Message) int {
	p, err := Encode(m)
	if err != nil {
		o.cfg.Logger.Error("cannot encode", "to", m.To, "kind", m.Kind, "err", err)
		return 0
	}
	size := len(p.Delta) + len(p.Sync)
	q := o.queue(m.To)
	if q == nil {
		return size
	}
	select {
	case q <- p:
	default:
		o.dropped(m.To, m.Kind, errors.New("queue full"))
	}
	return size
}

func (o *Outbox) queue(to string) chan *messages.Replicate {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	q := o.queues[to]
	if q == nil {
		q = make(chan *messages.Replicate, o.cfg.QueueLen)
		o.queues[to] = q
		o.wg.Add(1)
		go o.run(to, q)
	}
	return q
}

func (o *Outbox) run(to string, q chan *messages.Replicate) {
	defer o.wg.Done()
	for {
		select {
		case <-o.ctx.Done():
			return
		case p := <-q:
			ctx, cancel := context.WithTimeout(o.ctx, o.cfg.Timeout)
			err := o.cfg.Send(ctx, to, p)
			cancel()
			if err != nil && o.ctx.Err() == nil {
				o.dropped(to, replication.MsgKind(p.Kind), err)
			}
		}
	}
}

// DropWarnInterval is how often at most a dropped message to one peer is
// logged at Warn; the others are counted and logged at Debug.
const DropWarnInterval = 10 * time.Second

// dropped counts a message that did not leave, and says so.
func (o *Outbox) dropped(to string, kind replication.MsgKind, err error) {
	n := o.cfg.Counters.Dropped.Add(1)
	if errors.Is(err, node.ErrKindUnavailable) {
		// The peer is not (or no longer, or not yet) in this node's
		// topology: membership churn, not a fault.
		o.cfg.Logger.Debug("message dropped: peer not in the topology", "to", to, "kind", kind)
		return
	}
	now := time.Now()
	o.warnMu.Lock()
	warn := now.Sub(o.warned[to]) >= DropWarnInterval
	if warn {
		o.warned[to] = now
	}
	o.warnMu.Unlock()
	if warn {
		o.cfg.Logger.Warn("message dropped; anti-entropy repairs it", "to", to, "kind", kind, "err", err, "dropped_total", n)
		return
	}
	o.cfg.Logger.Debug("message dropped", "to", to, "kind", kind, "err", err)
}

// Close stops the outbox's goroutines and waits for them, at most twice
// the send Timeout; queued messages are dropped. A goroutine still in a
// Sender that ignores its ctx then ends when that send returns.
func (o *Outbox) Close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.cancel()
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * o.cfg.Timeout):
		o.cfg.Logger.Warn("outbox closed with a send still blocked in the transport", "waited", 2*o.cfg.Timeout)
	}
}
