package cityactor_test

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/cluster_test_tool"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/locations/cityactor"
	"github.com/superhero-cluster/superhero/messages"
)

// TestGrainFrontsTheCity reaches the city through the cluster, by identity
// and kind, on the library's in-memory cluster fixture (one member: several
// members in one process trip the library's own data races).
func TestGrainFrontsTheCity(t *testing.T) {
	fx := cluster_test_tool.NewBaseInMemoryClusterFixture(1,
		cluster_test_tool.WithGetClusterKinds(func() []*cluster.Kind {
			return []*cluster.Kind{cityactor.GrainKind("gotham")}
		}))
	fx.Initialize()
	t.Cleanup(fx.ShutDown)
	member := fx.GetMembers()[0]

	c, err := cityactor.Spawn(member.ActorSystem, cityactor.Config{
		City:   crdt.Gotham,
		Rules:  quietRules,
		Clock:  crdt.NewClock("gotham", func() int64 { return time.Now().UnixNano() }),
		Logger: logx.Test(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)

	_, delta := seed(t)
	res, err := member.Request("gotham", messages.CityKind("gotham"), &messages.MergeDelta{Delta: delta}, cluster.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if ack, ok := res.(*messages.MergeAck); !ok || ack.Changed != 1 {
		t.Fatalf("merge through the grain: %T %v", res, res)
	}
	res, err = member.Request("gotham", messages.CityKind("gotham"), &messages.GetDigest{}, cluster.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := res.(*messages.DigestReply); !ok || d.City != "gotham" || d.Heroes != 1 {
		t.Fatalf("digest through the grain: %T %v", res, res)
	}
	// A bomb through the grain crashes the state actor, not the grain: the
	// next request through the same grain finds the city restarted empty.
	if _, err := member.Request("gotham", messages.CityKind("gotham"), &messages.Bomb{}, cluster.WithTimeout(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	res, err = member.Request("gotham", messages.CityKind("gotham"), &messages.GetDigest{}, cluster.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if d := res.(*messages.DigestReply); d.Heroes != 0 || d.Incarnation != 2 {
		t.Fatalf("after a bomb through the grain: heroes %d incarnation %d, want 0 and 2", d.Heroes, d.Incarnation)
	}
}
