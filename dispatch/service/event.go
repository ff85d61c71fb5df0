package service

import "github.com/superhero-cluster/superhero/crdt"

// EventKind names an event. The web layer sends it as the "type" of the
// event's WebSocket frame.
type EventKind string

// The event kinds.
const (
	// KindSnapshot carries every live hero and the cluster status. It is
	// the first event of every subscription and is never published.
	KindSnapshot EventKind = "snapshot"
	// KindDelta carries changed entries, tombstones included.
	KindDelta EventKind = "delta"
	// KindCluster carries the cluster status.
	KindCluster EventKind = "cluster"
	// KindFlash carries a message for every page, such as
	// "gotham has been destroyed".
	KindFlash EventKind = "flash"
)

// Event is one thing the open pages are told about.
type Event struct {
	Kind EventKind
	// Heroes holds, for a snapshot, every live hero; for a delta, the
	// changed entries, tombstones (Dead) included.
	Heroes []crdt.Hero
	// Cluster is set for snapshot and cluster events.
	Cluster ClusterStatus
	// Message is the text of a flash event.
	Message string
}

// DeltaEvent returns the event for a replica change.
func DeltaEvent(d crdt.Delta) Event { return Event{Kind: KindDelta, Heroes: d.Heroes} }

// ClusterEvent returns the event for a cluster status change.
func ClusterEvent(cs ClusterStatus) Event { return Event{Kind: KindCluster, Cluster: cs} }

// FlashEvent returns a flash message event.
func FlashEvent(msg string) Event { return Event{Kind: KindFlash, Message: msg} }

// SnapshotEvent returns the first event of a subscription.
func SnapshotEvent(heroes []crdt.Hero, cs ClusterStatus) Event {
	return Event{Kind: KindSnapshot, Heroes: heroes, Cluster: cs}
}

// Publisher takes events for the open pages; web.Hub implements it. The
// backend publishes a delta event whenever dispatch's replica changes (the
// effective delta returned by crdt.Replica.Merge or by a local write) and a
// cluster event whenever a city's status, hero count or digest changes.
// Publish must not block.
type Publisher interface {
	Publish(Event)
}
