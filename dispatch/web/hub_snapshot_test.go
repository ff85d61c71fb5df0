package web

import (
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

// countingSource reads the heroes of a fixed list and counts its reads;
// a read waits for release when set.
type countingSource struct {
	mu      sync.Mutex
	heroes  []crdt.Hero
	reads   int
	started chan struct{} // receives when a read starts, if set
	release chan struct{} // a read waits for it, if set
	err     error
}

func (c *countingSource) source() *SnapshotSource {
	return &SnapshotSource{
		Read: func() (*Snapshot, error) {
			c.mu.Lock()
			c.reads++
			hs, err, started, release := c.heroes, c.err, c.started, c.release
			c.mu.Unlock()
			if started != nil {
				started <- struct{}{}
			}
			if release != nil {
				<-release
			}
			if err != nil {
				return nil, err
			}
			return NewSnapshot(hs, 2)
		},
		Cluster: func() service.ClusterStatus { return service.ClusterStatus{Ready: true} },
	}
}

func (c *countingSource) readCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// Subscribers that arrive while a snapshot is read wait for that read and
// share it; later ones share it too while nothing changed.
func TestHubSharesOneSnapshotRead(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	src := &countingSource{heroes: []crdt.Hero{entry(uuid.New(), 1, 100, false)}, started: make(chan struct{}, 1), release: make(chan struct{})}
	const n = 20
	subs := make(chan *Subscription, n)
	var wg sync.WaitGroup
	wg.Go(func() {
		s, err := h.Subscribe(src.source())
		if err != nil {
			t.Error(err)
			return
		}
		subs <- s
	})
	<-src.started // the first subscriber is reading
	for range n - 1 {
		wg.Go(func() {
			s, err := h.Subscribe(src.source())
			if err != nil {
				t.Error(err)
				return
			}
			subs <- s
		})
	}
	waitFor(t, 5*time.Second, "every subscriber registered", func() bool { return h.Subscribers() == n })
	close(src.release)
	wg.Wait()
	close(subs)
	var first *Snapshot
	for s := range subs {
		evs := s.Take()
		if len(evs) != 1 || evs[0].Snapshot == nil {
			t.Fatalf("events %+v, want the snapshot alone", evs)
		}
		if first == nil {
			first = evs[0].Snapshot
		}
		if evs[0].Snapshot != first {
			t.Error("subscribers got different snapshots")
		}
		s.Close()
	}
	late := subscribe(t, h, nil)
	late.Close()
	s, err := h.Subscribe(src.source())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if evs := s.Take(); len(evs) != 1 || evs[0].Snapshot != first {
		t.Errorf("a later subscriber got %+v, want the shared snapshot", evs)
	}
	if got := src.readCount(); got != 1 {
		t.Errorf("%d reads for %d subscribers, want 1", got, n+1)
	}
	if reads, sent := h.SnapshotStats(); reads != 1 || sent != n+1 {
		t.Errorf("SnapshotStats = %d reads, %d sent", reads, sent)
	}
}

// A subscriber that starts from a shared snapshot read before some
// changes gets those changes first, in its first delta; past MaxCatchUp
// changed heroes, the next subscriber reads a new snapshot.
func TestHubCatchUpThenNewRead(t *testing.T) {
	h := NewHub(HubConfig{MaxCatchUp: 2}, testLogger(t))
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	src := &countingSource{heroes: []crdt.Hero{entry(a, 1, 100, false), entry(b, 1, 100, false)}}
	s1 := subscribe(t, h, nil)
	s1.Close()
	first, err := h.Subscribe(src.source())
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	h.Publish(delta(entry(a, 2, 90, false)))
	h.Publish(delta(entry(a, 3, 80, false), entry(b, 2, 0, true)))
	h.Publish(service.FlashEvent("after"))

	subscribe(t, h, func() service.Event { t.Error("read again while the snapshot may be shared"); return service.Event{} })
	s3, err := h.Subscribe(src.source())
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	evs := s3.Take()
	if len(evs) != 2 || evs[0].Snapshot == nil || evs[1].Kind != service.KindDelta {
		t.Fatalf("events %+v, want the shared snapshot and the changes since", evs)
	}
	got := map[uuid.UUID]crdt.Hero{}
	for _, e := range evs[1].Heroes {
		got[e.ID] = e
	}
	if len(got) != 2 || got[a].Stamp.Wall != 3 || !got[b].Dead {
		t.Errorf("catch-up delta %+v", evs[1].Heroes)
	}
	if src.readCount() != 1 {
		t.Fatalf("%d reads, want 1", src.readCount())
	}

	h.Publish(delta(entry(c, 1, 100, false))) // a third hero changed: past MaxCatchUp
	src.mu.Lock()
	src.heroes = []crdt.Hero{entry(a, 3, 80, false), entry(c, 1, 100, false)}
	src.mu.Unlock()
	s4, err := h.Subscribe(src.source())
	if err != nil {
		t.Fatal(err)
	}
	defer s4.Close()
	evs = s4.Take()
	if len(evs) != 1 || evs[0].Snapshot == nil || evs[0].Snapshot.Len() != 2 {
		t.Fatalf("events %+v, want a new snapshot alone", evs)
	}
	if src.readCount() != 2 {
		t.Errorf("%d reads, want 2", src.readCount())
	}
}

// A read that fails fails every subscriber waiting for it, leaves none
// registered, and is not shared: the next subscriber reads again.
func TestHubSnapshotReadFails(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	boom := errors.New("replica not answering")
	src := &countingSource{err: boom}
	if _, err := h.Subscribe(src.source()); !errors.Is(err, boom) {
		t.Fatalf("Subscribe: %v, want the read's error", err)
	}
	if h.Subscribers() != 0 {
		t.Errorf("%d subscribers after a failed read", h.Subscribers())
	}
	src.mu.Lock()
	src.err = nil
	src.mu.Unlock()
	s, err := h.Subscribe(src.source())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if src.readCount() != 2 {
		t.Errorf("%d reads, want 2", src.readCount())
	}
}

// A read that panics (a bug) fails its subscribers instead of leaving
// them waiting.
func TestHubSnapshotReadPanics(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	_, err := h.Subscribe(&SnapshotSource{
		Read:    func() (*Snapshot, error) { panic("bug") },
		Cluster: func() service.ClusterStatus { return service.ClusterStatus{} },
	})
	if err == nil || h.Subscribers() != 0 {
		t.Fatalf("Subscribe: %v, %d subscribers", err, h.Subscribers())
	}
}

// TestHubSnapshotSimulation drives a hub, a reference replica and
// subscribers that join at random moments (some while a read is under
// way, changes being published during it) and read their queues at random
// moments, from seeded randomness. Every subscriber, merging its snapshot
// and then what it was sent by the merge rule, as the page does, ends up
// with exactly the live heroes of the reference replica, however its
// snapshot was shared.
func TestHubSnapshotSimulation(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 11))
		h := NewHub(HubConfig{MaxCatchUp: 1 + rng.IntN(6)}, nil)
		ref := crdt.NewReplica(crdt.NewClock("ref", func() int64 { return 0 }))
		ids := make([]uuid.UUID, 8)
		for i := range ids {
			ids[i] = uuid.New()
		}
		publish := func() {
			batch := make([]crdt.Hero, 1+rng.IntN(3))
			for i := range batch {
				batch[i] = randomEntry(rng, ids)
			}
			// As dispatch's replica does: merge, then publish what
			// changed.
			if d := ref.Merge(crdt.Delta{Heroes: batch}); !d.IsEmpty() {
				h.Publish(delta(d.Heroes...))
			}
		}
		type page struct {
			s    *Subscription
			view *crdt.Replica
		}
		var pages []page
		drain := func(p page) {
			for _, it := range p.s.Take() {
				if it.Snapshot != nil {
					p.view.Merge(crdt.Delta{Heroes: it.Snapshot.heroes})
					continue
				}
				p.view.Merge(crdt.Delta{Heroes: it.Heroes})
			}
		}
		src := &SnapshotSource{
			Read: func() (*Snapshot, error) {
				for range rng.IntN(3) {
					publish() // before the replica answers
				}
				snap, err := NewSnapshot(ref.Heroes(), 1+rng.IntN(3))
				for range rng.IntN(3) {
					publish() // after it answered, before the read ends
				}
				return snap, err
			},
			Cluster: func() service.ClusterStatus { return service.ClusterStatus{} },
		}
		for range 40 {
			switch rng.IntN(4) {
			case 0:
				s, err := h.Subscribe(src)
				if err != nil {
					t.Fatal(err)
				}
				pages = append(pages, page{s, crdt.NewReplica(crdt.NewClock("page", func() int64 { return 0 }))})
			case 1:
				if len(pages) > 0 {
					drain(pages[rng.IntN(len(pages))])
				}
			default:
				publish()
			}
		}
		want := map[uuid.UUID]crdt.Hero{}
		for _, e := range ref.Heroes() {
			want[e.ID] = e
		}
		for i, p := range pages {
			drain(p)
			got := map[uuid.UUID]crdt.Hero{}
			for _, e := range p.view.Heroes() {
				got[e.ID] = e
			}
			if !maps.Equal(got, want) {
				t.Fatalf("seed %d, page %d: holds %+v, the replica %+v", seed, i, got, want)
			}
			p.s.Close()
		}
		h.Close()
	}
}

