package backend

import (
	"context"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

// Current is the service.Backend of dispatch's current cluster membership.
// When the cluster drops dispatch and it rejoins under a fresh member id,
// a new Backend (new node, new replica actor, carrying the replica over)
// replaces the old one, while the web server and the pages' hub, which
// hold a Current, go on. Until the new one is set, calls reach the old
// one, whose failures already answer 503.
//
// While a rejoin is under way (Rejoining, then Set), Ready is false and
// every call fails with ErrCatchingUp at once: nothing is done, which a
// client can rely on, rather than waiting on the old membership's stopped
// replica and answering "outcome unknown".
type Current struct {
	p         atomic.Pointer[Backend]
	rejoining atomic.Bool
}

// NewCurrent returns a Current serving b.
func NewCurrent(b *Backend) *Current {
	c := &Current{}
	c.p.Store(b)
	return c
}

// Rejoining marks the start of a rejoin: calls fail with ErrCatchingUp
// until Set.
func (c *Current) Rejoining() { c.rejoining.Store(true) }

// Set makes b the backend served from now on, and ends a rejoin.
func (c *Current) Set(b *Backend) {
	c.p.Store(b)
	c.rejoining.Store(false)
}

// get returns the backend to call, or ErrCatchingUp during a rejoin.
func (c *Current) get() (*Backend, error) {
	if c.rejoining.Load() {
		return nil, ErrCatchingUp
	}
	return c.p.Load(), nil
}

// Heroes implements service.Backend.
func (c *Current) Heroes() ([]crdt.Hero, error) {
	b, err := c.get()
	if err != nil {
		return nil, err
	}
	return b.Heroes()
}

// Ready implements service.Backend.
func (c *Current) Ready() bool {
	b, err := c.get()
	return err == nil && b.Ready()
}

// Hero implements service.Backend.
func (c *Current) Hero(id uuid.UUID) (crdt.Hero, error) {
	b, err := c.get()
	if err != nil {
		return crdt.Hero{}, err
	}
	return b.Hero(id)
}

// Create implements service.Backend.
func (c *Current) Create(ctx context.Context, name string) (crdt.Hero, error) {
	b, err := c.get()
	if err != nil {
		return crdt.Hero{}, err
	}
	return b.Create(ctx, name)
}

// Delete implements service.Backend.
func (c *Current) Delete(ctx context.Context, id uuid.UUID) error {
	b, err := c.get()
	if err != nil {
		return err
	}
	return b.Delete(ctx, id)
}

// Assign implements service.Backend.
func (c *Current) Assign(ctx context.Context, id uuid.UUID, to crdt.Location) (crdt.Hero, error) {
	b, err := c.get()
	if err != nil {
		return crdt.Hero{}, err
	}
	return b.Assign(ctx, id, to)
}

// Bomb implements service.Backend.
func (c *Current) Bomb(ctx context.Context, city crdt.Location) (crdt.Location, error) {
	b, err := c.get()
	if err != nil {
		return "", err
	}
	return b.Bomb(ctx, city)
}

// Cluster implements service.Backend. During a rejoin it is the old
// membership's last status, not ready.
func (c *Current) Cluster(ctx context.Context) service.ClusterStatus {
	st := c.p.Load().Cluster(ctx)
	if c.rejoining.Load() {
		st.Ready = false
	}
	return st
}

// CityHeroes implements service.Backend.
func (c *Current) CityHeroes(ctx context.Context, city crdt.Location) ([]crdt.Hero, error) {
	b, err := c.get()
	if err != nil {
		return nil, err
	}
	return b.CityHeroes(ctx, city)
}

var _ service.Backend = (*Current)(nil)
