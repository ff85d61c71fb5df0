package web

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

// Errors that end a subscription, reported by Subscription.Err.
var (
	// ErrSlowSubscriber means the subscriber fell too far behind and was
	// dropped.
	ErrSlowSubscriber = errors.New("dispatch: subscriber too slow")
	// ErrHubClosed means the hub was closed.
	ErrHubClosed = errors.New("dispatch: hub closed")
)

var _ service.Publisher = (*Hub)(nil)

// HubConfig bounds what a subscriber may have waiting. The zero value of a
// field means its default.
type HubConfig struct {
	// MaxPendingFrames is the most frames a subscriber may have waiting,
	// after coalescing (all pending deltas make one frame, all pending
	// cluster events make one frame, each flash is one frame). Default 64.
	MaxPendingFrames int
	// MaxPendingHeroes is the most entries the coalesced pending delta of a
	// subscriber may hold: one per hero id changed since the subscriber's
	// last write. Default 65536.
	MaxPendingHeroes int
	// MaxCatchUp is how many heroes may have changed since the shared
	// snapshot was read while new subscribers still start from it (with
	// those changes as their first delta); one more and the next
	// subscriber reads a new one. Default 256.
	MaxCatchUp int
}

// DefaultHubConfig returns the defaults.
func DefaultHubConfig() HubConfig {
	return HubConfig{MaxPendingFrames: 64, MaxPendingHeroes: 1 << 16, MaxCatchUp: 256}
}

func (c HubConfig) withDefaults() HubConfig {
	d := DefaultHubConfig()
	if c.MaxPendingFrames <= 0 {
		c.MaxPendingFrames = d.MaxPendingFrames
	}
	if c.MaxPendingHeroes <= 0 {
		c.MaxPendingHeroes = d.MaxPendingHeroes
	}
	if c.MaxCatchUp <= 0 {
		c.MaxCatchUp = d.MaxCatchUp
	}
	return c
}

// Hub fans events out to subscribers without ever blocking the publisher.
// Each subscriber has a bounded queue; Publish only appends to it, and a
// subscriber whose queue overflows is dropped (its Done channel closes, with
// Err ErrSlowSubscriber). Pending deltas are coalesced per subscriber, keeping
// per hero id the entry that wins by the CRDT's merge rule (see supersedes),
// never simply the last one published, so a burst of deltas becomes one
// frame and the order in which they were published does not matter.
//
// A new subscriber starts from a snapshot that the hub reads once and
// shares (see Subscribe): subscribers that arrive while it is being read
// wait for it, and later ones start from it as long as few heroes changed
// since (HubConfig.MaxCatchUp), with those changes as their first delta.
// So a crowd of pages costs the replica one read and one encoding, not one
// each.
//
// The hub runs no goroutines. Publish, Subscribe and Close are safe for
// concurrent use.
type Hub struct {
	cfg HubConfig
	log *slog.Logger

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
	// reading is the snapshot read under way, or nil; shared is the
	// latest snapshot while it may still be shared, or nil. Each holds
	// every entry published since its read began.
	reading *snapshotRead
	shared  *snapshotRead

	dropped       atomic.Uint64 // slow subscribers dropped
	snapshotReads atomic.Uint64 // snapshots read and encoded
	snapshotsSent atomic.Uint64 // subscribers started from a snapshot
}

// snapshotRead is one read of the view, shared by the subscribers that
// start from it.
type snapshotRead struct {
	done chan struct{} // closed when snap or err is set
	snap *Snapshot
	err  error
	// since holds every entry published since the read began, coalesced
	// by the merge rule; guarded by the hub's mu.
	since coalesced
	// frozen is since as it was when the read ended, for the subscribers
	// that waited for it; set before done closes.
	frozen []crdt.Hero
}

// coalesced holds at most one entry per hero id: the one that wins by the
// merge rule.
type coalesced struct {
	heroes []crdt.Hero
	index  map[uuid.UUID]int
}

func (c *coalesced) add(hs []crdt.Hero) {
	if c.index == nil {
		c.index = make(map[uuid.UUID]int, len(hs))
	}
	c.heroes = coalesce(c.heroes, c.index, hs)
}

