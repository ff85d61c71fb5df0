package backend

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// RefusalLogInterval is how often at most a refused push from one city is
// logged.
const RefusalLogInterval = 10 * time.Second

// InboxKind returns the cluster kind through which cities push their
// writes to dispatch: a grain that merges every pushed delta into the
// store, whose change hook feeds the pages at once.
func InboxKind(store *Store, log *slog.Logger) *cluster.Kind {
	log = log.With("actor", "inbox")
	refusedAt := map[string]time.Time{} // only the inbox actor touches it
	return cluster.NewKind(messages.DispatchKind, actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *messages.Replicate:
			m2, err := wire.Decode(m, messages.DispatchName)
			if err != nil {
				log.Warn("bad replication message", "from", m.GetFrom(), "err", err)
				return
			}
			if m2.Kind != replication.MsgPush {
				log.Debug("replication message ignored", "from", m2.From, "kind", m2.Kind)
				return
			}
			if err := store.CheckOffset(m2.Delta); err != nil {
				// At most one line per peer per interval.
				if now := time.Now(); now.Sub(refusedAt[m2.From]) >= RefusalLogInterval {
					refusedAt[m2.From] = now
					log.Warn("pushed delta refused", "from", m2.From, "err", err)
				}
				return
			}
			store.Merge(m2.Delta)
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
