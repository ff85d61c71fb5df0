package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
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

// source returns a snapshot source reading snapshot's heroes, or nil for
// a nil snapshot.
func source(t *testing.T, snapshot func() service.Event) *SnapshotSource {
	if snapshot == nil {
		return nil
	}
	return &SnapshotSource{
		Read: func() (*Snapshot, error) {
			return NewSnapshot(snapshot().Heroes, 2)
		},
		Cluster: func() service.ClusterStatus { return service.ClusterStatus{Ready: true} },
	}
}

func subscribe(t *testing.T, h *Hub, snapshot func() service.Event) *Subscription {
	t.Helper()
	s, err := h.Subscribe(source(t, snapshot))
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

// A delta the snapshot covers entirely is dropped, and so is a cluster
// event published before the snapshot took its cluster status.
func TestHubSnapshotDropsFullyCoveredDelta(t *testing.T) {
	h := NewHub(HubConfig{}, testLogger(t))
	id := uuid.New()
	s := subscribe(t, h, func() service.Event {
		h.Publish(delta(entry(id, 5, 90, false)))
		h.Publish(service.ClusterEvent(service.ClusterStatus{InSync: true}))
		return service.Event{Heroes: []crdt.Hero{entry(id, 10, 80, false)}}
	})
	evs := s.Take()
	if len(evs) != 1 || evs[0].Kind != service.KindSnapshot || !evs[0].Cluster.Ready || evs[0].Snapshot.Len() != 1 {
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

// TestHubCoalescesByMergeRule publishes two entries for one hero to a
// subscriber that has not drained yet, in both orders: the coalesced frame
// carries the entry that wins by the merge rule, not the one published
// last. (The store publishes after unlocking, so a delete and a stale live
// entry can be published tombstone first.)
func TestHubCoalescesByMergeRule(t *testing.T) {
	id := uuid.New()
	tomb := entry(id, 20, 0, true)
	for _, tc := range []struct {
		name  string
		order []crdt.Hero
		want  crdt.Hero
	}{
		{"tombstone then stale live", []crdt.Hero{tomb, entry(id, 10, 90, false)}, tomb},
		{"stale live then tombstone", []crdt.Hero{entry(id, 10, 90, false), tomb}, tomb},
		{"tombstone then newer live", []crdt.Hero{tomb, entry(id, 30, 90, false)}, tomb},
		{"newer live then tombstone", []crdt.Hero{entry(id, 30, 90, false), tomb}, tomb},
		{"tombstone then older tombstone", []crdt.Hero{tomb, entry(id, 15, 0, true)}, tomb},
		{"older tombstone then tombstone", []crdt.Hero{entry(id, 15, 0, true), tomb}, tomb},
		{"live then stale live", []crdt.Hero{entry(id, 20, 50, false), entry(id, 10, 90, false)}, entry(id, 20, 50, false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHub(HubConfig{}, testLogger(t))
			s := subscribe(t, h, nil)
			for _, e := range tc.order {
				h.Publish(delta(e))
			}
			evs := s.Take()
			if len(evs) != 1 || evs[0].Kind != service.KindDelta || len(evs[0].Heroes) != 1 {
				t.Fatalf("events %+v, want one delta with one entry", evs)
			}
			if got := evs[0].Heroes[0]; got != tc.want {
				t.Errorf("coalesced entry %+v, want %+v", got, tc.want)
			}
			b, err := encodeEvent(evs[0].Event)
			if err != nil {
				t.Fatal(err)
			}
			var f frame
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			if len(f.Heroes) != 1 || f.Heroes[0].Dead != tc.want.Dead || f.Heroes[0].Stamp.Wall != tc.want.Stamp.Wall {
				t.Errorf("frame %s, want the entry %+v", b, tc.want)
			}
		})
	}
}

// mergeKeeps is the reference for supersedes: what a replica holds after
// merging b, then a.
func mergeKeeps(a, b crdt.Hero) crdt.Hero {
	r := crdt.NewReplica(crdt.NewClock("ref", func() int64 { return 0 }))
	r.Merge(crdt.Delta{Heroes: []crdt.Hero{b}})
	r.Merge(crdt.Delta{Heroes: []crdt.Hero{a}})
	got, _ := r.Get(a.ID)
	return got
}

func TestSupersedesMatchesMerge(t *testing.T) {
	id := uuid.New()
	at := func(wall int64, logical uint32, node string) crdt.Hero {
		return crdt.Hero{ID: id, Name: "h", Location: crdt.Home, Health: 50, Stamp: crdt.Timestamp{Wall: wall, Logical: logical, Node: node}}
	}
	dead := func(h crdt.Hero) crdt.Hero { h.Dead, h.Health = true, 0; return h }
	with := func(h crdt.Hero, fn func(*crdt.Hero)) crdt.Hero { fn(&h); return h }
	for _, tc := range []struct {
		name string
		a, b crdt.Hero
		want bool // a supersedes b
	}{
		{"later wall", at(2, 0, "a"), at(1, 9, "z"), true},
		{"earlier wall", at(1, 9, "z"), at(2, 0, "a"), false},
		{"later logical", at(1, 2, "a"), at(1, 1, "z"), true},
		{"later node", at(1, 1, "b"), at(1, 1, "a"), true},
		{"tombstone over newer live", dead(at(1, 0, "a")), at(9, 0, "a"), true},
		{"live under older tombstone", at(9, 0, "a"), dead(at(1, 0, "a")), false},
		{"later tombstone", dead(at(2, 0, "a")), dead(at(1, 0, "a")), true},
		{"earlier tombstone", dead(at(1, 0, "a")), dead(at(2, 0, "a")), false},
		{"identical", at(1, 0, "a"), at(1, 0, "a"), false},
		{"identical tombstones", dead(at(1, 0, "a")), dead(at(1, 0, "a")), false},
		{"equal stamps, greater name", with(at(1, 0, "a"), func(h *crdt.Hero) { h.Name = "i" }), at(1, 0, "a"), true},
		{"equal stamps, lesser name", at(1, 0, "a"), with(at(1, 0, "a"), func(h *crdt.Hero) { h.Name = "i" }), false},
		{"equal stamps, greater location", with(at(1, 0, "a"), func(h *crdt.Hero) { h.Location = crdt.Metropolis }), at(1, 0, "a"), true},
		{"equal stamps, more health", with(at(1, 0, "a"), func(h *crdt.Hero) { h.Health = 60 }), at(1, 0, "a"), true},
		{"equal stamps, patrolling", with(at(1, 0, "a"), func(h *crdt.Hero) { h.Patrolling = true }), at(1, 0, "a"), true},
		{"equal stamps, not patrolling", at(1, 0, "a"), with(at(1, 0, "a"), func(h *crdt.Hero) { h.Patrolling = true }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := supersedes(&tc.a, &tc.b); got != tc.want {
				t.Errorf("supersedes = %v, want %v", got, tc.want)
			}
			if ref := mergeKeeps(tc.a, tc.b) == tc.a && tc.a != tc.b; ref != tc.want {
				t.Errorf("the table disagrees with crdt.Replica.Merge: merge keeps a = %v", ref)
			}
		})
	}
}

// randomEntry draws an entry for one of ids from a domain small enough
// that equal stamps, equal content and identical entries all happen.
func randomEntry(rng *rand.Rand, ids []uuid.UUID) crdt.Hero {
	h := crdt.Hero{
		ID:         ids[rng.IntN(len(ids))],
		Name:       []string{"x", "y"}[rng.IntN(2)],
		Location:   []crdt.Location{crdt.Home, crdt.Gotham}[rng.IntN(2)],
		Health:     rng.IntN(3) * 50,
		Patrolling: rng.IntN(2) == 0,
		Dead:       rng.IntN(3) == 0,
		Stamp:      crdt.Timestamp{Wall: 1 + rng.Int64N(3), Logical: uint32(rng.IntN(2)), Node: []string{"a", "b"}[rng.IntN(2)]},
	}
	return h
}

// TestSupersedesProperty checks supersedes against crdt.Replica.Merge on
// random pairs, and that a subscriber's coalesced delta holds, per id,
// what a replica merging every published entry holds, whatever the
// publishing order and batching.
func TestSupersedesProperty(t *testing.T) {
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	for seed := range uint64(500) {
		rng := rand.New(rand.NewPCG(seed, 7))
		a, b := randomEntry(rng, ids[:1]), randomEntry(rng, ids[:1])
		if got, ref := supersedes(&a, &b), mergeKeeps(a, b) == a && a != b; got != ref {
			t.Fatalf("seed %d: supersedes(%+v, %+v) = %v, merge says %v", seed, a, b, got, ref)
		}

		h := NewHub(HubConfig{}, nil)
		s, err := h.Subscribe(nil)
		if err != nil {
			t.Fatal(err)
		}
		ref := crdt.NewReplica(crdt.NewClock("ref", func() int64 { return 0 }))
		for range 1 + rng.IntN(12) {
			batch := make([]crdt.Hero, 1+rng.IntN(3))
			for i := range batch {
				batch[i] = randomEntry(rng, ids)
			}
			h.Publish(delta(batch...))
			ref.Merge(crdt.Delta{Heroes: batch})
		}
		evs := s.Take()
		if len(evs) != 1 {
			t.Fatalf("seed %d: %d events, want one delta", seed, len(evs))
		}
		got := map[uuid.UUID]crdt.Hero{}
		for _, e := range evs[0].Heroes {
			got[e.ID] = e
		}
		want := map[uuid.UUID]crdt.Hero{}
		ref.Each(func(e crdt.Hero) bool { want[e.ID] = e; return true })
		if !maps.Equal(got, want) {
			t.Fatalf("seed %d: coalesced %+v, a replica merging the same holds %+v", seed, got, want)
		}
		h.Close()
	}
}