// NewHub returns a hub. A nil logger discards logs.
func NewHub(cfg HubConfig, logger *slog.Logger) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{cfg: cfg.withDefaults(), log: logger, subs: make(map[*Subscription]struct{})}
}

// Publish queues ev for every subscriber and returns at once. Empty deltas
// and snapshot events (which are only sent by Subscribe) are ignored.
// Publish does not keep ev.Heroes.
func (h *Hub) Publish(ev service.Event) {
	switch ev.Kind {
	case service.KindDelta:
		if len(ev.Heroes) == 0 {
			return
		}
	case service.KindCluster, service.KindFlash:
	default:
		h.log.Warn("hub: event not published", "kind", ev.Kind)
		return
	}
	var dropped []*Subscription
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	if ev.Kind == service.KindDelta {
		if h.reading != nil {
			h.reading.since.add(ev.Heroes)
		}
		if h.shared != nil {
			h.shared.since.add(ev.Heroes)
			if len(h.shared.since.heroes) > h.cfg.MaxCatchUp {
				h.shared = nil // too much changed: the next subscriber reads anew
			}
		}
	}
	enc := &sharedFrame{}
	for s := range h.subs {
		if !s.push(ev, enc, h.cfg) {
			delete(h.subs, s)
			dropped = append(dropped, s)
		}
	}
	h.mu.Unlock()
	h.dropped.Add(uint64(len(dropped)))
	for _, s := range dropped {
		s.end(ErrSlowSubscriber)
		h.log.Warn("hub: dropped slow subscriber", "kind", ev.Kind)
	}
}

// SnapshotSource gives new subscribers the view they start from.
type SnapshotSource struct {
	// Read reads the heroes and encodes them (see NewSnapshot). The hub
	// calls it without holding a lock, for one subscriber at a time, and
	// shares what it returns.
	Read func() (*Snapshot, error)
	// Cluster returns the cluster status as last published. It must not
	// block or publish; the hub calls it under a subscriber's lock.
	Cluster func() service.ClusterStatus
}

// Subscribe registers a subscriber. With a source, its first pending item
// is a snapshot: registered first, so no event published meanwhile is
// lost, it starts from the shared snapshot if there is one, else waits for
// the read under way, else reads one itself (src.Read). The entries
// published since that snapshot's read began come first in its pending
// delta, merged by the merge rule with what it got since it registered,
// and pending entries the snapshot already covers (same id, not winning
// over the snapshot's entry) are dropped, so the subscriber never goes back
// in time. A failed read ends the subscription and Subscribe returns its
// error; after Close it returns ErrHubClosed.
func (h *Hub) Subscribe(src *SnapshotSource) (*Subscription, error) {
	s := &Subscription{
		hub:     h,
		ready:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		delta:   -1,
		cluster: -1,
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrHubClosed
	}
	h.subs[s] = struct{}{}
	if src == nil {
		h.mu.Unlock()
		return s, nil
	}
	if r := h.shared; r != nil {
		since := slices.Clone(r.since.heroes)
		h.mu.Unlock()
		h.snapshotsSent.Add(1)
		s.prime(r.snap, since, src.Cluster)
		return s, nil
	}
	r, reader := h.reading, false
	if r == nil {
		r, reader = &snapshotRead{done: make(chan struct{})}, true
		h.reading = r
	}
	h.mu.Unlock()
	if reader {
		h.read(r, src.Read)
	}
	<-r.done
	if r.err != nil {
		s.Close()
		return nil, r.err
	}
	h.snapshotsSent.Add(1)
	s.prime(r.snap, r.frozen, src.Cluster)
	return s, nil
}

// read runs read for r and shares the result.
func (h *Hub) read(r *snapshotRead, read func() (*Snapshot, error)) {
	snap, err := safeRead(read, h.log)
	h.snapshotReads.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reading = nil
	r.snap, r.err = snap, err
	r.frozen = slices.Clone(r.since.heroes)
	if r.err == nil && !h.closed && len(r.since.heroes) <= h.cfg.MaxCatchUp {
		h.shared = r
	}
	close(r.done)
}

