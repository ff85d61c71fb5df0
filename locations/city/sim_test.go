package city_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/locations/city"
)

// The simulation runs three cities and dispatch over a lossy in-memory
// network for 10,000 ticks of 100 ms simulated time. There is no wall
// clock and no goroutine: time is the tick counter, every physical clock
// is derived from it, and all randomness comes from one seed.

const (
	tickNs       = int64(100 * time.Millisecond)
	simTicks     = 10_000
	syncEvery    = 20   // ticks between a node's anti-entropy exchanges
	collectEvery = 100  // ticks between a node's Collect calls (the period)
	ttlTicks     = 600  // tombstone TTL: 60 s
	maxCut       = 300  // longest partition, well under the TTL
	maxDelay     = 20   // a message arrives 0..maxDelay ticks after it is sent
	dropRate     = 0.10 // share of messages lost
	dupRate      = 0.05 // share of messages delivered twice
)

type msgKind int

const (
	msgDelta  msgKind = iota // an encoded crdt.Delta, sent eagerly on every write
	msgSync                  // an encoded crdt.SyncMsg
	msgAssign                // a hero id: dispatch asks a city to take the hero
)

type message struct {
	from, to int
	kind     msgKind
	body     []byte
	at       int // tick of delivery
}

// network is a message queue that drops, duplicates, delays (and so
// reorders) and partitions, all drawn from its seeded source. A message
// between nodes that are cut apart when it is due is lost.
type network struct {
	rng      *rand.Rand
	queue    []message
	drop     float64
	dup      float64
	maxDelay int
	cut      map[[2]int]bool

	sent, dropped, duplicated, delivered int
}

func newNetwork(rng *rand.Rand) *network {
	return &network{rng: rng, drop: dropRate, dup: dupRate, maxDelay: maxDelay, cut: map[[2]int]bool{}}
}

func (nw *network) send(now int, m message) {
	nw.sent++
	if nw.rng.Float64() < nw.drop {
		nw.dropped++
		return
	}
	copies := 1
	if nw.rng.Float64() < nw.dup {
		copies = 2
		nw.duplicated++
	}
	for range copies {
		m.at = now + nw.rng.IntN(nw.maxDelay+1)
		nw.queue = append(nw.queue, m)
	}
}

// due removes and returns, in random order, the messages due by now that
// are not cut off.
func (nw *network) due(now int) []message {
	var out []message
	keep := nw.queue[:0]
	for _, m := range nw.queue {
		switch {
		case m.at > now:
			keep = append(keep, m)
		case nw.cut[[2]int{m.from, m.to}]:
			nw.dropped++
		default:
			out = append(out, m)
		}
	}
	clear(nw.queue[len(keep):])
	nw.queue = keep
	nw.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	nw.delivered += len(out)
	return out
}

// partition cuts every link between group and the other nodes.
func (nw *network) partition(group []int, nodes int) {
	for _, a := range group {
		for b := range nodes {
			if !slices.Contains(group, b) {
				nw.cut[[2]int{a, b}], nw.cut[[2]int{b, a}] = true, true
			}
		}
	}
}

func (nw *network) heal() { clear(nw.cut) }

// physClock is a node's physical clock: simulated time plus a skew that
// steps back and forth, and that sometimes stalls for a while.
type physClock struct {
	s          *sim
	skew       int64
	stallUntil int
	stalled    int64
}

func (p *physClock) read() int64 {
	if p.s.now < p.stallUntil {
		return p.stalled
	}
	return epoch + int64(p.s.now)*tickNs + p.skew
}

type node struct {
	name    string
	phys    *physClock
	replica *crdt.Replica
	city    *city.City // nil for dispatch
	// seenDead holds the ids this replica has held a tombstone for since
	// it started; storing any of them alive again is a resurrection.
	seenDead map[uuid.UUID]bool
}

type simStats struct {
	writes, creates, deletes, homes, assigns, assignErrs, deaths int
	exchanges, collected, bombs, partitions, stepsBack, stalls   int
}

type sim struct {
	t     *testing.T
	rng   *rand.Rand
	now   int
	nodes []*node // the cities, then dispatch
	net   *network
	// graveyard holds every id tombstoned anywhere.
	graveyard map[uuid.UUID]bool
	cutUntil  int
	stats     simStats
}

