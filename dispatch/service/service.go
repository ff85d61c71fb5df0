// Package service holds the dispatch node's domain: the status of the
// cluster as dispatch sees it, the errors its operations return, the events
// the open pages are told about, and the interfaces between the part that
// talks to the cities (dispatch/backend implements Backend) and the part
// that serves people (dispatch/web uses Backend and Publisher). It has no
// HTTP, actors or network in it; dispatch/web alone maps its errors to
// status codes and its types to JSON.
package service

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

// Sentinel errors a Backend returns besides crdt.ErrUnknown, crdt.ErrDead
// and crdt.ErrLocation. Wrap them with %w; callers test them with
// errors.Is.
var (
	// ErrUnknownCity means the location is not a city of the cluster
	// (Home included, where a city is required).
	ErrUnknownCity = errors.New("dispatch: unknown city")
	// ErrCityDown means the city is known but did not answer: it is down,
	// restarting, or cut off. A backend call that ran out of time talking
	// to a city should wrap both: fmt.Errorf("%w: %w", ErrCityDown, err).
	ErrCityDown = errors.New("dispatch: city unreachable")
	// ErrUnavailable means dispatch cannot answer for the cluster right
	// now (it is catching up after a restart, or its replica is
	// restarting); retry later.
	ErrUnavailable = errors.New("dispatch: unavailable")
	// ErrOutcomeUnknown means a write was made in dispatch's replica but
	// not confirmed by the cities in time: it may or may not spread, so it
	// was not acknowledged.
	ErrOutcomeUnknown = errors.New("dispatch: outcome unknown")
)

// Backend is everything the web layer needs from the dispatch node. The
// actor side implements it; the web server never touches replicas or
// actors itself. Methods are called concurrently from many requests.
//
// Heroes and Hero read dispatch's own merged replica and must not block.
// The other methods may talk to cities; they must return when ctx ends
// (the web server bounds each call by its command timeout, 1 s by default).
type Backend interface {
	// Heroes returns the live heroes of dispatch's merged view, in any
	// order. It fails (ErrUnavailable) when dispatch's replica does not
	// answer: an empty list would be a confident wrong answer.
	Heroes() ([]crdt.Hero, error)

	// Ready reports whether dispatch's view may be trusted: after a
	// restart it is not until dispatch has read every city that is up (or knows none is
	// up). Until then reads and commands fail with ErrUnavailable.
	Ready() bool

	// Hero returns the hero with id. For a tombstone it returns the
	// tombstone and an error wrapping crdt.ErrDead; for an id never seen,
	// an error wrapping crdt.ErrUnknown.
	Hero(id uuid.UUID) (crdt.Hero, error)

	// Create writes a new live hero at Home with full health and returns
	// it. The name is already validated and never empty.
	Create(ctx context.Context, name string) (crdt.Hero, error)

	// Delete tombstones the hero. Deleting a hero that is already dead
	// returns nil; an id never seen returns crdt.ErrUnknown.
	Delete(ctx context.Context, id uuid.UUID) error

	// Assign sends the hero to a city, or Home, and returns the hero as
	// applied. Errors: crdt.ErrUnknown, crdt.ErrDead, ErrUnknownCity,
	// ErrCityDown.
	Assign(ctx context.Context, id uuid.UUID, to crdt.Location) (crdt.Hero, error)

	// Bomb crashes a city's actor and returns the city bombed. An empty
	// city means a random city that is up. Errors: ErrUnknownCity, and
	// ErrCityDown when the city (or, for a random pick, every city) is
	// down.
	Bomb(ctx context.Context, city crdt.Location) (crdt.Location, error)

	// Cluster reports every known city; a city that does not answer in
	// time is reported down. It does not fail.
	Cluster(ctx context.Context) ClusterStatus

	// CityHeroes returns the live heroes of one city's own replica.
	// Errors: ErrUnknownCity, ErrCityDown.
	CityHeroes(ctx context.Context, city crdt.Location) ([]crdt.Hero, error)
}

// ClusterStatus is the state of every city as dispatch sees it.
type ClusterStatus struct {
	// Cities lists every known city in a stable order.
	Cities []CityStatus
	// InSync reports whether at least one city is up and every city that
	// is up reports the same digest.
	InSync bool
	// Ready is Backend.Ready when the status was taken.
	Ready bool
}

// CityStatus is one city's state.
type CityStatus struct {
	Name crdt.Location
	// Up reports whether the city is taken as up: it answered the latest
	// status request, or missed only its deadline, fewer times in a row
	// than backend.Config.StatusMisses.
	Up bool
	// Heroes is the number of live heroes in the city's replica; 0 when
	// down.
	Heroes int
	// Digest is the fingerprint of the city's replica
	// (crdt.Digest.Fingerprint); equal replicas have equal digests. It is
	// meaningless when the city is down.
	Digest uint64
	// Incarnation counts the starts of the city's actor (1 for the first);
	// it grows when a bomb restarts it.
	Incarnation uint64
	// Restarting is set for a short while after the city restarted (a bomb
	// or a new incarnation), and until its replica is in sync again.
	Restarting bool
	// Lag is how long the city's digest has differed from the digest most
	// up cities share; 0 when it is in sync.
	Lag time.Duration
}
