// Package replication holds the whole replication policy of a node as a
// pure state machine, in the style of etcd-io/raft's RawNode: no
// goroutines, no timers, no network, no actors and no wall clock. Time comes
// in with Tick, local writes with LocalWrite, peers' messages with Step and
// membership with SetPeers; what the node must do comes out of Ready (the
// messages to send, the entries that changed, refusals to log), and the
// caller hands back Advance once it has acted on it.
//
// The city actor, dispatch's replica actor and the deterministic
// simulation all drive this same Engine; the actors only carry messages
// and timers. Every default lives in Config and its presets.
//
// # Messages
//
// Every message is one-way. A push carries writes to merge. An anti-entropy
// exchange is a series of sync steps: the side that starts it (the
// initiator) keeps its state (peer, steps taken, deadline) and the other
// side answers each step statelessly, so a lost step only costs the
// initiator its ExchangeTimeout. An empty sync request opens an exchange on
// the other side's behalf (the answer is its digest): this is how dispatch
// relays an exchange between two cities, forwarding each answer to the
// other city. In the original protocol a state request is answered with
// the whole replica.
package replication

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

// MsgKind is the kind of a Message.
type MsgKind uint8

const (
	// MsgPush carries writes (Delta) to merge. Nothing answers it.
	MsgPush MsgKind = iota + 1
	// MsgSync carries an exchange step (Sync) to answer with MsgSyncReply;
	// an empty Sync opens an exchange and is answered with a digest.
	MsgSync
	// MsgSyncReply answers MsgSync; an empty Sync ends the exchange.
	MsgSyncReply
	// MsgStateRequest asks for the whole replica (original protocol).
	MsgStateRequest
	// MsgState answers MsgStateRequest with the whole replica in Delta.
	MsgState
	// MsgPushAck says the sender merged the push whose Exchange it
	// carries. A push asks for one by carrying a non-zero Exchange.
	MsgPushAck
)

var kindNames = [...]string{MsgPush: "push", MsgSync: "sync", MsgSyncReply: "sync-reply", MsgStateRequest: "state-request", MsgState: "state", MsgPushAck: "push-ack"}

// LastMsgKind is the highest MsgKind, for decoders.
const LastMsgKind = MsgPushAck

func (k MsgKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("MsgKind(%d)", uint8(k))
}

// Message is one message between two nodes' engines.
type Message struct {
	Kind MsgKind
	// From and To are node names.
	From, To string
	// Exchange identifies an exchange; replies carry the request's. On a
	// push it identifies the push when an acknowledgement is wanted.
	Exchange uint64
	// Delta is set for MsgPush and MsgState.
	Delta crdt.Delta
	// Sync is set for MsgSync and MsgSyncReply.
	Sync crdt.SyncMsg
}

// Peer is another node that is up.
type Peer struct {
	// Name is the node's name, as messages address it.
	Name string
	// City says the node is a city (cities answer anti-entropy and take
	// dispatch's pushes; dispatch only takes cities' pushes).
	City bool
}

// Refusal is a message the engine refused, reported for logging at most
// once per node per Config.RefusalLogInterval.
type Refusal struct {
	// Peer is the node whose clock is too far ahead (the stamps' author,
	// which for a relayed step is not the sender).
	Peer string
	Err  error
	// Suppressed counts the refusals from Peer not reported since the
	// previous report.
	Suppressed uint64
}

// Ready is what the node must do.
type Ready struct {
	// Messages to send, in order.
	Messages []Message
	// Changed holds, in order, every entry that changed the replica: local
	// writes and what peers sent. It feeds the page.
	Changed []crdt.Hero
	// Refusals to log.
	Refusals []Refusal
	// Acked holds the local writes (by the number LocalWrite returned)
	// now held by as many replicas as Config.WriteQuorum asks.
	Acked []uint64
	// Failed holds the local writes that cannot be confirmed: too few
	// peers to push to, or no confirmation within AckTimeout. Their
	// outcome is unknown: the writes stay in this replica and may still
	// spread.
	Failed []uint64
}

// IsEmpty reports whether there is nothing to do.
func (rd Ready) IsEmpty() bool {
	return len(rd.Messages) == 0 && len(rd.Changed) == 0 && len(rd.Refusals) == 0 && len(rd.Acked) == 0 && len(rd.Failed) == 0
}

