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
type Current struct{ p atomic.Pointer[Backend] }

// NewCurrent returns a Current serving b.
func NewCurrent(b *Backend) *Current {
	c := &Current{}
	c.p.Store(b)
	return c
}

// Set makes b the backend served from now on.
func (c *Current) Set(b *Backend) { c.p.Store(b) }

func (c *Current) get() *Backend { return c.p.Load() }

// Heroes implements service.Backend.
func (c *Current) Heroes() []crdt.Hero { return c.get().Heroes() }

// Ready implements service.Backend.
func (c *Current) Ready() bool { return c.get().Ready() }

// Hero implements service.Backend.
func (c *Current) Hero(id uuid.UUID) (crdt.Hero, error) { return c.get().Hero(id) }

// Create implements service.Backend.
func (c *Current) Create(ctx context.Context, name string) (crdt.Hero, error) {
	return c.get().Create(ctx, name)
}

// Delete implements service.Backend.
func (c *Current) Delete(ctx context.Context, id uuid.UUID) error { return c.get().Delete(ctx, id) }

// Assign implements service.Backend.
func (c *Current) Assign(ctx context.Context, id uuid.UUID, to crdt.Location) (crdt.Hero, error) {
	return c.get().Assign(ctx, id, to)
}

// Bomb implements service.Backend.
func (c *Current) Bomb(ctx context.Context, city crdt.Location) (crdt.Location, error) {
	return c.get().Bomb(ctx, city)
}

// Cluster implements service.Backend.
func (c *Current) Cluster(ctx context.Context) service.ClusterStatus { return c.get().Cluster(ctx) }

// CityHeroes implements service.Backend.
func (c *Current) CityHeroes(ctx context.Context, city crdt.Location) ([]crdt.Hero, error) {
	return c.get().CityHeroes(ctx, city)
}

var _ service.Backend = (*Current)(nil)
