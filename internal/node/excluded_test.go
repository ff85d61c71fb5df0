package node

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/superhero-cluster/superhero/messages"
)

// A member frozen for longer than its peers' health polls is dropped and
// blocked by them for good. When it runs again it must learn that it was
// dropped (to rejoin under a fresh id), while the member that dropped it
// must not think itself dropped.
func TestFrozenMemberLearnsItWasDropped(t *testing.T) {
	ports := freePorts(t, 4)
	tc := newTestCluster(t, []int{ports[1], ports[3]})
	cs := tc.startAll(
		tc.spec(messages.DispatchName, ports[0], ports[1], "", ""),
		tc.spec("gotham", ports[2], ports[3], "gotham", kindGotham),
	)
	dispatch, gotham := cs[0], cs[1]
	AwaitCondition(t, 15*time.Second, func() bool { return dispatch.hasKind(kindGotham) }, "dispatch sees gotham")

	if err := gotham.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	AwaitCondition(t, 15*time.Second, func() bool { return !dispatch.hasKind(kindGotham) }, "dispatch drops the frozen gotham")
	if err := gotham.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	var reason string
	AwaitCondition(t, 10*time.Second, func() bool {
		reason = gotham.topology().Excluded
		return reason != ""
	}, "gotham learns it was dropped")
	t.Logf("gotham: %s", reason)
	if r := dispatch.topology(); r.Excluded != "" {
		t.Fatalf("dispatch thinks itself dropped: %s", r.Excluded)
	}
	// The old id is never let back in: only a new member would bring the
	// kind back.
	AssertNever(t, 2*time.Second, func() bool { return dispatch.hasKind(kindGotham) }, "dispatch takes the dropped id back")
}

func TestWatchSelfCountsOnlyAnAbsenceAfterAPresence(t *testing.T) {
	n := &Node{excluded: make(chan struct{}), stopped: make(chan struct{}), log: discardLogger()}
	n.system = newTestSystem("self-id")
	other := &cluster.Member{Id: "other"}
	self := &cluster.Member{Id: "self-id"}

	n.watchSelf(&cluster.ClusterTopology{Members: []*cluster.Member{other}})
	if excludedNow(n) {
		t.Fatal("absent before ever present counted as dropped")
	}
	n.watchSelf(&cluster.ClusterTopology{Members: []*cluster.Member{other, self}})
	n.watchSelf(&cluster.ClusterTopology{Members: []*cluster.Member{other}})
	if !excludedNow(n) || !slices.Contains([]string{"own id left the member list"}, n.ExcludedReason()) {
		t.Fatalf("own id left: excluded %v reason %q", excludedNow(n), n.ExcludedReason())
	}
}

func excludedNow(n *Node) bool {
	select {
	case <-n.Excluded():
		return true
	default:
		return false
	}
}

// newTestSystem returns an actor system with the given id, never started
// as a cluster member.
func newTestSystem(id string) *actor.ActorSystem {
	s := actor.NewActorSystem()
	s.ID = id
	return s
}