// Stats are an engine's cumulative counters.
type Stats struct {
	// Pushes counts push messages sent, PushEntries the entries in them.
	Pushes, PushEntries uint64
	// Exchanges counts exchanges this node started with its own replica
	// (anti-entropy, dispatch's gossip and poll); Relays those it relayed
	// between two cities; StateReads the original protocol's state reads.
	Exchanges, Relays, StateReads uint64
	// Done, TimedOut, Cut and Aborted count how started exchanges ended:
	// in agreement, with no answer in time, at MaxSyncSteps, or because a
	// peer left.
	Done, TimedOut, Cut, Aborted uint64
	// SyncSteps counts sync messages sent (requests and replies).
	SyncSteps uint64
	// Merged counts entries from peers that changed this replica.
	Merged uint64
	// Refused counts messages refused (a stamp too far in the future).
	Refused uint64
	// Stale counts replies for exchanges no longer running.
	Stale uint64
	// Collected counts tombstones collected.
	Collected uint64
	// WritesAcked and WritesFailed count local writes confirmed by the
	// write quorum, and those that could not be.
	WritesAcked, WritesFailed uint64
	// Confirmed counts the pushes the write quorum confirmed, and
	// ConfirmNanos sums the time from each one's sending to its
	// confirmation: a write waits about that long, plus the wait for the
	// push before it when one was out.
	Confirmed, ConfirmNanos uint64
	// ConfirmBuckets[i] counts the pushes confirmed within
	// ConfirmBounds[i] and after any smaller bound (not cumulative); the
	// last counts those past every bound.
	ConfirmBuckets [len(ConfirmBounds) + 1]uint64
}

// ConfirmBounds are the upper bounds of Stats.ConfirmBuckets.
var ConfirmBounds = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, time.Second,
}

// Add returns the field-by-field sum of s and o: the counters of a node
// that ran one engine after the other (a restarted actor starts a new
// engine).
func (s Stats) Add(o Stats) Stats {
	s.Pushes += o.Pushes
	s.PushEntries += o.PushEntries
	s.Exchanges += o.Exchanges
	s.Relays += o.Relays
	s.StateReads += o.StateReads
	s.Done += o.Done
	s.TimedOut += o.TimedOut
	s.Cut += o.Cut
	s.Aborted += o.Aborted
	s.SyncSteps += o.SyncSteps
	s.Merged += o.Merged
	s.Refused += o.Refused
	s.Stale += o.Stale
	s.Collected += o.Collected
	s.WritesAcked += o.WritesAcked
	s.WritesFailed += o.WritesFailed
	s.Confirmed += o.Confirmed
	s.ConfirmNanos += o.ConfirmNanos
	for i := range s.ConfirmBuckets {
		s.ConfirmBuckets[i] += o.ConfirmBuckets[i]
	}
	return s
}

type exchangeKind uint8

const (
	exOwn       exchangeKind = iota // this replica with peer a
	exRelay                         // cities a and b, relayed by this node
	exStateCopy                     // original gossip: a's state pushed to b
	exStateRead                     // original poll: a's state into this replica
)

type purpose uint8

const (
	forAntiEntropy purpose = iota
	forGossip
	forPoll
)

type exchange struct {
	kind     exchangeKind
	purpose  purpose
	a, b     string
	steps    int
	deadline int64
}

// pushTrack follows a push that waits for acknowledgements.
type pushTrack struct {
	writes   []uint64
	need     int
	from     []string
	sent     int64
	deadline int64
}

type refusalLog struct {
	last       int64
	suppressed uint64
}

// Engine is one node's replication state machine. It is not safe for
// concurrent use: its owner (an actor, or the simulation) serialises calls.
type Engine struct {
	cfg Config
	r   *crdt.Replica
	rng *rand.Rand

	now     int64
	started bool
	peers   []Peer

	pending  map[uuid.UUID]crdt.Hero
	lastPush int64
	pushAt   int64 // 0: no push scheduled

	// writes numbers local writes; batch holds those in pending, and
	// inflight the pushes waiting for acknowledgements, by push id.
	writes   uint64
	batch    []uint64
	inflight map[uint64]*pushTrack

	nextAE, nextGossip, nextPoll, nextCollect int64

	exchanges map[uint64]*exchange
	nextID    uint64
	caughtUp  bool
	// caughtFrom holds the cities an exchange completed with while
	// catching up; caught up once it holds every city that is up.
	caughtFrom map[string]bool
	startedAt  int64

	refusals map[string]*refusalLog

	rd    Ready
	taken [5]int // lengths of the last Ready's slices, for Advance
	stats Stats
}

