package node

import (
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The library never lets a member id back in once it has left: MemberList
// blocks every departed id for good, and the remote refuses connections
// from blocked ids. A member that was cut off for longer than its lease
// (etcd) or its health polls (automanaged) is dropped by the others and
// stays dropped even when the network heals, while it goes on believing it
// belongs. The only way back is a new member id, that is a new actor
// system. Node cannot do that alone, because the caller's actors live in
// the system; it reports the exclusion on Excluded and the caller starts a
// new Node, carrying its state over (see the city and dispatch mains).

// Excluded is closed when this member learns that the cluster has dropped
// it: its own id left its member list (an etcd watch that replays the
// expiry of its own lease), a peer answered a connection with "blocked",
// or a peer's gossip lists it as blocked. The node keeps running; the
// caller should rejoin under a fresh member id. ExcludedReason says why.
func (n *Node) Excluded() <-chan struct{} { return n.excluded }

// ExcludedReason says why Excluded was closed ("" while it is not).
func (n *Node) ExcludedReason() string {
	n.excludeMu.Lock()
	defer n.excludeMu.Unlock()
	return n.excludeReason
}

// exclude closes Excluded once, unless the node is stopping.
func (n *Node) exclude(reason string, attrs ...any) {
	if n.isStopped() {
		return
	}
	n.excludeMu.Lock()
	defer n.excludeMu.Unlock()
	if n.excludeReason != "" {
		return
	}
	n.excludeReason = reason
	close(n.excluded)
	n.log.Warn("this member was dropped by the cluster", append([]any{slog.String("reason", reason), slog.String("member_id", n.system.ID)}, attrs...)...)
}

// watchSelf checks a topology event for this member's own departure. A
// member is first absent from its own list (automanaged learns itself from
// its first poll), so only an absence after a presence counts.
func (n *Node) watchSelf(ev *cluster.ClusterTopology) {
	for _, m := range ev.Left {
		if m != nil {
			n.noteBlocked(m.Id)
		}
	}
	present := slices.ContainsFunc(ev.Members, func(m *cluster.Member) bool { return m != nil && n.isSelf(m.Id) })
	if present {
		n.selfSeen.Store(true)
		return
	}
	if n.selfSeen.Load() {
		n.exclude("own id left the member list")
	}
}

// isSelf reports whether a member id in the topology is this member's. The
// automanaged provider uses the actor system's id; the etcd provider
// prefixes it with the cluster name ("<cluster>@<system id>"), and that
// prefixed id is the one peers block.
func (n *Node) isSelf(memberID string) bool {
	return memberID == n.system.ID || memberID == n.memberID()
}

// memberID is this member's id as the provider reports it to peers, which
// is the id they block when they drop it.
func (n *Node) memberID() string {
	if n.cfg.Provider == ProviderEtcd {
		return n.clusterName + "@" + n.system.ID
	}
	return n.system.ID
}

// noteBlocked records member ids this node's library has blocked: every
// member that left its member list, and the blocked ids peers gossip. It
// mirrors remote.BlockList, whose IsBlocked reads without its lock.
func (n *Node) noteBlocked(ids ...string) {
	if len(ids) == 0 {
		return
	}
	n.blockedMu.Lock()
	defer n.blockedMu.Unlock()
	if n.blocked == nil {
		n.blocked = make(map[string]struct{})
	}
	for _, id := range ids {
		n.blocked[id] = struct{}{}
	}
}

// hasBlocked reports whether this node has blocked the member id.
func (n *Node) hasBlocked(id string) bool {
	n.blockedMu.Lock()
	defer n.blockedMu.Unlock()
	_, ok := n.blocked[id]
	return ok
}

// watchGossip checks the blocked list that peers gossip with the topology.
func (n *Node) watchGossip(ev *cluster.GossipUpdate) {
	if ev.Key != "topology" || ev.Value == nil {
		return
	}
	var t cluster.ClusterTopology
	if err := ev.Value.UnmarshalTo(&t); err != nil {
		return
	}
	n.noteBlocked(t.Blocked...)
	if slices.ContainsFunc(t.Blocked, n.isSelf) {
		n.exclude("a peer gossips this member as blocked", slog.String("peer", ev.MemberID))
	}
}

// blockedBy reports whether a message received on a stream this node
// opened is the peer's refusal of this member id.
func blockedBy(m any) bool {
	rm, ok := m.(*remote.RemoteMessage)
	if !ok {
		return false
	}
	cr := rm.GetConnectResponse()
	return cr != nil && cr.Blocked
}

// memberCheckName is the actor every node runs to answer "have you
// blocked this member id?".
const memberCheckName = "superhero-member-check"

// memberCheckTimeout bounds one round of member checks.
const memberCheckTimeout = time.Second

// spawnMemberCheck starts the actor that answers other members' checks: a
// StringValue carrying their member id gets a BoolValue saying whether
// this node has blocked it.
func (n *Node) spawnMemberCheck() error {
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if id, ok := ctx.Message().(*wrapperspb.StringValue); ok && ctx.Sender() != nil {
			ctx.Respond(wrapperspb.Bool(n.hasBlocked(id.GetValue())))
		}
	})
	_, err := n.system.Root.SpawnNamed(props, memberCheckName)
	return err
}

// checkMembership asks every other member, every interval, whether it has
// blocked this member, until the node stops or is excluded. Signals of the
// library alone do not suffice: a member that was frozen (SIGSTOP) or cut
// off keeps its open streams, which peers go on reading, so it neither
// redials (and meets "blocked") nor sees itself leave; only its peers know.
func (n *Node) checkMembership(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.stopped:
			return
		case <-n.excluded:
			return
		case <-t.C:
		}
		self := n.memberID()
		type pending struct {
			peer string
			f    *actor.Future
		}
		var asked []pending
		for _, m := range n.Topology().Members {
			if n.isSelf(m.ID) {
				continue
			}
			pid := actor.NewPID(m.Address, memberCheckName)
			asked = append(asked, pending{m.Address, n.system.Root.RequestFuture(pid, wrapperspb.String(self), memberCheckTimeout)})
		}
		for _, p := range asked {
			res, err := p.f.Result()
			if b, ok := res.(*wrapperspb.BoolValue); err == nil && ok && b.GetValue() {
				n.exclude("a peer has blocked this member id", slog.String("peer", p.peer))
				return
			}
		}
	}
}
