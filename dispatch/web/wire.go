package web

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

// The JSON shapes of the API and of WebSocket frames. They are the only
// place the wire format is spelled out.

// heroJSON is a hero on the wire.
type heroJSON struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Location     string `json:"location"`
	IsPatrolling bool   `json:"is_patrolling"`
	Health       int    `json:"health"`
	Dead         bool   `json:"dead"`
	UpdatedAt    string `json:"updated_at"` // the stamp's wall time, RFC 3339 with nanoseconds, UTC
	UpdatedBy    string `json:"updated_by"` // the node that made the latest write
	// Stamp is the entry's whole stamp, which orders it against other
	// entries for the same id (the page applies an entry only if it wins
	// by the merge rule). UpdatedAt and UpdatedBy are kept for readers
	// that only show it.
	Stamp stampJSON `json:"stamp"`
}

// stampJSON is a crdt.Timestamp on the wire, whole and exact:
//
//	{"wall":"1751890000123456789","logical":0,"node":"gotham"}
//
// Wall, nanoseconds since 1970, is a decimal string: it is about 1.8e18,
// beyond the 2^53 up to which a JavaScript number holds every integer, so
// as a JSON number the page would round it and misorder writes made within
// the same few hundred nanoseconds. The string is Go's canonical base-10
// form (no leading zeros, "-" for a negative), so two walls compare by sign,
// then length, then character by character. Logical (a uint32) and Node
// are exact as they are.
type stampJSON struct {
	Wall    int64  `json:"wall,string"`
	Logical uint32 `json:"logical"`
	Node    string `json:"node"`
}

func toHeroJSON(h crdt.Hero) heroJSON {
	return heroJSON{
		ID:           h.ID.String(),
		Name:         h.Name,
		Location:     string(h.Location),
		IsPatrolling: h.Patrolling,
		Health:       h.Health,
		Dead:         h.Dead,
		UpdatedAt:    time.Unix(0, h.Stamp.Wall).UTC().Format(time.RFC3339Nano),
		UpdatedBy:    h.Stamp.Node,
		Stamp:        stampJSON{Wall: h.Stamp.Wall, Logical: h.Stamp.Logical, Node: h.Stamp.Node},
	}
}

// toHeroesJSON converts heroes, never returning nil (so the JSON is [] and
// not null).
func toHeroesJSON(hs []crdt.Hero) []heroJSON {
	out := make([]heroJSON, len(hs))
	for i := range hs {
		out[i] = toHeroJSON(hs[i])
	}
	return out
}

