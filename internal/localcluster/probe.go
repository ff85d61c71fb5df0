package localcluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/messages"
)

// Probes: the member asks the cities' grains directly, without dispatch.

// Ask sends msg to the city's grain and waits at most timeout for a reply
// of type T.
func Ask[T proto.Message](ctx context.Context, c *Cluster, city string, msg proto.Message, timeout time.Duration) (T, error) {
	return node.RequestAs[T](ctx, c.Member(), city, messages.CityKind(city), msg, timeout)
}

// Holds reports whether the city's replica has an entry for id.
func (c *Cluster) Holds(ctx context.Context, city, id string) (bool, error) {
	r, err := Ask[*messages.HeroReply](ctx, c, city, &messages.GetHero{HeroId: id}, 500*time.Millisecond)
	if err != nil || len(r.GetDelta()) == 0 {
		return false, err
	}
	var d crdt.Delta
	if err := d.UnmarshalBinary(r.GetDelta()); err != nil {
		return false, err
	}
	return d.Len() == 1 && d.Heroes[0].ID.String() == id, nil
}

// AwaitHolds probes the city every interval until it holds id, and
// returns when it was first seen.
func (c *Cluster) AwaitHolds(ctx context.Context, city, id string, every time.Duration) (time.Time, error) {
	var seen time.Time
	err := Poll(ctx, every, func() (bool, error) {
		ok, err := c.Holds(ctx, city, id)
		if ok {
			seen = time.Now()
		}
		return ok, Transient(ctx, err)
	})
	return seen, err
}

// ReplicaInfo is what GetDigest tells about a city's replica.
type ReplicaInfo struct {
	Fingerprint uint64
	Heroes      int
	Incarnation uint64
}

// Digest asks a city for its replica's digest.
func (c *Cluster) Digest(ctx context.Context, city string, timeout time.Duration) (ReplicaInfo, error) {
	r, err := Ask[*messages.DigestReply](ctx, c, city, &messages.GetDigest{}, timeout)
	if err != nil {
		return ReplicaInfo{}, err
	}
	var d crdt.Digest
	if err := d.UnmarshalBinary(r.GetDigest()); err != nil {
		return ReplicaInfo{}, err
	}
	return ReplicaInfo{Fingerprint: d.Fingerprint(), Heroes: int(r.GetHeroes()), Incarnation: r.GetIncarnation()}, nil
}

// Digests asks every city in parallel.
func (c *Cluster) Digests(ctx context.Context, cities []string) (map[string]ReplicaInfo, error) {
	out := make(map[string]ReplicaInfo, len(cities))
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, city := range cities {
		wg.Go(func() {
			info, err := c.Digest(ctx, city, 2*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("digest of %s: %w", city, err))
				return
			}
			out[city] = info
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Converged reports whether every city answered with the same fingerprint
// and returns it.
func Converged(infos map[string]ReplicaInfo, cities []string) (uint64, bool) {
	var fp uint64
	for i, city := range cities {
		info, ok := infos[city]
		if !ok || (i > 0 && info.Fingerprint != fp) {
			return 0, false
		}
		fp = info.Fingerprint
	}
	return fp, len(cities) > 0
}

// AwaitConverged waits until every city reports the same fingerprint and
// returns it.
func (c *Cluster) AwaitConverged(ctx context.Context, cities []string, every time.Duration) (uint64, error) {
	var fp uint64
	err := Poll(ctx, every, func() (bool, error) {
		infos, _ := c.Digests(ctx, cities)
		var ok bool
		fp, ok = Converged(infos, cities)
		return ok, nil
	})
	return fp, err
}

// AwaitReplica probes a city every interval until done accepts its
// answer (or fails), and returns when it first answered at all and when
// it was done.
func (c *Cluster) AwaitReplica(ctx context.Context, city string, every time.Duration, done func(ReplicaInfo) (bool, error)) (answered, matched time.Time, err error) {
	err = Poll(ctx, every, func() (bool, error) {
		info, err := c.Digest(ctx, city, 300*time.Millisecond)
		if err != nil {
			return false, Transient(ctx, err)
		}
		if answered.IsZero() {
			answered = time.Now()
		}
		ok, err := done(info)
		if ok {
			matched = time.Now()
		}
		return ok, err
	})
	return answered, matched, err
}

// HasFingerprint accepts a replica whose fingerprint is fp.
func HasFingerprint(fp uint64) func(ReplicaInfo) (bool, error) {
	return func(info ReplicaInfo) (bool, error) { return info.Fingerprint == fp, nil }
}

// Stats asks a city for its replication counters.
func (c *Cluster) Stats(ctx context.Context, city string) (*messages.Stats, error) {
	return Ask[*messages.Stats](ctx, c, city, &messages.GetStats{}, time.Second)
}

// State reads a city's whole replica, tombstones included, in one
// GetState request.
func (c *Cluster) State(ctx context.Context, city string, timeout time.Duration) ([]crdt.Hero, error) {
	st, err := Ask[*messages.State](ctx, c, city, &messages.GetState{}, timeout)
	if err != nil {
		return nil, err
	}
	var d crdt.Delta
	if err := d.UnmarshalBinary(st.GetDelta()); err != nil {
		return nil, fmt.Errorf("state of %s: %w", city, err)
	}
	return d.Heroes, nil
}

// Entries reads a city's whole replica, tombstones included, with
// anti-entropy steps that ask for ranges of the id space, so no single
// message grows with the replica (GetState answers in one).
func (c *Cluster) Entries(ctx context.Context, city string) ([]crdt.Hero, error) {
	var out []crdt.Hero
	// Ask for the whole id space; a reply carries at most
	// crdt.MaxSyncEntries entries and offers the ranges left over as
	// digests, which are asked for in turn.
	queue := []crdt.Range{crdt.FullRange()}
	for len(queue) > 0 {
		rg := queue[0]
		queue = queue[1:]
		b, err := crdt.SyncMsg{Want: []crdt.Range{rg}}.MarshalBinary()
		if err != nil {
			return nil, err
		}
		r, err := Ask[*messages.SyncReply](ctx, c, city, &messages.SyncRequest{From: c.spec.Member, Msg: b}, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("range %v of %s: %w", rg, city, err)
		}
		if len(r.GetMsg()) == 0 {
			continue // nothing in the range
		}
		var m crdt.SyncMsg
		if err := m.UnmarshalBinary(r.GetMsg()); err != nil {
			return nil, err
		}
		out = append(out, m.Delta.Heroes...)
		for _, d := range m.Digests {
			queue = append(queue, d.Range)
		}
	}
	return out, nil
}

// Inject merges d straight into the cities' replicas, chunk entries per
// message, as another replica would push them.
func (c *Cluster) Inject(ctx context.Context, cities []string, d crdt.Delta, chunk int) error {
	for lo := 0; lo < d.Len(); lo += chunk {
		b, err := crdt.Delta{Heroes: d.Heroes[lo:min(lo+chunk, d.Len())]}.MarshalBinary()
		if err != nil {
			return err
		}
		for _, city := range cities {
			if _, err := Ask[*messages.MergeAck](ctx, c, city, &messages.MergeDelta{Delta: b, From: c.spec.Member}, 15*time.Second); err != nil {
				return fmt.Errorf("inject into %s: %w", city, err)
			}
		}
	}
	return nil
}
