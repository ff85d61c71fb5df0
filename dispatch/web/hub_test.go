package web

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

func stamp(wall int64) crdt.Timestamp { return crdt.Timestamp{Wall: wall, Node: "n"} }

func entry(id uuid.UUID, wall int64, health int, dead bool) crdt.Hero {
	return crdt.Hero{ID: id, Name: "h", Location: crdt.Home, Stamp: stamp(wall), Health: health, Dead: dead}
}

func delta(hs ...crdt.Hero) service.Event { return service.DeltaEvent(crdt.Delta{Heroes: hs}) }

func subscribe(t *testing.T, h *Hub, snapshot func() service.Event) *Subscription {
	t.Helper()
	s, err := h.Subscribe(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestHubCoalescesDeltas(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	s := subscribe(t, h, nil)
	a, b, c := uuid.New(), uuid.New(), uuid.New()

	h.Publish(delta(entry(a, 10, 90, false), entry(b, 10, 80, false)))
	h.Publish(service.ClusterEvent(service.ClusterStatus{InSync: false}))
	h.Publish(delta(entry(a, 20, 70, false)))                            // newer: replaces
	h.Publish(delta(entry(b, 5, 100, false)))                            // older (published late): ignored
	h.Publish(delta(entry(c, 30, 50, false)))                            // new id: appended
	h.Publish(delta(entry(a, 40, 0, true)))                              // tombstone: replaces
	h.Publish(delta(entry(a, 50, 100, false)))                           // live after tombstone: ignored
	h.Publish(delta(entry(c, 31, 45, false), entry(c, 32, 40, false)))   // duplicate ids in one delta
	h.Publish(service.ClusterEvent(service.ClusterStatus{InSync: true})) // replaces the pending cluster event
	h.Publish(service.FlashEvent("one"))
	h.Publish(service.FlashEvent("two"))

	select {
	case <-s.Ready():
	default:
		t.Fatal("Ready not signalled")
	}
	evs := s.Take()
	if len(evs) != 4 {
		t.Fatalf("got %d events, want delta, cluster, flash, flash: %+v", len(evs), evs)
	}
	if evs[0].Kind != service.KindDelta || evs[1].Kind != service.KindCluster || evs[2].Message != "one" || evs[3].Message != "two" {
		t.Fatalf("events %+v", evs)
	}
	if !evs[1].Cluster.InSync {
		t.Error("pending cluster event not replaced by the latest")
	}
	got := map[uuid.UUID]crdt.Hero{}
	for _, e := range evs[0].Heroes {
		if _, dup := got[e.ID]; dup {
			t.Fatalf("id %s twice in one delta", e.ID)
		}
		got[e.ID] = e
	}
	if len(got) != 3 || !got[a].Dead || got[b].Stamp.Wall != 10 || got[c].Stamp.Wall != 32 {
		t.Errorf("coalesced delta %+v", evs[0].Heroes)
	}
	if evs := s.Take(); len(evs) != 0 {
		t.Errorf("second Take returned %d events", len(evs))
	}
}

func TestHubDoesNotKeepPublishedSlice(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	s1, s2 := subscribe(t, h, nil), subscribe(t, h, nil)
	id := uuid.New()
	hs := []crdt.Hero{entry(id, 1, 100, false)}
	h.Publish(delta(hs...))
	hs[0].Health = 1
	h.Publish(delta(entry(id, 2, 50, false)))
	for _, s := range []*Subscription{s1, s2} {
		evs := s.Take()
		if len(evs) != 1 || evs[0].Heroes[0].Health != 50 {
			t.Fatalf("events %+v", evs)
		}
	}
}

func TestHubSnapshotFirstAndPrunesCoveredEntries(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	old, fresh, gone := uuid.New(), uuid.New(), uuid.New()
	s := subscribe(t, h, func() service.Event {
		// Events published while the snapshot is being taken.
		h.Publish(delta(entry(old, 5, 90, false), entry(fresh, 50, 70, false), entry(gone, 60, 0, true)))
		h.Publish(service.FlashEvent("during"))
		return service.Event{Heroes: []crdt.Hero{entry(old, 10, 80, false), entry(fresh, 40, 75, false), entry(gone, 20, 100, false)}}
	})
	evs := s.Take()
	if len(evs) != 3 || evs[0].Kind != service.KindSnapshot || evs[1].Kind != service.KindDelta || evs[2].Kind != service.KindFlash {
		t.Fatalf("events %+v", evs)
	}
	var ids []uuid.UUID
	for _, e := range evs[1].Heroes {
		ids = append(ids, e.ID)
	}
	if len(ids) != 2 || ids[0] != fresh || ids[1] != gone {
		t.Errorf("pending delta after snapshot holds %v, want only the entries newer than the snapshot", ids)
	}
	// The index still works after pruning.
	h.Publish(delta(entry(fresh, 70, 60, false)))
	if evs := s.Take(); len(evs) != 1 || len(evs[0].Heroes) != 1 || evs[0].Heroes[0].Health != 60 {
		t.Errorf("events %+v", evs)
	}
}

func TestHubSnapshotDropsFullyCoveredDelta(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	id := uuid.New()
	s := subscribe(t, h, func() service.Event {
		h.Publish(delta(entry(id, 5, 90, false)))
		h.Publish(service.ClusterEvent(service.ClusterStatus{InSync: true}))
		return service.Event{Heroes: []crdt.Hero{entry(id, 10, 80, false)}}
	})
	evs := s.Take()
	if len(evs) != 2 || evs[0].Kind != service.KindSnapshot || evs[1].Kind != service.KindCluster {
		t.Fatalf("events %+v", evs)
	}
	// The pending cluster index was shifted correctly: a new cluster event
	// replaces nothing stale.
	h.Publish(service.ClusterEvent(service.ClusterStatus{}))
	h.Publish(service.ClusterEvent(service.ClusterStatus{InSync: true}))
	if evs := s.Take(); len(evs) != 1 || !evs[0].Cluster.InSync {
		t.Fatalf("events %+v", evs)
	}
}

func TestHubDropsSubscriberThatOverflows(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     HubConfig
		publish func(h *Hub, i int)
	}{
		{"frames", HubConfig{MaxPendingFrames: 4}, func(h *Hub, i int) { h.Publish(service.FlashEvent(fmt.Sprint(i))) }},
		{"heroes", HubConfig{MaxPendingHeroes: 4}, func(h *Hub, i int) { h.Publish(delta(entry(uuid.New(), 1, 1, false))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHub(tc.cfg, testLogger(t))
			slow, fast := subscribe(t, h, nil), subscribe(t, h, nil)
			for i := range 4 {
				tc.publish(h, i)
				fast.Take()
			}
			select {
			case <-slow.Done():
				t.Fatal("dropped at the limit")
			default:
			}
			tc.publish(h, 4)
			select {
			case <-slow.Done():
			default:
				t.Fatal("not dropped past the limit")
			}
			if !errors.Is(slow.Err(), ErrSlowSubscriber) {
				t.Errorf("Err = %v", slow.Err())
			}
			if h.Subscribers() != 1 {
				t.Errorf("%d subscribers, want 1", h.Subscribers())
			}
			select {
			case <-fast.Done():
				t.Fatal("fast subscriber dropped")
			default:
			}
			if len(fast.Take()) != 1 {
				t.Error("fast subscriber lost the event")
			}
		})
	}
}

func TestHubClose(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	s := subscribe(t, h, nil)
	h.Close()
	<-s.Done()
	if !errors.Is(s.Err(), ErrHubClosed) {
		t.Errorf("Err = %v", s.Err())
	}
	h.Publish(service.FlashEvent("after close")) // no panic, no effect
	if _, err := h.Subscribe(nil); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	s.Close() // idempotent after the hub closed it
}

func TestSubscriptionClose(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	s := subscribe(t, h, nil)
	s.Close()
	s.Close()
	<-s.Done()
	if s.Err() != nil || h.Subscribers() != 0 {
		t.Errorf("Err = %v, subscribers = %d", s.Err(), h.Subscribers())
	}
}

func TestHubIgnoresEmptyAndSnapshotEvents(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	s := subscribe(t, h, nil)
	h.Publish(delta())
	h.Publish(service.SnapshotEvent(nil, service.ClusterStatus{}))
	h.Publish(service.Event{Kind: "bogus"})
	if evs := s.Take(); len(evs) != 0 {
		t.Errorf("events %+v", evs)
	}
}

// TestHubConcurrent publishes from several goroutines while a consumer
// takes; run with -race. The consumer ends up with the newest entry of
// every id, and Publish never waits for it.
func TestHubConcurrent(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	s := subscribe(t, h, nil)
	const writers, writes = 4, 500
	ids := make([]uuid.UUID, 8)
	for i := range ids {
		ids[i] = uuid.New()
	}
	latest := map[uuid.UUID]int64{}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-s.Ready():
				for _, ev := range s.Take() {
					mu.Lock()
					for _, e := range ev.Heroes {
						if e.Stamp.Wall > latest[e.ID] {
							latest[e.ID] = e.Stamp.Wall
						}
					}
					mu.Unlock()
				}
			case <-s.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var slowest time.Duration
	var smu sync.Mutex
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				start := time.Now()
				h.Publish(delta(entry(ids[i%len(ids)], int64(w*writes+i+1), i%100, false)))
				smu.Lock()
				slowest = max(slowest, time.Since(start))
				smu.Unlock()
			}
		})
	}
	wg.Wait()
	want := map[uuid.UUID]int64{}
	for w := range writers {
		for i := range writes {
			want[ids[i%len(ids)]] = max(want[ids[i%len(ids)]], int64(w*writes+i+1))
		}
	}
	waitFor(t, 5*time.Second, "the consumer to see the last writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id, wall := range want {
			if latest[id] != wall {
				return false
			}
		}
		return true
	})
	s.Close()
	<-done
	t.Logf("slowest Publish: %v", slowest)
}
