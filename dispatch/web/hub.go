package web

import (
	"errors"
	"log/slog"
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
}

// DefaultHubConfig returns the defaults.
func DefaultHubConfig() HubConfig {
	return HubConfig{MaxPendingFrames: 64, MaxPendingHeroes: 1 << 16}
}

func (c HubConfig) withDefaults() HubConfig {
	d := DefaultHubConfig()
	if c.MaxPendingFrames <= 0 {
		c.MaxPendingFrames = d.MaxPendingFrames
	}
	if c.MaxPendingHeroes <= 0 {
		c.MaxPendingHeroes = d.MaxPendingHeroes
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
// The hub runs no goroutines. Publish, Subscribe and Close are safe for
// concurrent use.
type Hub struct {
	cfg HubConfig
	log *slog.Logger

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool

	dropped atomic.Uint64 // slow subscribers dropped
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
	for s := range h.subs {
		if !s.push(ev, h.cfg) {
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

// Subscribe registers a subscriber. If snapshot is not nil, Subscribe calls
// it after registering (so no event published meanwhile is lost) and queues
// its result first; pending delta entries that the snapshot already covers
// (same id, not winning over the snapshot's entry) are discarded, so the
// subscriber never goes back in time. The hub holds no lock while
// snapshot runs. Subscribe returns ErrHubClosed after Close.
func (h *Hub) Subscribe(snapshot func() service.Event) (*Subscription, error) {
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
	h.mu.Unlock()
	if snapshot != nil {
		ev := snapshot()
		ev.Kind = service.KindSnapshot
		s.prime(ev)
	}
	return s, nil
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
	queue   []service.Event
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

// Take returns the pending events in order and empties the queue. All
// pending deltas are one event holding, per id, the entry that wins by the
// merge rule (see supersedes); all
// pending cluster events are one event holding the latest status.
func (s *Subscription) Take() []service.Event {
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

// push queues ev, coalescing it with what is pending. It reports false
// when the queue overflows.
func (s *Subscription) push(ev service.Event, cfg HubConfig) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return true
	}
	switch {
	case ev.Kind == service.KindDelta && s.delta >= 0:
		pending := &s.queue[s.delta]
		for _, in := range ev.Heroes {
			if i, ok := s.index[in.ID]; ok {
				if !supersedes(&pending.Heroes[i], &in) {
					pending.Heroes[i] = in
				}
				continue
			}
			s.index[in.ID] = len(pending.Heroes)
			pending.Heroes = append(pending.Heroes, in)
		}
	case ev.Kind == service.KindDelta:
		s.delta = len(s.queue)
		heroes := make([]crdt.Hero, 0, len(ev.Heroes))
		s.index = make(map[uuid.UUID]int, len(ev.Heroes))
		for _, in := range ev.Heroes {
			if i, ok := s.index[in.ID]; ok {
				if !supersedes(&heroes[i], &in) {
					heroes[i] = in
				}
				continue
			}
			s.index[in.ID] = len(heroes)
			heroes = append(heroes, in)
		}
		s.queue = append(s.queue, service.Event{Kind: service.KindDelta, Heroes: heroes})
	case ev.Kind == service.KindCluster && s.cluster >= 0:
		s.queue[s.cluster] = ev
	case ev.Kind == service.KindCluster:
		s.cluster = len(s.queue)
		s.queue = append(s.queue, ev)
	default:
		s.queue = append(s.queue, ev)
	}
	s.signal()
	if len(s.queue) > cfg.MaxPendingFrames {
		return false
	}
	return s.delta < 0 || len(s.queue[s.delta].Heroes) <= cfg.MaxPendingHeroes
}

// prime puts the snapshot first in the queue and drops pending delta
// entries it already covers.
func (s *Subscription) prime(snap service.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	if s.delta >= 0 {
		have := make(map[uuid.UUID]int, len(snap.Heroes))
		for i := range snap.Heroes {
			have[snap.Heroes[i].ID] = i
		}
		pending := s.queue[s.delta].Heroes
		kept := pending[:0]
		for i := range pending {
			if j, ok := have[pending[i].ID]; ok && !supersedes(&pending[i], &snap.Heroes[j]) {
				continue
			}
			kept = append(kept, pending[i])
		}
		if len(kept) == 0 {
			s.queue = append(s.queue[:s.delta], s.queue[s.delta+1:]...)
			if s.cluster > s.delta {
				s.cluster--
			}
			s.delta, s.index = -1, nil
		} else {
			s.queue[s.delta].Heroes = kept
			clear(s.index)
			for i := range kept {
				s.index[kept[i].ID] = i
			}
		}
	}
	s.queue = append([]service.Event{snap}, s.queue...)
	if s.delta >= 0 {
		s.delta++
	}
	if s.cluster >= 0 {
		s.cluster++
	}
	s.signal()
}

// supersedes reports whether entry a wins over b by the CRDT's own rule:
// see crdt.Hero.Supersedes.
func supersedes(a, b *crdt.Hero) bool { return a.Supersedes(b) }
