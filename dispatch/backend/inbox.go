package backend

import (
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/superhero-cluster/superhero/messages"
)

// InboxKind returns the cluster kind through which the cities' replication
// engines reach dispatch's: a thin grain that hands every Replicate
// message to the replica actor, which merges pushes (and so feeds the
// pages at once) and takes the answers to its own exchanges.
func InboxKind(replica func() *Replica, log *slog.Logger) *cluster.Kind {
	log = log.With("actor", "inbox")
	return cluster.NewKind(messages.DispatchKind, actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *messages.Replicate:
			if r := replica(); r != nil {
				r.Deliver(m)
			}
		case actor.SystemMessage, actor.AutoReceiveMessage, *cluster.ClusterInit:
		default:
			log.Warn("unknown message", "type", fmt.Sprintf("%T", m))
		}
	}))
}