const dispatch = 3

func newSim(t *testing.T, seed uint64) *sim {
	t.Helper()
	s := &sim{t: t, rng: seeded(seed), graveyard: map[uuid.UUID]bool{}}
	s.net = newNetwork(seeded(seed + 1))
	cfg := city.Config{PatrolInterval: time.Second, FightInterval: time.Second}
	for i, name := range []string{"gotham", "metropolis", "capitol", "dispatch"} {
		n := &node{name: name, phys: &physClock{s: s, skew: s.rng.Int64N(int64(time.Second)) - int64(time.Second/2)}}
		s.restart(n)
		if i != dispatch {
			c, err := city.New(crdt.Location(name), n.replica, seeded(seed+10+uint64(i)), cfg)
			if err != nil {
				t.Fatal(err)
			}
			n.city = c
		}
		s.nodes = append(s.nodes, n)
	}
	return s
}

// restart gives n a new empty replica and clock, as a bombed city gets.
func (s *sim) restart(n *node) {
	n.replica = crdt.NewReplica(crdt.NewClock(n.name, n.phys.read))
	if n.city != nil {
		n.city.SetReplica(n.replica)
	}
	n.seenDead = map[uuid.UUID]bool{}
}

// observe records the entries that changed n's replica and fails on a
// resurrection.
func (s *sim) observe(i int, d crdt.Delta) {
	s.t.Helper()
	n := s.nodes[i]
	for _, h := range d.Heroes {
		if h.Dead {
			n.seenDead[h.ID] = true
			s.graveyard[h.ID] = true
			continue
		}
		if n.seenDead[h.ID] {
			s.t.Fatalf("tick %d: %s resurrected %s (%s) stamped %v", s.now, n.name, h.Name, h.ID, h.Stamp)
		}
	}
}

func (s *sim) send(from, to int, kind msgKind, v interface{ MarshalBinary() ([]byte, error) }) {
	s.t.Helper()
	b, err := v.MarshalBinary()
	if err != nil {
		s.t.Fatalf("tick %d: %s: encode: %v", s.now, s.nodes[from].name, err)
	}
	s.net.send(s.now, message{from: from, to: to, kind: kind, body: b})
}

// wrote records a local write on node i and sends its delta to every
// other node.
func (s *sim) wrote(i int, d crdt.Delta) {
	s.t.Helper()
	if d.IsEmpty() {
		return
	}
	s.stats.writes++
	s.observe(i, d)
	for j := range s.nodes {
		if j != i {
			s.send(i, j, msgDelta, d)
		}
	}
}

func (s *sim) deliver(m message) {
	s.t.Helper()
	n := s.nodes[m.to]
	switch m.kind {
	case msgDelta:
		var d crdt.Delta
		if err := d.UnmarshalBinary(m.body); err != nil {
			s.t.Fatalf("tick %d: %s: %v", s.now, n.name, err)
		}
		s.observe(m.to, n.replica.Merge(d))
	case msgSync:
		var in crdt.SyncMsg
		if err := in.UnmarshalBinary(m.body); err != nil {
			s.t.Fatalf("tick %d: %s: %v", s.now, n.name, err)
		}
		out, changed := n.replica.SyncStep(in)
		s.observe(m.to, changed)
		if !out.IsEmpty() {
			s.send(m.to, m.from, msgSync, out)
		}
	case msgAssign:
		_, d, err := n.city.Assign(uuid.UUID(m.body))
		switch {
		case errors.Is(err, city.ErrDead), errors.Is(err, city.ErrUnknown):
			s.stats.assignErrs++
		case err != nil:
			s.t.Fatalf("tick %d: %s: assign: %v", s.now, n.name, err)
		default:
			s.stats.assigns++
			s.wrote(m.to, d)
		}
	}
}

// horizon is the Collect horizon of node n: its physical time minus the
// TTL, rounded down to a whole period.
func (s *sim) horizon(n *node) int64 {
	period := collectEvery * tickNs
	return (n.phys.read() - ttlTicks*tickNs) / period * period
}

