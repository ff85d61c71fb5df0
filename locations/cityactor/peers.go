package cityactor

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/messages"
)

// NodePeers reaches the other replicas through a cluster node: every city
// whose kind is in the topology, except this one, and dispatch when it
// offers messages.DispatchKind.
type NodePeers struct {
	Node *node.Node
	// Self is this city's name.
	Self string
}

var _ Peers = NodePeers{}

// Targets implements Peers.
func (p NodePeers) Targets() []Target {
	var out []Target
	for _, k := range p.Node.Kinds() {
		switch name, isCity := messages.CityFromKind(k); {
		case k == messages.DispatchKind:
			out = append(out, Target{Identity: messages.DispatchName, Kind: messages.DispatchKind})
		case isCity && name != p.Self:
			out = append(out, Target{Identity: name, Kind: k})
		}
	}
	return out
}

// Request implements Peers.
func (p NodePeers) Request(ctx context.Context, t Target, msg proto.Message) (proto.Message, error) {
	return p.Node.Request(ctx, t.Identity, t.Kind, msg, remaining(ctx))
}

// Send implements Peers.
func (p NodePeers) Send(ctx context.Context, t Target, msg proto.Message) error {
	return p.Node.Send(ctx, t.Identity, t.Kind, msg, remaining(ctx))
}

func remaining(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return time.Second
}