// New returns an engine replicating r. The engine reads r's clock for
// collection horizons and clock-offset checks; the caller keeps using r
// for its own writes and reports each through LocalWrite.
func New(cfg Config, r *crdt.Replica) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("replication: nil replica")
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7e91))
	return &Engine{
		cfg:       cfg,
		r:         r,
		rng:       rng,
		pending:   map[uuid.UUID]crdt.Hero{},
		inflight:  map[uint64]*pushTrack{},
		exchanges: map[uint64]*exchange{},
		// Start exchange ids at random, so replies meant for an earlier
		// incarnation of this node are not taken for this one's.
		nextID:   rng.Uint64() | 1,
		refusals: map[string]*refusalLog{},
	}, nil
}

// Replica returns the replica the engine replicates.
func (e *Engine) Replica() *crdt.Replica { return e.r }

// Stats returns the counters.
func (e *Engine) Stats() Stats { return e.stats }

// CaughtUp reports whether this replica holds what the cities held when
// it started: an exchange has completed with every city that is up (a
// write acknowledged by one city may be on that city alone, so reading
// fewer could miss it), or no city has been up for CatchUpGrace since the
// engine started (there is nothing to catch up with). A restarted dispatch
// answers "catching up" until then. A city that goes away while it is
// being read no longer counts.
func (e *Engine) CaughtUp() bool {
	return e.caughtUp || (e.started && len(e.cities()) == 0 && e.now-e.startedAt >= int64(e.cfg.CatchUpGrace))
}