func (s *sim) randomLive(i int) (uuid.UUID, bool) {
	hs := s.nodes[i].replica.Heroes()
	if len(hs) == 0 {
		return uuid.UUID{}, false
	}
	return hs[s.rng.IntN(len(hs))].ID, true
}

func (s *sim) newID() uuid.UUID {
	var id uuid.UUID
	for i := range id {
		id[i] = byte(s.rng.UintN(256))
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// step runs one tick: clock trouble, partitions, the city rules,
// dispatch's actions, anti-entropy, delivery and collection.
func (s *sim) step() {
	s.t.Helper()
	s.now++
	rng := s.rng

	for _, n := range s.nodes {
		switch x := rng.IntN(1000); {
		case x < 2: // NTP steps the clock back up to a second
			n.phys.skew -= rng.Int64N(int64(time.Second))
			s.stats.stepsBack++
		case x < 4:
			n.phys.skew += rng.Int64N(int64(time.Second))
		case x < 5 && s.now >= n.phys.stallUntil: // the clock stops for up to 3 s
			n.phys.stalled = n.phys.read()
			n.phys.stallUntil = s.now + 1 + rng.IntN(30)
			s.stats.stalls++
		}
		n.phys.skew = min(max(n.phys.skew, -int64(2*time.Second)), int64(2*time.Second))
	}

	// A partition isolates one node or splits the cluster in two, for at
	// most maxCut ticks, with quiet time between partitions.
	switch {
	case s.cutUntil > 0 && s.now == s.cutUntil:
		s.net.heal()
	case s.now > s.cutUntil+200 && rng.IntN(400) == 0:
		var group []int
		for i := range s.nodes {
			if rng.IntN(2) == 0 {
				group = append(group, i)
			}
		}
		if len(group) == 0 || len(group) == len(s.nodes) {
			group = []int{rng.IntN(len(s.nodes))}
		}
		s.net.partition(group, len(s.nodes))
		s.cutUntil = s.now + 50 + rng.IntN(maxCut-50)
		s.stats.partitions++
	}

	// A bombed city restarts with an empty replica.
	if rng.IntN(2000) == 0 {
		s.restart(s.nodes[rng.IntN(dispatch)])
		s.stats.bombs++
	}

	for i, n := range s.nodes[:dispatch] {
		cfg := n.city.Config()
		if s.now%int(int64(cfg.PatrolInterval)/tickNs) == i {
			if _, d, ok := n.city.Patrol(); ok {
				s.wrote(i, d)
			}
		}
		if s.now%int(int64(cfg.FightInterval)/tickNs) == (i+5)%10 {
			if f, d, ok := n.city.Fight(); ok {
				if f.Died() {
					s.stats.deaths++
				}
				s.wrote(i, d)
			}
		}
	}

	dr := s.nodes[dispatch].replica
	switch x := rng.IntN(100); {
	case x < 6:
		_, d, err := dr.Create(s.newID(), fmt.Sprintf("hero-%d", s.stats.creates))
		if err != nil {
			s.t.Fatal(err)
		}
		s.stats.creates++
		s.wrote(dispatch, d)
	case x < 12:
		if id, ok := s.randomLive(dispatch); ok {
			s.send(dispatch, rng.IntN(dispatch), msgAssign, id)
		}
	case x < 13:
		if id, ok := s.randomLive(dispatch); ok {
			d, err := dr.Delete(id)
			if err != nil {
				s.t.Fatal(err)
			}
			s.stats.deletes++
			s.wrote(dispatch, d)
		}
	case x < 14:
		if id, ok := s.randomLive(dispatch); ok {
			_, d, err := city.AssignHome(dr, id, city.Config{})
			if err != nil {
				s.t.Fatal(err)
			}
			s.stats.homes++
			s.wrote(dispatch, d)
		}
	}

	for i, n := range s.nodes {
		if s.now%syncEvery == i*syncEvery/len(s.nodes) {
			peer := (i + 1 + rng.IntN(len(s.nodes)-1)) % len(s.nodes)
			s.send(i, peer, msgSync, n.replica.SyncStart())
			s.stats.exchanges++
		}
	}

	for _, m := range s.net.due(s.now) {
		s.deliver(m)
	}

	for i, n := range s.nodes {
		if s.now%collectEvery == (i*7)%collectEvery {
			s.stats.collected += n.replica.Collect(s.horizon(n))
		}
	}
}

// settle heals the network, makes it reliable, delivers everything in
// flight, collects at one common horizon, and runs anti-entropy between
// every pair until a full round changes nothing. It returns the rounds.
func (s *sim) settle() int {
	s.t.Helper()
	s.net.heal()
	s.net.drop, s.net.dup = 0, 0
	for len(s.net.queue) > 0 {
		s.now++
		for _, m := range s.net.due(s.now) {
			s.deliver(m)
		}
	}
	// Replicas that collected at different moments (a restarted city has
	// not collected at all) differ in old tombstones; the period rounding
	// makes them agree at the next Collect, done here at once.
	var h int64
	for _, n := range s.nodes {
		h = max(h, n.replica.Horizon())
	}
	for _, n := range s.nodes {
		n.replica.Collect(h)
	}
	for round := 1; round <= 3; round++ {
		changes := 0
		for i := range s.nodes {
			for j := i + 1; j < len(s.nodes); j++ {
				changes += s.exchange(i, j)
			}
		}
		if changes == 0 {
			return round
		}
	}
	s.t.Fatal("anti-entropy between all pairs did not settle in 3 rounds")
	return 0
}

// exchange runs a reliable anti-entropy exchange from i to j and returns
// how many entries changed either replica.
func (s *sim) exchange(i, j int) int {
	s.t.Helper()
	changes := 0
	msg := s.nodes[i].replica.SyncStart()
	to := j
	for !msg.IsEmpty() {
		b, err := msg.MarshalBinary()
		if err != nil {
			s.t.Fatal(err)
		}
		var in crdt.SyncMsg
		if err := in.UnmarshalBinary(b); err != nil {
			s.t.Fatal(err)
		}
		var changed crdt.Delta
		msg, changed = s.nodes[to].replica.SyncStep(in)
		s.observe(to, changed)
		changes += changed.Len()
		to = i + j - to // the other side answers
	}
	return changes
}

func TestSimulation(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if testing.Short() || raceEnabled {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			s := newSim(t, seed)
			for range simTicks {
				s.step()
			}
			rounds := s.settle()

			ref := s.nodes[0].replica
			for _, n := range s.nodes[1:] {
				if n.replica.Fingerprint() != ref.Fingerprint() {
					t.Errorf("%s fingerprint %x, %s %x", n.name, n.replica.Fingerprint(), s.nodes[0].name, ref.Fingerprint())
				}
				a, b := n.replica.State(), ref.State()
				if !slices.Equal(a.Heroes, b.Heroes) {
					t.Errorf("%s holds %d entries, %s %d: states differ", n.name, a.Len(), s.nodes[0].name, b.Len())
				}
			}
			for id := range s.graveyard {
				for _, n := range s.nodes {
					if h, err := n.replica.Lookup(id); err == nil {
						t.Errorf("%s: %s (%s) was tombstoned but is alive", n.name, h.Name, id)
					}
				}
			}

			st, nw := s.stats, s.net
			t.Logf("ticks %d, settled in %d rounds; %d heroes alive, %d tombstones held", s.now, rounds, ref.Len(), ref.Tombstones())
			t.Logf("%+v", st)
			t.Logf("messages: sent %d, dropped %d, duplicated %d, delivered %d", nw.sent, nw.dropped, nw.duplicated, nw.delivered)
			// The run exercised what it claims to.
			for what, n := range map[string]int{
				"creates": st.creates, "deaths": st.deaths, "deletes": st.deletes, "home assignments": st.homes,
				"city assignments": st.assigns, "failed assignments": st.assignErrs, "collected tombstones": st.collected,
				"bombs": st.bombs, "partitions": st.partitions, "clock steps back": st.stepsBack, "clock stalls": st.stalls,
				"dropped messages": nw.dropped, "duplicated messages": nw.duplicated,
			} {
				if n == 0 {
					t.Errorf("the run had no %s", what)
				}
			}
			if ref.Len() == 0 {
				t.Error("no hero alive at the end")
			}
		})
	}
}
