package cityactor_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/testkit"
	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/locations/cityactor"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

// localTransport connects cities spawned on one actor system: messages go
// straight to each city's state actor. Cities can be cut off.
type localTransport struct {
	self   string
	system *actor.ActorSystem
	net    *localNet
}

type localNet struct {
	mu     sync.Mutex
	cities map[string]*cityactor.City
	cut    map[string]bool
}

var _ cityactor.Transport = localTransport{}

func (p localTransport) Peers() []replication.Peer {
	p.net.mu.Lock()
	defer p.net.mu.Unlock()
	var out []replication.Peer
	for name := range p.net.cities {
		if name != p.self && !p.net.cut[name] && !p.net.cut[p.self] {
			out = append(out, replication.Peer{Name: name, City: true})
		}
	}
	return out
}

func (p localTransport) Send(m replication.Message) int {
	msg, err := wire.Encode(m)
	if err != nil {
		panic(err)
	}
	p.net.mu.Lock()
	c, ok := p.net.cities[m.To]
	cut := p.net.cut[m.To] || p.net.cut[p.self]
	p.net.mu.Unlock()
	if ok && !cut {
		p.system.Root.Send(c.State(), msg)
	}
	return len(msg.Delta) + len(msg.Sync)
}

// spawnReplicated starts the named cities on one actor system, connected
// by localPeers with the given replication settings.
func spawnReplicated(t *testing.T, rc replication.Config, names ...string) (*actor.ActorSystem, *localNet) {
	t.Helper()
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	net := &localNet{cities: map[string]*cityactor.City{}, cut: map[string]bool{}}
	for i, name := range names {
		rc := rc
		rc.Role = replication.RoleCity
		c, err := cityactor.Spawn(system, cityactor.Config{
			City:        crdt.Location(name),
			Rules:       quietRules,
			Clock:       crdt.NewClock(name, func() int64 { return time.Now().UnixNano() }),
			Seed:        uint64(i),
			Logger:      logx.Test(t).With("node", name),
			Replication: rc,
			Transport:   localTransport{self: name, system: system, net: net},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Stop)
		net.mu.Lock()
		net.cities[name] = c
		net.mu.Unlock()
	}
	return system, net
}

func (n *localNet) city(name string) *cityactor.City {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cities[name]
}

func (n *localNet) setCut(name string, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[name] = cut
}

// digests returns each city's fingerprint and hero count.
func digests(t *testing.T, system *actor.ActorSystem, n *localNet, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range names {
		res, err := system.Root.RequestFuture(n.city(name).State(), &messages.GetDigest{}, time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		r := res.(*messages.DigestReply)
		var d crdt.Digest
		if err := d.UnmarshalBinary(r.Digest); err != nil {
			t.Fatal(err)
		}
		out[name] = fmt.Sprintf("%d/%x", r.Heroes, d.Fingerprint())
	}
	return out
}

func allEqual(m map[string]string) bool {
	first := ""
	for _, v := range m {
		if first == "" {
			first = v
		} else if v != first {
			return false
		}
	}
	return true
}

// assignIn creates a hero known only to city and assigns it there: a
// local write of that city.
func assignIn(t *testing.T, system *actor.ActorSystem, c *cityactor.City) {
	t.Helper()
	h, delta := seed(t)
	res, err := system.Root.RequestFuture(c.State(), &messages.AssignHero{HeroId: h.ID.String(), Context: delta}, time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	if r := res.(*messages.AssignReply); r.Error != messages.AssignError_ASSIGN_OK {
		t.Fatalf("assign: %v", r.Error)
	}
}

var cityNames = []string{"gotham", "metropolis", "capitol"}

func TestEagerPushAloneReachesEveryReplica(t *testing.T) {
	system, n := spawnReplicated(t, replication.Config{AntiEntropyInterval: -1}, cityNames...)
	for range 5 {
		assignIn(t, system, n.city("gotham"))
	}
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		d := digests(t, system, n, cityNames...)
		return allEqual(d) && d["capitol"][:2] == "5/"
	}, "eager push did not reach every replica")
	if st := n.city("gotham").Stats(); st.Pushes.Load() == 0 || st.SyncRounds.Load() != 0 {
		t.Fatalf("pushes %d, sync rounds %d: want pushes only", st.Pushes.Load(), st.SyncRounds.Load())
	}
}

func TestAntiEntropyAloneRepairsMissedDeltas(t *testing.T) {
	system, n := spawnReplicated(t, replication.Config{NoPush: true, AntiEntropyInterval: 10 * time.Millisecond}, cityNames...)
	// Cut capitol off while gotham writes: it misses everything.
	n.setCut("capitol", true)
	for range 5 {
		assignIn(t, system, n.city("gotham"))
	}
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		d := digests(t, system, n, "gotham", "metropolis")
		return allEqual(d)
	}, "anti-entropy did not spread gotham's writes to metropolis")
	if d := digests(t, system, n, "capitol"); d["capitol"][:2] != "0/" {
		t.Fatalf("capitol got writes while cut off: %v", d)
	}
	n.setCut("capitol", false)
	testkit.AwaitCondition(t, 5*time.Second, func() bool { return allEqual(digests(t, system, n, cityNames...)) },
		"anti-entropy did not repair capitol")
	if st := n.city("gotham").Stats(); st.Pushes.Load() != 0 {
		t.Fatalf("gotham pushed %d times with push off", st.Pushes.Load())
	}
}

func TestBombedCityRefillsFromPeers(t *testing.T) {
	system, n := spawnReplicated(t, replication.Config{AntiEntropyInterval: time.Hour}, cityNames...)
	for range 20 {
		assignIn(t, system, n.city("metropolis"))
	}
	testkit.AwaitCondition(t, 5*time.Second, func() bool { return allEqual(digests(t, system, n, cityNames...)) }, "no convergence")
	if _, err := system.Root.RequestFuture(n.city("gotham").State(), &messages.Bomb{}, time.Second).Result(); err != nil {
		t.Fatal(err)
	}
	// Anti-entropy rounds are an hour apart: only the refill a restart
	// asks for at once can fill gotham.
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		d := digests(t, system, n, cityNames...)
		return allEqual(d) && d["gotham"][:3] == "20/"
	}, "bombed gotham was not refilled")
}
