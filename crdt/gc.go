package crdt

import "time"

// Defaults every node uses for tombstone collection, so that all replicas
// pick the same horizon.
const (
	// DefaultTombstoneTTL is how long a tombstone is kept.
	DefaultTombstoneTTL = 10 * time.Minute
	// DefaultCollectPeriod is how often tombstones are collected and the
	// step horizons are rounded down to.
	DefaultCollectPeriod = time.Minute
)

// Horizon returns the tombstone-collection horizon for physical time now
// (nanoseconds): now minus ttl, rounded down to a whole step. Rounding means
// every replica with a roughly synchronised clock picks the same horizon,
// so they drop the same tombstones and their digests agree again at once.
func Horizon(now, ttl, step int64) int64 {
	if step <= 0 {
		step = 1
	}
	h := now - ttl
	if h <= 0 {
		return 0
	}
	return h / step * step
}
