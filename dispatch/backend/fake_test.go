package backend_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/backend"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/city"
	"github.com/superhero-cluster/superhero/locations/cityactor"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// fakeCities serves requests from plain cityactor.Servers, without actors
// or a network, so gossip and poll rules are tested deterministically.
type fakeCities struct {
	mu      sync.Mutex
	servers map[crdt.Location]*cityactor.Server
	configs map[crdt.Location]cityactor.Config
	down    map[crdt.Location]bool
	// late makes a city's next status requests time out, as a city
	// starved of CPU does: late[c] of them.
	late map[crdt.Location]int
	// slow delays a city's next status answers by slowBy, honouring the
	// caller's deadline: slow[c] of them.
	slow   map[crdt.Location]int
	slowBy time.Duration
	// probed counts each city's status requests that have returned.
	probed map[crdt.Location]int
	calls  int
}

var _ interface {
	Up() []crdt.Location
	Request(context.Context, crdt.Location, proto.Message) (proto.Message, error)
} = (*fakeCities)(nil)

func newFakeCities(t *testing.T, names ...crdt.Location) *fakeCities {
	t.Helper()
	f := &fakeCities{servers: map[crdt.Location]*cityactor.Server{}, configs: map[crdt.Location]cityactor.Config{}, down: map[crdt.Location]bool{}, late: map[crdt.Location]int{}, slow: map[crdt.Location]int{}, probed: map[crdt.Location]int{}}
	for i, n := range names {
		clock := crdt.NewClock(string(n), func() int64 { return time.Now().UnixNano() })
		cfg := cityactor.Config{
			City:   n,
			Clock:  clock,
			Seed:   uint64(i),
			Rules:  city.DefaultConfig(),
			Logger: slog.New(slog.DiscardHandler),
		}
		s, err := cityactor.NewServer(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		f.servers[n], f.configs[n] = s, cfg
	}
	return f
}

func (f *fakeCities) Up() []crdt.Location {
	f.mu.Lock()
	defer f.mu.Unlock()
	var up []crdt.Location
	for n := range f.servers {
		up = append(up, n)
	}
	slices.Sort(up)
	return up
}

// setLate makes city c's next n status requests time out.
func (f *fakeCities) setLate(c crdt.Location, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.late[c] = n
}

// lateLeft returns how many of city c's status requests are still to time out.
func (f *fakeCities) lateLeft(c crdt.Location) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.late[c]
}

// setSlow makes city c answer its next n status requests after d, or
// not at all when their deadline comes first.
func (f *fakeCities) setSlow(c crdt.Location, n int, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slow[c], f.slowBy = n, d
}

// probes returns how many of city c's status requests have returned.
func (f *fakeCities) probes(c crdt.Location) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probed[c]
}

func (f *fakeCities) setDown(c crdt.Location, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[c] = down
}

func (f *fakeCities) Request(ctx context.Context, c crdt.Location, msg proto.Message) (proto.Message, error) {
	if _, ok := msg.(*messages.GetDigest); ok {
		defer func() {
			f.mu.Lock()
			f.probed[c]++
			f.mu.Unlock()
		}()
	}
	f.mu.Lock()
	if _, ok := msg.(*messages.GetDigest); ok && f.slow[c] > 0 {
		f.slow[c]--
		d := f.slowBy
		f.mu.Unlock()
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, fmt.Errorf("fake: %s answered too slowly: %w", c, ctx.Err())
		}
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	f.calls++
	s, ok := f.servers[c]
	if !ok || f.down[c] {
		return nil, fmt.Errorf("fake: %s unreachable", c)
	}
	if _, ok := msg.(*messages.GetDigest); ok && f.late[c] > 0 {
		f.late[c]--
		return nil, fmt.Errorf("fake: %s did not answer in time: %w", c, context.DeadlineExceeded)
	}
	switch m := msg.(type) {
	case *messages.GetState:
		return s.State()
	case *messages.GetDigest:
		return s.Digest()
	case *messages.MergeDelta:
		changed, err := s.Merge(m)
		return &messages.MergeAck{Changed: uint32(changed)}, err
	case *messages.SyncRequest:
		return s.Sync(m)
	case *messages.AssignHero:
		return s.Assign(m), nil
	case *messages.Bomb:
		// As the supervisor would: a new, empty incarnation.
		next, err := cityactor.NewServer(f.configs[c], s.Incarnation()+1)
		if err != nil {
			return nil, err
		}
		f.servers[c] = next
		return &messages.BombAck{City: string(c)}, nil
	}
	return nil, fmt.Errorf("fake: unexpected %T", msg)
}

// write creates n heroes directly in city c's replica.
func (f *fakeCities) write(t *testing.T, c crdt.Location, n int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.servers[c].Replica()
	for i := 0; i < n; i++ {
		id := newID(t)
		if _, _, err := r.Create(id, fmt.Sprintf("%s-%d", c, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fakeCities) fingerprints() map[crdt.Location]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[crdt.Location]uint64{}
	for n, s := range f.servers {
		out[n] = s.Replica().Fingerprint()
	}
	return out
}

func (f *fakeCities) converged() bool {
	var first uint64
	i := 0
	for _, fp := range f.fingerprints() {
		if i > 0 && fp != first {
			return false
		}
		first = fp
		i++
	}
	return true
}

// fakeNet carries dispatch's replication messages to the fake cities'
// servers, each of which answers through its own engine, and the answers
// back to dispatch's replica actor. Cities that are down drop messages.
type fakeNet struct {
	f       *fakeCities
	start   time.Time
	deliver atomic.Pointer[func(*messages.Replicate)]
}

var _ backend.Transport = (*fakeNet)(nil)

func (n *fakeNet) Peers() []replication.Peer {
	var out []replication.Peer
	for _, c := range n.f.Up() {
		out = append(out, replication.Peer{Name: string(c), City: true})
	}
	return out
}

func (n *fakeNet) Send(m replication.Message) int {
	p, err := wire.Encode(m)
	if err != nil {
		panic(err)
	}
	var answers []*messages.Replicate
	n.f.mu.Lock()
	s, ok := n.f.servers[crdt.Location(m.To)]
	if ok && !n.f.down[crdt.Location(m.To)] {
		s.Engine().Tick(int64(time.Since(n.start)))
		if err := s.Step(p); err == nil && s.Engine().HasReady() {
			for _, out := range s.Engine().Ready().Messages {
				if out.To == messages.DispatchName {
					a, err := wire.Encode(out)
					if err != nil {
						panic(err)
					}
					answers = append(answers, a)
				}
			}
			s.Engine().Advance()
		}
	}
	n.f.mu.Unlock()
	if d := n.deliver.Load(); d != nil {
		for _, a := range answers {
			(*d)(a)
		}
	}
	return len(p.Delta) + len(p.Sync)
}

// holds reports whether every fake city holds an entry for id.
func (f *fakeCities) holds(id uuid.UUID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.servers {
		if _, ok := s.Replica().Get(id); !ok {
			return false
		}
	}
	return true
}