// SetPeers sets the other nodes that are up. Exchanges with a node that is
// no longer up are abandoned at once.
func (e *Engine) SetPeers(peers []Peer) {
	ps := make([]Peer, 0, len(peers))
	for _, p := range peers {
		if p.Name != e.cfg.Self && p.Name != "" {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	ps = slices.CompactFunc(ps, func(a, b Peer) bool { return a.Name == b.Name })
	before := e.cities()
	e.peers = ps
	if !e.caughtUp && e.cfg.PollInterval > 0 {
		for _, c := range e.cities() {
			if !slices.Contains(before, c) {
				// A city came up while catching up: read it now rather
				// than at the next poll.
				e.nextPoll = e.now
			}
		}
	}
	for _, id := range e.exchangeIDs() {
		x := e.exchanges[id]
		if !e.isUp(x.a) || (x.b != "" && !e.isUp(x.b)) {
			delete(e.exchanges, id)
			e.stats.Aborted++
		}
	}
	e.checkCaughtUp()
}

// checkCaughtUp sets caughtUp once an exchange has completed with every
// city that is up (and at least one).
func (e *Engine) checkCaughtUp() {
	if e.caughtUp || len(e.caughtFrom) == 0 {
		return
	}
	for _, c := range e.cities() {
		if !e.caughtFrom[c] {
			return
		}
	}
	e.caughtUp = true
	e.caughtFrom = nil
}

// Tick advances the engine's time to now (nanoseconds on any monotonic
// scale; it never goes back) and runs what is due: a coalesced push,
// anti-entropy, gossip, poll, tombstone collection and exchange
// time-outs. Drivers call Tick before every other input, so that inputs
// see the current time.
func (e *Engine) Tick(now int64) {
	if now > e.now || !e.started {
		e.now = now
	}
	if !e.started {
		e.started = true
		// A new (restarted, empty) city asks for a refill at once;
		// dispatch reads a city at once.
		e.nextAE, e.nextPoll, e.startedAt = e.now, e.now, e.now
		e.nextGossip = e.now + int64(max(e.cfg.GossipInterval, 0))
		e.collect()
	}
	for id, x := range e.exchanges {
		// Deleting while ranging is safe, and which order the expired
		// exchanges go in changes nothing the engine does.
		if x.deadline <= e.now {
			delete(e.exchanges, id)
			e.stats.TimedOut++
		}
	}
	var expired []uint64
	for id, t := range e.inflight {
		if t.deadline <= e.now {
			expired = append(expired, id)
		}
	}
	slices.Sort(expired) // report in push order, whatever the map's
	for _, id := range expired {
		e.fail(e.inflight[id].writes)
		delete(e.inflight, id)
	}
	if e.pushAt != 0 && e.now >= e.pushAt && !e.awaiting() {
		e.flush()
	}
	if e.cfg.AntiEntropyInterval > 0 && e.now >= e.nextAE {
		e.nextAE = e.now + int64(e.cfg.AntiEntropyInterval)
		e.antiEntropy()
	}
	if e.cfg.GossipInterval > 0 && e.now >= e.nextGossip {
		e.nextGossip = e.now + int64(e.cfg.GossipInterval)
		e.gossip()
	}
	if e.cfg.PollInterval > 0 && e.now >= e.nextPoll {
		e.nextPoll = e.now + int64(e.cfg.PollInterval)
		e.poll()
	}
	if e.now >= e.nextCollect {
		e.collect()
	}
}

// collect drops tombstones past the horizon and schedules the next
// collection just after the physical clock crosses the next period
// boundary, where the horizon moves. Every replica with a roughly
// synchronised clock so collects the same tombstones at about the same
// moment, and their digests agree again at once.
func (e *Engine) collect() {
	phys := e.r.Clock().PhysicalNow()
	ttl, period := int64(e.cfg.TombstoneTTL), int64(e.cfg.CollectPeriod)
	e.stats.Collected += uint64(e.r.Collect(crdt.Horizon(phys, ttl, period)))
	e.nextCollect = e.now + period - ((phys-ttl)%period+period)%period
}

// NextTick returns the time at which the engine next has something due; a
// driver arms one timer for it.
func (e *Engine) NextTick() int64 {
	if !e.started {
		return e.now
	}
	next := e.nextCollect
	consider := func(t int64, on bool) {
		if on && t < next {
			next = t
		}
	}
	consider(e.pushAt, e.pushAt != 0 && !e.awaiting())
	consider(e.nextAE, e.cfg.AntiEntropyInterval > 0)
	consider(e.nextGossip, e.cfg.GossipInterval > 0)
	consider(e.nextPoll, e.cfg.PollInterval > 0)
	for _, x := range e.exchanges {
		consider(x.deadline, true)
	}
	for _, t := range e.inflight {
		consider(t.deadline, true)
	}
	return next
}

// LocalWrite reports writes this node made to its replica (a city's patrol,
// fight or assign; dispatch's create, delete or assign home). Without a
// WriteQuorum they are pushed at once after a quiet spell, or coalesced
// until the end of the push window. With one, a write is pushed at once
// unless a push is waiting for its confirmation; then it leaves with every
// write made meanwhile, in one push, as soon as that confirmation comes
// (group commit: the replicas' pace sets the batch size).
//
// With a WriteQuorum, LocalWrite returns the write's number, which a later
// Ready lists in Acked once WriteQuorum replicas have merged the push that
// carries it, or in Failed; without one (or for an empty delta) it returns
// 0: the write is as durable as this replica.
func (e *Engine) LocalWrite(d crdt.Delta) uint64 {
	if d.IsEmpty() {
		return 0
	}
	e.rd.Changed = append(e.rd.Changed, d.Heroes...)
	var n uint64
	if e.cfg.WriteQuorum != 0 {
		e.writes++
		n = e.writes
	}
	if e.cfg.NoPush {
		if n != 0 {
			e.fail([]uint64{n})
		}
		return n
	}
	for _, h := range d.Heroes {
		e.pending[h.ID] = h
	}
	if n != 0 {
		e.batch = append(e.batch, n)
	}
	if e.pushAt != 0 {
		return n
	}
	at := e.lastPush + int64(e.cfg.PushWindow)
	if n != 0 {
		// Confirmations pace the pushes instead of the window: a write
		// that waits for one leaves at once, or with the next push when
		// the one out is confirmed. Holding it for the window too would
		// add up to the window's length to every answer at low load,
		// where there is nothing to group.
		at = e.now
	}
	if (e.lastPush != 0 && e.now < at) || e.awaiting() {
		e.pushAt = max(at, e.now)
		return n
	}
	e.flush()
	return n
}

// awaiting reports whether a push that waits for acknowledgements is out:
// writes then gather for the next push, which leaves when it is confirmed
// (or times out), so pushes never pile up faster than replicas confirm
// them (group commit).
func (e *Engine) awaiting() bool { return len(e.inflight) > 0 && len(e.batch) > 0 }

// Step takes a message from a peer. A message that cannot be accepted (a
// stamp too far ahead of the local clock) changes nothing and returns an
// error; a reply to an exchange that is no longer running is ignored.
func (e *Engine) Step(m Message) error {
	switch m.Kind {
	case MsgPush:
		if err := e.Merge(m.From, m.Delta); err != nil {
			return err
		}
		if m.Exchange != 0 && e.holds(m.Delta) {
			e.send(Message{Kind: MsgPushAck, To: m.From, Exchange: m.Exchange})
		}
		return nil
	case MsgPushAck:
		e.onPushAck(m)
		return nil
	case MsgSync:
		out, err := e.Answer(m.From, m.Sync)
		if err != nil {
			return err
		}
		e.send(Message{Kind: MsgSyncReply, To: m.From, Exchange: m.Exchange, Sync: out})
		return nil
	case MsgSyncReply:
		return e.onSyncReply(m)
	case MsgStateRequest:
		e.send(Message{Kind: MsgState, To: m.From, Exchange: m.Exchange, Delta: e.r.State()})
		return nil
	case MsgState:
		return e.onState(m)
	}
	return fmt.Errorf("replication: unknown message kind %v from %q", m.Kind, m.From)
}

// Merge folds writes a peer sent (a push, or the delta of an assign reply)
// into the replica, unless a stamp is too far ahead of the local clock.
func (e *Engine) Merge(from string, d crdt.Delta) error {
	if err := e.admit(from, d); err != nil {
		return err
	}
	e.merged(e.r.Merge(d))
	return nil
}

// Answer answers one step of an exchange another node runs: an empty step
// opens it (the answer is this replica's digest); an empty answer ends it.
// Callers that serve request/reply readers (the benchmark's probes) use it
// directly; Step uses it for MsgSync.
func (e *Engine) Answer(from string, in crdt.SyncMsg) (crdt.SyncMsg, error) {
	if in.IsEmpty() {
		return e.r.SyncStart(), nil
	}
	if err := e.admit(from, in.Delta); err != nil {
		return crdt.SyncMsg{}, err
	}
	out, changed := e.r.SyncStep(in)
	e.merged(changed)
	return out, nil
}

// HasReady reports whether Ready has anything.
func (e *Engine) HasReady() bool { return !e.rd.IsEmpty() }

// Ready returns what the node must do. The caller acts on it, then calls
// Advance.
func (e *Engine) Ready() Ready {
	e.taken = [5]int{len(e.rd.Messages), len(e.rd.Changed), len(e.rd.Refusals), len(e.rd.Acked), len(e.rd.Failed)}
	return Ready{
		Messages: e.rd.Messages[:e.taken[0]:e.taken[0]],
		Changed:  e.rd.Changed[:e.taken[1]:e.taken[1]],
		Refusals: e.rd.Refusals[:e.taken[2]:e.taken[2]],
		Acked:    e.rd.Acked[:e.taken[3]:e.taken[3]],
		Failed:   e.rd.Failed[:e.taken[4]:e.taken[4]],
	}
}

// Advance says the caller has acted on the last Ready.
func (e *Engine) Advance() {
	e.rd.Messages = e.rd.Messages[e.taken[0]:]
	e.rd.Changed = e.rd.Changed[e.taken[1]:]
	e.rd.Refusals = e.rd.Refusals[e.taken[2]:]
	e.rd.Acked = e.rd.Acked[e.taken[3]:]
	e.rd.Failed = e.rd.Failed[e.taken[4]:]
	e.rd = Ready{
		Messages: nilIfEmpty(e.rd.Messages),
		Changed:  nilIfEmpty(e.rd.Changed),
		Refusals: nilIfEmpty(e.rd.Refusals),
		Acked:    nilIfEmpty(e.rd.Acked),
		Failed:   nilIfEmpty(e.rd.Failed),
	}
	e.taken = [5]int{}
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// flush sends the pending writes: as one delta to every replica that takes
// pushes or, for dispatch in the original protocol, the whole replica to
// one random city.
func (e *Engine) flush() {
	e.pushAt = 0
	if len(e.pending) == 0 {
		return
	}
	e.lastPush = max(e.now, 1)
	d := crdt.Delta{Heroes: make([]crdt.Hero, 0, len(e.pending))}
	for _, h := range e.pending {
		d.Heroes = append(d.Heroes, h)
	}
	clear(e.pending)
	slices.SortFunc(d.Heroes, func(a, b crdt.Hero) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	var targets []string
	for _, p := range e.peers {
		if p.City || e.cfg.Role == RoleCity {
			targets = append(targets, p.Name)
		}
	}
	if e.cfg.Protocol == ProtocolOriginal && len(targets) > 0 {
		d = e.r.State()
		targets = []string{targets[e.rng.IntN(len(targets))]}
	}
	id, asks := e.track(len(targets))
	// Acknowledgements are asked of the quorum and one more replica (so
	// one slow replica does not fail the write), starting at a different
	// replica each push; the others get the push without the cost of
	// answering. No one to push to: anti-entropy (or dispatch's gossip)
	// delivers the writes when a peer comes up.
	first := 0
	if len(targets) > 0 {
		first = int(e.stats.Pushes % uint64(len(targets)))
	}
	for i, t := range targets {
		e.stats.Pushes++
		e.stats.PushEntries += uint64(d.Len())
		ask := uint64(0)
		if (i-first+len(targets))%len(targets) < asks {
			ask = id
		}
		e.send(Message{Kind: MsgPush, To: t, Exchange: ask, Delta: d})
	}
}

// track starts following the batch of writes a push to n replicas
// carries, and returns the push's id (0 when nothing waits for it) and
// how many of the n to ask for an acknowledgement.
func (e *Engine) track(n int) (uint64, int) {
	writes := e.batch
	e.batch = nil
	if len(writes) == 0 {
		return 0, 0
	}
	need := e.cfg.WriteQuorum
	if need == QuorumAll {
		need = n
	}
	if n == 0 || n < need {
		e.fail(writes)
		return 0, 0
	}
	id := e.nextID
	e.nextID++
	e.inflight[id] = &pushTrack{writes: writes, need: need, sent: e.now, deadline: e.now + int64(e.cfg.AckTimeout)}
	return id, min(n, need+1)
}

// onPushAck counts a replica's acknowledgement of a push.
func (e *Engine) onPushAck(m Message) {
	t := e.inflight[m.Exchange]
	if t == nil {
		e.stats.Stale++
		return
	}
	if slices.Contains(t.from, m.From) {
		return
	}
	t.from = append(t.from, m.From)
	if len(t.from) < t.need {
		return
	}
	delete(e.inflight, m.Exchange)
	e.rd.Acked = append(e.rd.Acked, t.writes...)
	e.stats.WritesAcked += uint64(len(t.writes))
	e.confirmed(time.Duration(e.now - t.sent))
	if e.pushAt != 0 && e.now >= e.pushAt && !e.awaiting() {
		e.flush() // the writes that gathered while it was out
	}
}

// confirmed counts a push the write quorum confirmed d after it left.
func (e *Engine) confirmed(d time.Duration) {
	i := 0
	for i < len(ConfirmBounds) && d > ConfirmBounds[i] {
		i++
	}
	e.stats.ConfirmBuckets[i]++
	e.stats.Confirmed++
	e.stats.ConfirmNanos += uint64(max(d, 0))
}

// holds reports whether the replica holds every write in d, or a
// tombstone that supersedes it. A tombstone older than the collection
// horizon is not stored (it counts as collected), so a replica whose clock
// runs far ahead does not acknowledge deletes it dropped.
func (e *Engine) holds(d crdt.Delta) bool {
	for i := range d.Heroes {
		in := &d.Heroes[i]
		cur, ok := e.r.Get(in.ID)
		if !ok || !(cur.Dead || !cur.Stamp.Less(in.Stamp)) {
			return false
		}
	}
	return true
}

// fail reports writes whose confirmation cannot come.
func (e *Engine) fail(writes []uint64) {
	e.rd.Failed = append(e.rd.Failed, writes...)
	e.stats.WritesFailed += uint64(len(writes))
}

// antiEntropy starts an exchange with a random peer city, unless one is
// already running.
func (e *Engine) antiEntropy() {
	for _, x := range e.exchanges {
		if x.purpose == forAntiEntropy {
			return
		}
	}
	if c, ok := e.randomCity(); ok {
		e.startOwn(c, forAntiEntropy)
	}
}

// gossip is dispatch's round, as in the original: pick a random source and
// a different destination city. The default protocol runs an exchange of
// dispatch's replica with the source (a lost push of dispatch's writes is
// repaired within a round) and relays an exchange between the two; the
// original copies the source's whole replica to the destination.
func (e *Engine) gossip() {
	cities := e.cities()
	if len(cities) == 0 {
		return
	}
	i := e.rng.IntN(len(cities))
	src := cities[i]
	if e.cfg.Protocol == ProtocolOriginal {
		if len(cities) < 2 {
			return
		}
		j := e.rng.IntN(len(cities) - 1)
		if j >= i {
			j++
		}
		e.stats.StateReads++
		e.sendState(&exchange{kind: exStateCopy, purpose: forGossip, a: src, b: cities[j]})
		return
	}
	e.startOwn(src, forGossip)
	if len(cities) < 2 {
		return
	}
	j := e.rng.IntN(len(cities) - 1)
	if j >= i {
		j++
	}
	id := e.open(&exchange{kind: exRelay, purpose: forGossip, a: src, b: cities[j]})
	e.stats.Relays++
	e.send(Message{Kind: MsgSync, To: src, Exchange: id})
}

// poll reads a random city into this replica: by exchange, so an idle poll
// moves a digest, or (original) by reading the whole replica.
func (e *Engine) poll() {
	if !e.caughtUp {
		// Catching up: read every city not read yet.
		for _, c := range e.cities() {
			if !e.caughtFrom[c] && !e.reading(c) {
				e.pollCity(c)
			}
		}
		return
	}
	c, ok := e.randomCity()
	if !ok {
		return
	}
	e.pollCity(c)
}

// reading reports whether an exchange reading city into this replica is
// open.
func (e *Engine) reading(city string) bool {
	for _, x := range e.exchanges {
		if x.a == city && x.b == "" && (x.kind == exOwn || x.kind == exStateRead) {
			return true
		}
	}
	return false
}

func (e *Engine) pollCity(c string) {
	if e.cfg.Protocol == ProtocolOriginal {
		e.stats.StateReads++
		e.sendState(&exchange{kind: exStateRead, purpose: forPoll, a: c})
		return
	}
	e.startOwn(c, forPoll)
}

func (e *Engine) sendState(x *exchange) {
	id := e.open(x)
	e.send(Message{Kind: MsgStateRequest, To: x.a, Exchange: id})
}

// startOwn opens an exchange of this replica with peer.
func (e *Engine) startOwn(peer string, why purpose) {
	id := e.open(&exchange{kind: exOwn, purpose: why, a: peer})
	e.stats.Exchanges++
	e.send(Message{Kind: MsgSync, To: peer, Exchange: id, Sync: e.r.SyncStart()})
}

func (e *Engine) open(x *exchange) uint64 {
	id := e.nextID
	e.nextID++
	x.deadline = e.now + int64(e.cfg.ExchangeTimeout)
	e.exchanges[id] = x
	return id
}

func (e *Engine) onSyncReply(m Message) error {
	x := e.exchanges[m.Exchange]
	if x == nil || (m.From != x.a && m.From != x.b) || (x.kind != exOwn && x.kind != exRelay) {
		e.stats.Stale++
		return nil
	}
	if m.Sync.IsEmpty() {
		e.finish(m.Exchange, x)
		return nil
	}
	if x.steps >= MaxSyncSteps {
		delete(e.exchanges, m.Exchange)
		e.stats.Cut++
		return nil
	}
	x.steps++
	x.deadline = e.now + int64(e.cfg.ExchangeTimeout)
	if x.kind == exRelay {
		to := x.a
		if m.From == x.a {
			to = x.b
		}
		e.send(Message{Kind: MsgSync, To: to, Exchange: m.Exchange, Sync: m.Sync})
		return nil
	}
	if err := e.admit(m.From, m.Sync.Delta); err != nil {
		delete(e.exchanges, m.Exchange)
		return err
	}
	out, changed := e.r.SyncStep(m.Sync)
	e.merged(changed)
	if out.IsEmpty() {
		e.finish(m.Exchange, x)
		return nil
	}
	e.send(Message{Kind: MsgSync, To: x.a, Exchange: m.Exchange, Sync: out})
	return nil
}

func (e *Engine) onState(m Message) error {
	x := e.exchanges[m.Exchange]
	if x == nil || m.From != x.a || (x.kind != exStateCopy && x.kind != exStateRead) {
		e.stats.Stale++
		return nil
	}
	e.finish(m.Exchange, x)
	if x.kind == exStateCopy {
		// The destination checks the stamps when it merges.
		e.send(Message{Kind: MsgPush, To: x.b, Delta: m.Delta})
		return nil
	}
	return e.Merge(m.From, m.Delta)
}

func (e *Engine) finish(id uint64, x *exchange) {
	delete(e.exchanges, id)
	e.stats.Done++
	if !e.caughtUp && (x.kind == exOwn || x.kind == exStateRead) {
		if e.caughtFrom == nil {
			e.caughtFrom = make(map[string]bool)
		}
		e.caughtFrom[x.a] = true
		e.checkCaughtUp()
	}
}

// admit refuses a delta with a stamp too far ahead of the local clock.
func (e *Engine) admit(from string, d crdt.Delta) error {
	if e.cfg.MaxClockOffset <= 0 || d.IsEmpty() {
		return nil
	}
	err := e.r.Clock().CheckOffset(d, e.cfg.MaxClockOffset)
	if err == nil {
		return nil
	}
	e.stats.Refused++
	// Report by the node whose clock is wrong: a relayed step comes from
	// dispatch but carries another node's stamps.
	who := from
	var oe *crdt.OffsetError
	if errors.As(err, &oe) && oe.Node != "" {
		who = oe.Node
	}
	l := e.refusals[who]
	if l == nil {
		l = &refusalLog{last: e.now - int64(e.cfg.RefusalLogInterval)}
		e.refusals[who] = l
	}
	if e.now-l.last >= int64(e.cfg.RefusalLogInterval) {
		e.rd.Refusals = append(e.rd.Refusals, Refusal{Peer: who, Err: err, Suppressed: l.suppressed})
		l.last, l.suppressed = e.now, 0
	} else {
		l.suppressed++
	}
	return fmt.Errorf("replication: refused writes from %s: %w", from, err)
}

func (e *Engine) merged(changed crdt.Delta) {
	e.rd.Changed = append(e.rd.Changed, changed.Heroes...)
	e.stats.Merged += uint64(changed.Len())
}

func (e *Engine) send(m Message) {
	m.From = e.cfg.Self
	if m.Kind == MsgSync || m.Kind == MsgSyncReply {
		e.stats.SyncSteps++
	}
	e.rd.Messages = append(e.rd.Messages, m)
}

func (e *Engine) cities() []string {
	var out []string
	for _, p := range e.peers {
		if p.City {
			out = append(out, p.Name)
		}
	}
	return out
}

func (e *Engine) randomCity() (string, bool) {
	cs := e.cities()
	if len(cs) == 0 {
		return "", false
	}
	return cs[e.rng.IntN(len(cs))], true
}

func (e *Engine) isUp(name string) bool {
	_, ok := slices.BinarySearchFunc(e.peers, name, func(p Peer, n string) int { return cmp.Compare(p.Name, n) })
	return ok
}

// exchangeIDs returns the running exchanges' ids in order, so that what
// the engine does never depends on map iteration order.
func (e *Engine) exchangeIDs() []uint64 {
	ids := make([]uint64, 0, len(e.exchanges))
	for id := range e.exchanges {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