// safeRead calls read; a panic (a bug) is logged with its stack and
// becomes an error, so the subscribers waiting for the read are not left
// waiting.
func safeRead(read func() (*Snapshot, error), log *slog.Logger) (snap *Snapshot, err error) {
	defer func() {
		if v := recover(); v != nil {
			log.Error("hub: snapshot read panicked", "panic", v, "stack", string(debug.Stack()))
			snap, err = nil, fmt.Errorf("dispatch: snapshot read panicked: %v", v)
		}
	}()
	snap, err = read()
	if err == nil && snap == nil {
		err = errors.New("dispatch: no snapshot read")
	}
	return snap, err
}

// SnapshotStats returns how many snapshots were read (and encoded), and
// how many subscribers started from one: the second over the first is
// how many share each.
func (h *Hub) SnapshotStats() (reads, sent uint64) {
	return h.snapshotReads.Load(), h.snapshotsSent.Load()
}

// Subscribers returns the number of subscribers.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Dropped returns how many subscribers were dropped for falling too far
// behind (ErrSlowSubscriber).
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Close ends every subscription with ErrHubClosed; later Publish calls do
// nothing and Subscribe fails.
func (h *Hub) Close() {
	h.mu.Lock()
	subs := h.subs
	h.subs = nil
	h.closed = true
	h.shared = nil
	h.mu.Unlock()
	for s := range subs {
		s.end(ErrHubClosed)
	}
}

func (h *Hub) remove(s *Subscription) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// Subscription is one subscriber's queue. Its owner waits on Ready and
// Done, and calls Take to get what is pending.
type Subscription struct {
	hub   *Hub
	ready chan struct{} // holds a token when events may be pending
	done  chan struct{} // closed when the subscription ends

	mu      sync.Mutex
	queue   []Pending
	delta   int               // index in queue of the pending delta, or -1
	cluster int               // index in queue of the pending cluster event, or -1
	index   map[uuid.UUID]int // id -> index in queue[delta].Heroes
	err     error
	ended   bool
}

// Ready returns a channel that receives when events may be pending.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Done returns a channel closed when the subscription ends: dropped,
// closed, or the hub closed.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the subscription ended: ErrSlowSubscriber, ErrHubClosed,
// or nil (still open, or ended by Close).
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Pending is one thing a subscriber is to be sent: an event, or, with Kind
// KindSnapshot, the snapshot it starts from (Snapshot, shared with other
// subscribers, and Cluster, its own).
type Pending struct {
	service.Event
	Snapshot *Snapshot
	// enc, when set, is the frame of the event as published, encoded once
	// by the first subscriber's writer that needs it and shared.
	enc *sharedFrame
}

// sharedFrame is an event's frame, encoded once for every subscriber
// whose pending event is that event as published.
type sharedFrame struct {
	once sync.Once
	b    []byte
	err  error
}

// Frame returns the event's frame (not for a snapshot): shared bytes when
// the event is as published, else encoded for this subscriber. The bytes
// must not be modified.
func (p *Pending) Frame() ([]byte, error) {
	if p.enc == nil {
		return encodeEvent(p.Event)
	}
	p.enc.once.Do(func() { p.enc.b, p.enc.err = encodeEvent(p.Event) })
	return p.enc.b, p.enc.err
}

// Take returns the pending items in order and empties the queue. All
// pending deltas are one event holding, per id, the entry that wins by the
// merge rule (see supersedes); all
// pending cluster events are one event holding the latest status.
func (s *Subscription) Take() []Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue, s.delta, s.cluster, s.index = nil, -1, -1, nil
	return q
}

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	s.hub.remove(s)
	s.end(nil)
}

func (s *Subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended, s.err = true, err
	s.queue, s.index = nil, nil
	close(s.done)
}

