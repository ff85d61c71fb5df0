package node

import (
	"log/slog"
	"slices"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
)

// Member is one member of the current cluster topology.
type Member struct {
	// ID is the member's actor-system id (new on every process start).
	ID string
	// Address is the member's remoting address ("host:port").
	Address string
}

// Topology is a snapshot of the cluster as this node currently sees it.
type Topology struct {
	// Members, sorted by address.
	Members []Member
	// Kinds is the sorted union of the kinds the members host
	// (library-internal kinds such as the pub-sub topic kind are left out).
	Kinds []string
}

// HasKind reports whether some member hosts kind.
func (t Topology) HasKind(kind string) bool {
	_, found := slices.BinarySearch(t.Kinds, kind)
	return found
}

// topology tracks ClusterTopology events of the node's own actor system.
// It owns the rendezvous used to place grains and the PID cache, so requests
// never read the library's unsynchronised disthash state.
type topology struct {
	mu   sync.RWMutex
	snap Topology
	rdv  *cluster.Rendezvous
	pids map[string]*actor.PID // kind + "/" + identity
}

func newTopology() *topology {
	return &topology{
		rdv:  cluster.NewRendezvous(),
		pids: make(map[string]*actor.PID),
	}
}

// update applies a ClusterTopology event; it runs on the library goroutine
// that publishes the event. It returns the new snapshot and whether the set
// of kinds changed.
func (t *topology) update(ev *cluster.ClusterTopology) (Topology, bool) {
	members := make([]Member, 0, len(ev.Members))
	kindSet := make(map[string]struct{})
	for _, m := range ev.Members {
		if m == nil {
			continue
		}
		for _, k := range m.Kinds {
			if k != cluster.TopicActorKind {
				kindSet[k] = struct{}{}
			}
		}
		members = append(members, Member{ID: m.Id, Address: m.Address()})
	}
	slices.SortFunc(members, func(a, b Member) int {
		switch {
		case a.Address < b.Address:
			return -1
		case a.Address > b.Address:
			return 1
		}
		return 0
	})
	kinds := make([]string, 0, len(kindSet))
	for k := range kindSet {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	snap := Topology{Members: members, Kinds: kinds}

	t.mu.Lock()
	defer t.mu.Unlock()
	changed := !slices.Equal(t.snap.Kinds, kinds)
	t.snap = snap
	t.rdv.UpdateMembers(ev.Members)
	// Owners may have changed (disthash moves grains on topology changes),
	// so cached PIDs are no longer trustworthy.
	clear(t.pids)
	return snap, changed
}

func (t *topology) snapshot() Topology {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.snap
}

func (t *topology) hasKind(kind string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.snap.HasKind(kind)
}

// owner returns the remoting address of the member that owns identity of
// kind, or "" when no member hosts the kind.
func (t *topology) owner(identity, kind string) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.rdv.GetByClusterIdentity(cluster.NewClusterIdentity(identity, kind))
}

func (t *topology) cachedPID(key string) *actor.PID {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.pids[key]
}

func (t *topology) cachePID(key string, pid *actor.PID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pids[key] = pid
}

func (t *topology) forgetPID(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pids, key)
}

// Topology returns the current topology snapshot.
func (n *Node) Topology() Topology { return n.topo.snapshot() }

// Kinds returns the sorted kinds hosted by the members currently in the
// topology. A city is "up" when its kind is listed.
func (n *Node) Kinds() []string { return slices.Clone(n.topo.snapshot().Kinds) }

// HasKind reports whether a member currently in the topology hosts kind. It
// is cheap (no network); use it to answer 503 at once for a down city.
func (n *Node) HasKind(kind string) bool { return n.topo.hasKind(kind) }

func (n *Node) onClusterTopology(ev *cluster.ClusterTopology) {
	snap, changed := n.topo.update(ev)
	attrs := []any{
		slog.Int("members", len(snap.Members)),
		slog.Any("kinds", snap.Kinds),
		slog.Int("joined", len(ev.Joined)),
		slog.Int("left", len(ev.Left)),
	}
	if changed {
		n.log.Info("cluster kinds changed", attrs...)
	} else {
		n.log.Debug("cluster topology changed", attrs...)
	}
}