// An event as published is encoded once for every subscriber; a delta
// merged with another for one subscriber is encoded for it alone.
func TestHubSharesEventFrames(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	behind := subscribe(t, h, nil)
	h.Publish(delta(entry(uuid.New(), 1, 100, false))) // behind does not take it
	a, b := subscribe(t, h, nil), subscribe(t, h, nil)
	h.Publish(delta(entry(uuid.New(), 1, 100, false)))
	h.Publish(service.FlashEvent("hi"))
	pa, pb, pc := a.Take(), b.Take(), behind.Take()
	if len(pa) != 2 || len(pb) != 2 || len(pc) != 2 {
		t.Fatalf("queues %d, %d, %d", len(pa), len(pb), len(pc))
	}
	frame := func(p Pending) []byte {
		t.Helper()
		f, err := p.Frame()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	fa, fb, fc := frame(pa[0]), frame(pb[0]), frame(pc[0])
	if string(fa) != string(fb) || &fa[0] != &fb[0] {
		t.Error("the delta as published was not shared by a and b")
	}
	if &fc[0] == &fa[0] || !json.Valid(fc) {
		t.Error("a delta merged with an earlier one shares bytes")
	}
	if f1, f2 := frame(pa[1]), frame(pc[1]); &f1[0] != &f2[0] {
		t.Error("the flash was encoded twice")
	}
}