// sortHeroes sorts by name, then id.
func sortHeroes(hs []crdt.Hero) {
	slices.SortFunc(hs, func(a, b crdt.Hero) int {
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
}

type heroesJSON struct {
	Superheroes []heroJSON `json:"superheroes"`
}

type cityJSON struct {
	Name        string `json:"name"`
	Up          bool   `json:"up"`
	Heroes      int    `json:"heroes"`
	Digest      string `json:"digest"`      // 16 hex digits; "" when down
	State       string `json:"state"`       // "up", "restarting" or "down"
	Incarnation uint64 `json:"incarnation"` // starts of the city's actor; 0 when down
	LagMs       int64  `json:"lag_ms"`      // how long it has been out of sync, in ms
}

type clusterJSON struct {
	Cities []cityJSON `json:"cities"`
	InSync bool       `json:"in_sync"`
	// Ready is false while dispatch catches up after a restart; the page
	// then shows "catching up" instead of an empty table.
	Ready bool `json:"ready"`
}

func toClusterJSON(cs service.ClusterStatus) clusterJSON {
	out := clusterJSON{Cities: make([]cityJSON, len(cs.Cities)), InSync: cs.InSync, Ready: cs.Ready}
	for i, c := range cs.Cities {
		out.Cities[i] = cityJSON{Name: string(c.Name), Up: c.Up, State: "down"}
		if c.Up {
			out.Cities[i].Heroes = c.Heroes
			out.Cities[i].Digest = fmt.Sprintf("%016x", c.Digest)
			out.Cities[i].Incarnation = c.Incarnation
			out.Cities[i].LagMs = c.Lag.Milliseconds()
			out.Cities[i].State = "up"
			if c.Restarting {
				out.Cities[i].State = "restarting"
			}
		}
	}
	return out
}

type cityRefJSON struct {
	City string `json:"city"`
}

type errorJSON struct {
	Error string `json:"error"`
}

// Server-to-client WebSocket frames.

// snapshotFrame opens a snapshot: the subscriber's cluster status and the
// number of snapshot_part frames that follow it, with nothing in between.
type snapshotFrame struct {
	Type    service.EventKind `json:"type"`
	Cluster clusterJSON       `json:"cluster"`
	// TombstoneTTLMs is how long the page remembers a tombstone, so that
	// a stale live entry arriving after it cannot bring the hero back:
	// Config.TombstoneTTL, as long as replicas keep tombstones.
	TombstoneTTLMs int64 `json:"tombstone_ttl_ms"`
	Parts          int   `json:"parts"` // snapshot_part frames that follow
	Count          int   `json:"count"` // heroes in them, together
}

// kindSnapshotPart is the type of the frames carrying a snapshot's heroes.
const kindSnapshotPart = "snapshot_part"

// snapshotPartFrame is one piece of a snapshot's heroes; the same bytes
// go to every subscriber that starts from the snapshot.
type snapshotPartFrame struct {
	Type   string     `json:"type"`
	Part   int        `json:"part"`  // 1 to Parts
	Parts  int        `json:"parts"` // as in the snapshot frame
	Heroes []heroJSON `json:"heroes"`
}

type deltaFrame struct {
	Type   service.EventKind `json:"type"`
	Heroes []heroJSON        `json:"heroes"`
}

type clusterFrame struct {
	Type    service.EventKind `json:"type"`
	Cluster clusterJSON       `json:"cluster"`
}

type flashFrame struct {
	Type    service.EventKind `json:"type"`
	Message string            `json:"message"`
}

// okFrame answers a command that succeeded.
type okFrame struct {
	Type string          `json:"type"` // "ok"
	Ref  json.RawMessage `json:"ref,omitempty"`
	Hero *heroJSON       `json:"hero,omitempty"` // create, assign
	ID   string          `json:"id,omitempty"`   // delete
	City string          `json:"city,omitempty"` // bomb
}

// errorFrame answers a command that failed, or a frame that could not be
// read as a command.
type errorFrame struct {
	Type   string          `json:"type"` // "error"
	Ref    json.RawMessage `json:"ref,omitempty"`
	Error  string          `json:"error"`
	Status int             `json:"status"`
}

// command is a client-to-server WebSocket frame. Fields not used by the op
// are ignored; fields not listed here are an error.
type command struct {
	Op       string          `json:"op"` // create, delete, assign, bomb
	Ref      json.RawMessage `json:"ref,omitempty"`
	Name     string          `json:"name,omitempty"`
	ID       string          `json:"id,omitempty"`
	Location *string         `json:"location,omitempty"`
	City     string          `json:"city,omitempty"`
}

// encodeEvent returns the frame for ev: a delta, cluster or flash event.
// (A snapshot is a header, encodeSnapshotHeader, and shared parts.)
func encodeEvent(ev service.Event) ([]byte, error) {
	switch ev.Kind {
	case service.KindDelta:
		return json.Marshal(deltaFrame{Type: ev.Kind, Heroes: toHeroesJSON(ev.Heroes)})
	case service.KindCluster:
		return json.Marshal(clusterFrame{Type: ev.Kind, Cluster: toClusterJSON(ev.Cluster)})
	case service.KindFlash:
		return json.Marshal(flashFrame{Type: ev.Kind, Message: ev.Message})
	}
	return nil, fmt.Errorf("dispatch: event kind %q has no frame of its own", ev.Kind)
}
