package wire

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// Address returns the grain identity and kind of the named node: dispatch's
// inbox or a city's grain. Replication messages go to the engine's actor
// (EngineActor) on the member that hosts that kind.
func Address(name string) (identity, kind string) {
	if name == messages.DispatchName {
		return messages.DispatchName, messages.DispatchKind
	}
	return name, messages.CityKind(name)
}

// EngineActor returns the name of the actor that runs the named node's
// replication engine, on the member that hosts the node's kind
// (Address): dispatch's replica actor or the city's state actor.
// Replication messages go to it directly, not through the node's grain.
func EngineActor(name string) string {
	if name == messages.DispatchName {
		return messages.DispatchReplicaActor
	}
	return messages.CityStateActor(name)
}

// PeersFromKinds returns the nodes, other than self, that host one of the
// given cluster kinds: every city and, when it is up, dispatch.
func PeersFromKinds(kinds []string, self string) []replication.Peer {
	var out []replication.Peer
	for _, k := range kinds {
		switch city, isCity := messages.CityFromKind(k); {
		case k == messages.DispatchKind && self != messages.DispatchName:
			out = append(out, replication.Peer{Name: messages.DispatchName})
		case isCity && city != self:
			out = append(out, replication.Peer{Name: city, City: true})
		}
	}
	return out
}

// NodeTransport carries one node's replication messages through its
// cluster member: peers are read from the topology, and messages leave
// through an Outbox.
type NodeTransport struct {
	node   *node.Node
	outbox *Outbox
}

// NewNodeTransport returns a transport for n; Close stops it. Its outbox
// counts drops into counters (nil: its own).
func NewNodeTransport(n *node.Node, log *slog.Logger, counters *Counters) *NodeTransport {
	send := func(_ context.Context, to string, msg proto.Message) error {
		identity, kind := Address(to)
		return n.SendToActor(identity, kind, EngineActor(to), msg)
	}
	return &NodeTransport{node: n, outbox: NewOutbox(OutboxConfig{Send: send, Logger: log, Counters: counters})}
}

// Peers returns the other nodes that are up.
func (t *NodeTransport) Peers() []replication.Peer {
	return PeersFromKinds(t.node.Kinds(), t.node.Name())
}

// Send queues m; see Outbox.Send.
func (t *NodeTransport) Send(m replication.Message) int { return t.outbox.Send(m) }

// Close stops the transport's goroutines.
func (t *NodeTransport) Close() { t.outbox.Close() }
