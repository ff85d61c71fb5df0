// Package crdt is the replicated superhero store: a last-writer-wins map
// with tombstones, stamped by a hybrid logical clock, plus the deltas,
// digests and anti-entropy steps that spread it. It is pure Go: no network,
// no actors, no wall clock (the physical clock is injected) and no logging.
//
// # Writes and their outcomes
//
// Every entry carries a Timestamp (wall, logical, node). Timestamps are
// totally ordered, so for any two entries with the same id exactly one
// wins, whichever replica merges them and in whatever order. Merge is
// therefore commutative, associative and idempotent.
//
//	replica holds             | incoming entry             | result
//	--------------------------|----------------------------|----------------------------------
//	nothing                   | live hero, stamp s         | hero stored
//	live hero, stamp s        | live hero, stamp t > s     | incoming replaces it
//	live hero, stamp s        | live hero, stamp t < s     | no-op (stale write)
//	live hero, stamp s        | the same entry again       | no-op (idempotent)
//	live hero, stamp s        | live hero, stamp s, other  | larger content wins (only after a
//	                          | content                    | node reused stamps; see below)
//	live hero, any stamp      | tombstone, any stamp       | tombstone stored (death is final)
//	tombstone, any stamp      | live hero, any stamp       | no-op (no resurrection)
//	tombstone, stamp s        | tombstone, stamp t > s     | incoming replaces it
//	nothing, horizon h        | tombstone, stamp.Wall < h  | no-op (already collected)
//
// The clock guarantees that a local write is stamped after everything the
// replica has merged, so a local write always wins locally; concurrent
// writes on different nodes resolve by stamp, then by node name. The
// original program stamped whole seconds and let argument order break
// ties, so two writes in the same second could leave replicas different for
// good; here they cannot.
//
// # Tombstones
//
// A delete is an entry like any other: a tombstone, ordered above every
// live entry. Tombstones would grow without bound, so a replica collects
// (drops) tombstones whose stamp is older than a horizon: Collect(wall).
// The node passes now minus a TTL, rounded down to a whole period, so all
// replicas with roughly synchronised clocks collect the same tombstones at
// about the same moment and digests agree again quickly.
//
// The promise: a deleted hero never comes back provided every replica that
// holds the live hero merges the tombstone within the TTL, that is, no
// replica that keeps its state stays cut off for longer than the TTL. A
// replica that restarts empty (a bombed or restarted city) holds nothing
// and cannot resurrect anything. After collecting, a replica ignores
// tombstones older than its horizon for ids it does not hold, so collected
// tombstones are not copied back by anti-entropy; a tombstone for an id it
// still holds alive is always applied, and so is one that arrives in the
// same delta as a live entry for its id, whatever their order.
//
// # Digests and anti-entropy
//
// The id space is cut into Leaves leaves by the id's first bits. A replica
// keeps, per leaf, the sum of its entries' hashes and their count, updated
// on every write. A Digest of a range is up to Fanout part sums, about
// 1.3 KB for the whole space. SyncStart and SyncStep run a push-pull
// exchange that compares digests, narrows to the differing parts and
// then swaps only their entries.
//
// # Clock offset
//
// Merge moves the replica's clock past the latest stamp it merges. Without
// a limit, one node whose physical clock runs an hour ahead would drag the
// clock of every replica it reaches an hour into the future for good, and
// its writes would win every conflict against writes made after them. The
// policy, after CockroachDB's hlc.UpdateAndCheckMaxOffset: a stamp whose
// wall time is more than a maximum offset ahead of the receiver's physical
// clock is refused. A stamp behind it is always accepted, however old:
// delay only makes stamps look older.
//
// Merge and SyncStep do not check, since they also serve trusted local
// data. The replication engine calls CheckOffset on every delta and on the
// Delta of every SyncMsg it receives, before merging. When the check fails
// (errors.Is(err, ErrClockOffset); the *OffsetError names the stamp
// furthest ahead) the whole delta or sync message is rejected: nothing in
// it is merged or answered, and the local clock is not moved by it
// (CheckOffset never changes the clock). The caller counts and logs each
// refusal.
//
// A clock accepts stamps at most the maximum ahead of its physical clock,
// so no clock is ever dragged further than that; and while every pair of
// physical clocks stays within the maximum of each other, no stamp, even a
// forwarded one, is ever refused. The default, DefaultMaxClockOffset, is
// 500 ms: the nodes run on one host (loopback) or on a LAN whose clocks NTP
// keeps within a few milliseconds of each other, so 500 ms refuses only a
// clock that is plainly wrong, and a clock just inside the limit wins
// conflicts only against writes made less than 500 ms after its own.
//
// The consequence: a node whose clock is more than the maximum ahead of
// its peers cannot spread its writes until its clock is fixed. Its peers
// refuse its deltas, and its sync messages that carry them, so they see it
// as diverged: its digests never match theirs. It still accepts their
// writes, but on its replica its own win wherever they conflict. Fixing
// the physical clock is not quite enough, since a hybrid clock never moves
// back: the node keeps stamping, and its entries keep, the future times
// until real time catches up with them. Restarting it empty cures it at
// once, losing the writes it made meanwhile. Symmetrically, a node whose
// clock is more than the maximum behind its peers refuses their fresh
// writes until its clock is fixed.
package crdt
