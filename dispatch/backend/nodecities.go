package backend

import (
	"context"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/messages"
)

// NodeCities reaches city grains through a cluster node. A city is up while
// its kind is in the cluster topology; the grain's identity is the city's
// name and its kind is messages.CityKind(name).
type NodeCities struct {
	Node *node.Node
	// Timeout bounds a request whose ctx has no deadline. Default 1 s.
	Timeout time.Duration
}

var _ Cities = NodeCities{}

// Up implements Cities.
func (c NodeCities) Up() []crdt.Location {
	var up []crdt.Location
	for _, k := range c.Node.Kinds() {
		name, ok := messages.CityFromKind(k)
		if !ok {
			continue
		}
		if loc, err := crdt.ParseLocation(name); err == nil && loc.IsCity() {
			up = append(up, loc)
		}
	}
	slices.Sort(up)
	return up
}

// Request implements Cities, within ctx's deadline.
func (c NodeCities) Request(ctx context.Context, city crdt.Location, msg proto.Message) (proto.Message, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return c.Node.Request(ctx, string(city), messages.CityKind(string(city)), msg, timeout)
}
