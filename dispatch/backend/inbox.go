package backend

import (
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/superhero-cluster/superhero/messages"
)

// InboxKind returns dispatch's cluster kind. While a member hosts it the
// cities count dispatch as up and push their writes to it. The cities'
// engines send their messages straight to the replica actor
// (messages.DispatchReplicaActor, see wire.EngineActor), which merges
// pushes (and so feeds the pages at once) and takes the answers to its own
// exchanges; the kind's thin grain hands on any Replicate message that is
// addressed to the grain instead.
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
