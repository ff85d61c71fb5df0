package web

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

// Snapshot is dispatch's view of the live heroes, encoded once as the
// snapshot_part frames of the WebSocket feed: every subscriber that starts
// from it is sent the same bytes (see Hub.Subscribe). It is immutable.
type Snapshot struct {
	parts  [][]byte
	heroes []crdt.Hero       // sorted by name, then id
	index  map[uuid.UUID]int // id -> index in heroes
}

// NewSnapshot encodes heroes (live ones, in any order; not kept) as
// snapshot_part frames of at most partHeroes heroes each, sorted by name,
// then id. partHeroes <= 0 means DefaultConfig().SnapshotPartHeroes.
func NewSnapshot(heroes []crdt.Hero, partHeroes int) (*Snapshot, error) {
	if partHeroes <= 0 {
		partHeroes = DefaultConfig().SnapshotPartHeroes
	}
	hs := slices.Clone(heroes)
	sortHeroes(hs)
	s := &Snapshot{heroes: hs, index: make(map[uuid.UUID]int, len(hs))}
	for i := range hs {
		s.index[hs[i].ID] = i
	}
	n := (len(hs) + partHeroes - 1) / partHeroes
	for i := range n {
		chunk := hs[i*partHeroes : min((i+1)*partHeroes, len(hs))]
		b, err := json.Marshal(snapshotPartFrame{Type: kindSnapshotPart, Part: i + 1, Parts: n, Heroes: toHeroesJSON(chunk)})
		if err != nil {
			return nil, fmt.Errorf("dispatch: snapshot part %d: %w", i+1, err)
		}
		s.parts = append(s.parts, b)
	}
	return s, nil
}

// Len returns the number of heroes.
func (s *Snapshot) Len() int { return len(s.heroes) }

// Parts returns the snapshot_part frames, shared: do not modify them.
func (s *Snapshot) Parts() [][]byte { return s.parts }

// Bytes returns the size of the snapshot_part frames together.
func (s *Snapshot) Bytes() int {
	n := 0
	for _, p := range s.parts {
		n += len(p)
	}
	return n
}

// entry returns the snapshot's entry for id.
func (s *Snapshot) entry(id uuid.UUID) (crdt.Hero, bool) {
	i, ok := s.index[id]
	if !ok {
		return crdt.Hero{}, false
	}
	return s.heroes[i], true
}

// encodeSnapshotHeader returns the snapshot frame that opens a
// subscriber's snapshot: its own cluster status and how many
// snapshot_part frames follow.
func encodeSnapshotHeader(snap *Snapshot, cs service.ClusterStatus, tombstoneTTL time.Duration) ([]byte, error) {
	return json.Marshal(snapshotFrame{
		Type:           service.KindSnapshot,
		Cluster:        toClusterJSON(cs),
		TombstoneTTLMs: tombstoneTTL.Milliseconds(),
		Parts:          len(snap.parts),
		Count:          len(snap.heroes),
	})
}