func (s *Subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// push queues ev, coalescing it with what is pending. While ev stays as
// published (not merged with another delta), it carries enc, which every
// subscriber shares. It reports false when the queue overflows.
func (s *Subscription) push(ev service.Event, enc *sharedFrame, cfg HubConfig) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return true
	}
	switch {
	case ev.Kind == service.KindDelta && s.delta >= 0:
		pending := &s.queue[s.delta]
		pending.enc = nil
		pending.Heroes = coalesce(pending.Heroes, s.index, ev.Heroes)
	case ev.Kind == service.KindDelta:
		s.delta = len(s.queue)
		s.index = make(map[uuid.UUID]int, len(ev.Heroes))
		heroes := coalesce(make([]crdt.Hero, 0, len(ev.Heroes)), s.index, ev.Heroes)
		s.queue = append(s.queue, Pending{Event: service.Event{Kind: service.KindDelta, Heroes: heroes}, enc: enc})
	case ev.Kind == service.KindCluster && s.cluster >= 0:
		s.queue[s.cluster] = Pending{Event: ev, enc: enc}
	case ev.Kind == service.KindCluster:
		s.cluster = len(s.queue)
		s.queue = append(s.queue, Pending{Event: ev, enc: enc})
	default:
		s.queue = append(s.queue, Pending{Event: ev, enc: enc})
	}
	s.signal()
	if len(s.queue) > cfg.MaxPendingFrames {
		return false
	}
	return s.delta < 0 || len(s.queue[s.delta].Heroes) <= cfg.MaxPendingHeroes
}

// prime puts the snapshot first in the queue, with the cluster status as
// cluster returns it now, merges since (the entries published since the
// snapshot's read began) into the pending delta, and drops pending delta
// entries the snapshot already covers. A pending cluster event is dropped:
// the status is stored before it is published, so, read under the lock
// that Publish takes to queue, it is at least as new as any queued.
func (s *Subscription) prime(snap *Snapshot, since []crdt.Hero, cluster func() service.ClusterStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	cs := cluster()
	if s.cluster >= 0 {
		s.removeAt(s.cluster)
	}
	if len(since) > 0 {
		if s.delta < 0 {
			// The changes since the read came before anything queued.
			s.queue = append([]Pending{{Event: service.Event{Kind: service.KindDelta}}}, s.queue...)
			s.shift(0)
			s.delta, s.index = 0, map[uuid.UUID]int{}
		}
		pending := &s.queue[s.delta]
		pending.enc = nil
		pending.Heroes = coalesce(pending.Heroes, s.index, since)
	}
	if s.delta >= 0 {
		pending := s.queue[s.delta].Heroes
		kept := pending[:0]
		for i := range pending {
			if have, ok := snap.entry(pending[i].ID); ok && !supersedes(&pending[i], &have) {
				continue
			}
			kept = append(kept, pending[i])
		}
		if len(kept) == 0 {
			s.removeAt(s.delta)
		} else if len(kept) < len(pending) {
			s.queue[s.delta].Heroes, s.queue[s.delta].enc = kept, nil
			clear(s.index)
			for i := range kept {
				s.index[kept[i].ID] = i
			}
		}
	}
	s.queue = append([]Pending{{Event: service.Event{Kind: service.KindSnapshot, Cluster: cs}, Snapshot: snap}}, s.queue...)
	s.shift(0)
	s.signal()
}

// removeAt removes the queued item at i, the pending delta or cluster
// event.
func (s *Subscription) removeAt(i int) {
	s.queue = append(s.queue[:i], s.queue[i+1:]...)
	switch i {
	case s.delta:
		s.delta, s.index = -1, nil
	case s.cluster:
		s.cluster = -1
	}
	if s.delta > i {
		s.delta--
	}
	if s.cluster > i {
		s.cluster--
	}
}

// shift accounts for an item inserted at i.
func (s *Subscription) shift(i int) {
	if s.delta >= i {
		s.delta++
	}
	if s.cluster >= i {
		s.cluster++
	}
}

// supersedes reports whether entry a wins over b by the CRDT's own rule:
// see crdt.Hero.Supersedes.
func supersedes(a, b *crdt.Hero) bool { return a.Supersedes(b) }

// coalesce adds the entries of in to heroes, one per id as index (id to
// position in heroes) says, keeping for each id the entry that wins by
// the merge rule, and returns the grown slice.
func coalesce(heroes []crdt.Hero, index map[uuid.UUID]int, in []crdt.Hero) []crdt.Hero {
	for _, h := range in {
		if i, ok := index[h.ID]; ok {
			if !supersedes(&heroes[i], &h) {
				heroes[i] = h
			}
			continue
		}
		index[h.ID] = len(heroes)
		heroes = append(heroes, h)
	}
	return heroes
}
