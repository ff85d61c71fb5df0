package backend

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/messages"
)

// Cities reaches the city grains of the cluster.
type Cities interface {
	// Up returns the cities currently in the cluster topology, sorted.
	Up() []crdt.Location
	// Request sends msg to the city's grain and returns its reply. It never
	// waits past ctx's deadline.
	Request(ctx context.Context, city crdt.Location, msg proto.Message) (proto.Message, error)
}

// Protocol selects how state spreads.
type Protocol string

const (
	// ProtocolDefault spreads deltas and exchanges digests first, so only
	// what differs crosses the network.
	ProtocolDefault Protocol = "default"
	// ProtocolOriginal is the Elixir original: full state copies only.
	ProtocolOriginal Protocol = "original"
)

// ParseProtocol validates a -protocol flag value.
func ParseProtocol(s string) (Protocol, error) {
	switch p := Protocol(s); p {
	case ProtocolDefault, ProtocolOriginal:
		return p, nil
	}
	return "", fmt.Errorf("backend: unknown protocol %q (want default or original)", s)
}

// ErrTooFewCities means a gossip round needs two cities up and has fewer.
var ErrTooFewCities = errors.New("backend: fewer than two cities up")

// maxSyncRounds bounds an anti-entropy exchange. Three or four steps
// settle replicas that differ in a few entries; a refill of a large
// replica takes two more per crdt.MaxSyncEntries entries.
const maxSyncRounds = 64

// request sends msg and checks the reply's type.
func request[T proto.Message](ctx context.Context, c Cities, city crdt.Location, msg proto.Message) (T, error) {
	var zero T
	res, err := c.Request(ctx, city, msg)
	if err != nil {
		return zero, err
	}
	v, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("backend: %s answered %T to %T", city, res, msg)
	}
	return v, nil
}

// Gossiper moves state from a random city to another: dispatch's gossip
// round, as in the original.
type Gossiper struct {
	Cities   Cities
	Rand     *rand.Rand
	Protocol Protocol
	// Store, when set in the default protocol, takes part in every round:
	// dispatch's replica runs an exchange with one random city, so a push
	// of dispatch's own writes that was lost is repaired within a round.
	Store *Store
}

// GossipResult says what a round did.
type GossipResult struct {
	From, To crdt.Location
	// Steps is the number of requests the round made.
	Steps int
}

// pickTwo returns two different random cities from up.
func pickTwo(rng *rand.Rand, up []crdt.Location) (crdt.Location, crdt.Location, bool) {
	if len(up) < 2 {
		return "", "", false
	}
	i := rng.IntN(len(up))
	j := rng.IntN(len(up) - 1)
	if j >= i {
		j++
	}
	return up[i], up[j], true
}

// Round runs one gossip round. In the original protocol it copies the
// source's whole replica to the destination. In the default protocol it
// relays an anti-entropy exchange between the two, so only the entries
// that differ move, in both directions.
func (g *Gossiper) Round(ctx context.Context) (GossipResult, error) {
	src, dst, ok := pickTwo(g.Rand, g.Cities.Up())
	if !ok {
		return GossipResult{}, ErrTooFewCities
	}
	res := GossipResult{From: src, To: dst}
	if g.Protocol == ProtocolOriginal {
		st, err := request[*messages.State](ctx, g.Cities, src, &messages.GetState{})
		if err != nil {
			return res, fmt.Errorf("gossip: get state of %s: %w", src, err)
		}
		if _, err := request[*messages.MergeAck](ctx, g.Cities, dst, &messages.MergeDelta{Delta: st.Delta, From: string(src)}); err != nil {
			return res, fmt.Errorf("gossip: update %s: %w", dst, err)
		}
		res.Steps = 2
		return res, nil
	}
	if g.Store != nil {
		if _, err := syncStore(ctx, g.Cities, g.Store, src); err != nil {
			return res, fmt.Errorf("gossip: %w", err)
		}
		res.Steps++
	}
	// Relay a push-pull exchange: src opens, then the two answer each
	// other until one has nothing more to say.
	var msg []byte
	sides := [2]crdt.Location{src, dst}
	for step := 0; step < maxSyncRounds; step++ {
		to := sides[step%2]
		reply, err := request[*messages.SyncReply](ctx, g.Cities, to, &messages.SyncRequest{From: messages.DispatchName, Msg: msg})
		res.Steps++
		if err != nil {
			return res, fmt.Errorf("gossip: sync with %s: %w", to, err)
		}
		if len(reply.Msg) == 0 {
			return res, nil
		}
		msg = reply.Msg
	}
	return res, fmt.Errorf("gossip: exchange %s<->%s did not end after %d steps", src, dst, maxSyncRounds)
}

// syncStore runs an anti-entropy exchange between dispatch's replica and
// city c and returns how many entries changed dispatch's replica.
func syncStore(ctx context.Context, cities Cities, store *Store, c crdt.Location) (int, error) {
	out := store.SyncStart()
	changed := 0
	for step := 0; step < maxSyncRounds; step++ {
		b, err := out.MarshalBinary()
		if err != nil {
			return changed, err
		}
		reply, err := request[*messages.SyncReply](ctx, cities, c, &messages.SyncRequest{From: messages.DispatchName, Msg: b})
		if err != nil {
			return changed, fmt.Errorf("sync dispatch with %s: %w", c, err)
		}
		if len(reply.Msg) == 0 {
			return changed, nil
		}
		var in crdt.SyncMsg
		if err := in.UnmarshalBinary(reply.Msg); err != nil {
			return changed, fmt.Errorf("sync dispatch with %s: %w", c, err)
		}
		if err := store.CheckOffset(in.Delta); err != nil {
			return changed, fmt.Errorf("sync dispatch with %s: %w", c, err)
		}
		var d crdt.Delta
		out, d = store.Sync(in)
		changed += d.Len()
		if out.IsEmpty() {
			return changed, nil
		}
	}
	return changed, fmt.Errorf("exchange dispatch<->%s did not end after %d steps", c, maxSyncRounds)
}

// Poller reads a random city's replica into dispatch's store, whose change
// hook feeds the pages: the original's poll, kept as a safety net. In the
// default protocol it reads by anti-entropy exchange, so an idle poll
// moves a digest instead of the whole replica.
type Poller struct {
	Cities   Cities
	Rand     *rand.Rand
	Store    *Store
	Protocol Protocol
}

// ErrNoCity means no city is up to poll.
var ErrNoCity = errors.New("backend: no city up")

// Poll reads one random city and merges its replica, returning the city and
// how many entries changed dispatch's replica.
func (p *Poller) Poll(ctx context.Context) (crdt.Location, int, error) {
	up := p.Cities.Up()
	if len(up) == 0 {
		return "", 0, ErrNoCity
	}
	c := up[p.Rand.IntN(len(up))]
	if p.Protocol != ProtocolOriginal {
		n, err := syncStore(ctx, p.Cities, p.Store, c)
		return c, n, err
	}
	st, err := request[*messages.State](ctx, p.Cities, c, &messages.GetState{})
	if err != nil {
		return c, 0, fmt.Errorf("poll %s: %w", c, err)
	}
	var d crdt.Delta
	if err := d.UnmarshalBinary(st.Delta); err != nil {
		return c, 0, fmt.Errorf("poll %s: %w", c, err)
	}
	if err := p.Store.CheckOffset(d); err != nil {
		return c, 0, fmt.Errorf("poll %s: %w", c, err)
	}
	return c, p.Store.Merge(d).Len(), nil
}

// deadline bounds one round of gossip or polling.
func deadline(interval time.Duration) time.Duration { return max(interval, 500*time.Millisecond) }
