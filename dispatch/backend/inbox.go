package backend

import (
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/messages"
)

// InboxKind returns the cluster kind through which cities push their
// writes to dispatch: a grain that merges every pushed delta into the
// store, whose change hook feeds the pages at once.
func InboxKind(store *Store, log *slog.Logger) *cluster.Kind {
	log = log.With("actor", "inbox")
	return cluster.NewKind(messages.DispatchKind, actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *messages.MergeDelta:
			var d crdt.Delta
			if err := d.UnmarshalBinary(m.Delta); err != nil {
				log.Warn("bad pushed delta", "from", m.From, "err", err)
				return
			}
			changed := store.Merge(d)
			if ctx.Sender() != nil {
				ctx.Respond(&messages.MergeAck{Changed: uint32(changed.Len())})
			}
		case actor.SystemMessage, actor.AutoReceiveMessage, *cluster.ClusterInit:
		default:
			log.Warn("unknown message", "type", fmt.Sprintf("%T", m))
		}
	}))
}
