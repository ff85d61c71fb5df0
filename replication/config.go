package replication

import (
	"fmt"
	"strconv"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
)

// Role says which part a node plays in replication.
type Role uint8

const (
	// RoleCity is a city node: it pushes its own writes to every replica and
	// runs anti-entropy rounds with a random peer city.
	RoleCity Role = iota + 1
	// RoleDispatch is the dispatch node: it pushes the writes it originates
	// to every city, relays gossip between two cities and polls a city.
	RoleDispatch
)

func (r Role) String() string {
	switch r {
	case RoleCity:
		return "city"
	case RoleDispatch:
		return "dispatch"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// Protocol selects how state spreads.
type Protocol string

const (
	// ProtocolDefault spreads deltas at once and repairs by digest
	// exchanges, so only what differs crosses the network.
	ProtocolDefault Protocol = "default"
	// ProtocolOriginal is the Elixir original: whole replicas only, moved
	// by dispatch's gossip and poll; cities never talk to each other.
	ProtocolOriginal Protocol = "original"
)

// ParseQuorum parses a -write-quorum flag value: a count, or "all".
func ParseQuorum(s string) (int, error) {
	if s == "all" {
		return QuorumAll, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("replication: write quorum %q (want 0, 1, 2, ... or all)", s)
	}
	return n, nil
}

// ParseProtocol validates a -protocol flag value.
func ParseProtocol(s string) (Protocol, error) {
	switch p := Protocol(s); p {
	case ProtocolDefault, ProtocolOriginal:
		return p, nil
	}
	return "", fmt.Errorf("replication: unknown protocol %q (want default or original)", s)
}

// QuorumAll as Config.WriteQuorum waits for every replica a push went to.
const QuorumAll = -1

// MaxSyncSteps bounds one anti-entropy exchange (own or relayed). Three or
// four steps settle replicas that differ in a few entries; a refill of a
// large replica takes two more per crdt.MaxSyncEntries entries, so 64 steps
// carry about 250,000 entries.
const MaxSyncSteps = 64

// Config is the whole replication policy of one node. Every field has a
// documented default; start from a preset (DefaultCityConfig,
// DefaultDispatchConfig, OriginalCityConfig, OriginalDispatchConfig) and
// change what differs. In the interval fields a negative value turns that
// activity off and zero means the preset's default.
type Config struct {
	// Self is the node's name, as peers address it ("gotham",
	// "dispatch"). Required.
	Self string
	// Role is the node's part. Required.
	Role Role
	// Protocol is the replication protocol. Default ProtocolDefault.
	Protocol Protocol

	// Push sends every local write at once to every replica that is up
	// (cities) or every city that is up (dispatch). Default on in the
	// default protocol; in the original protocol dispatch sends its whole
	// replica to one random city per write and cities never push.
	NoPush bool
	// PushWindow coalesces writes: a write after a quiet spell goes out at
	// once; writes that follow within the window go out as one push at its
	// end. Default 2 ms. Writes that wait for a WriteQuorum are paced by
	// confirmations instead (see Engine.LocalWrite).
	PushWindow time.Duration

	// AntiEntropyInterval is how often a city runs a digest exchange with a
	// random peer city; a restarted (empty) city runs one at once.
	// Default 500 ms for cities; dispatch uses GossipInterval and
	// PollInterval instead.
	AntiEntropyInterval time.Duration
	// GossipInterval is how often dispatch relays an exchange between two
	// random cities (and runs one between its own replica and the first).
	// Default 1 s, as the original.
	GossipInterval time.Duration
	// PollInterval is how often dispatch reads a random city into its own
	// replica. Default 2 s, as the original. Dispatch also polls at once
	// when it starts.
	PollInterval time.Duration
	// WriteQuorum is how many replicas must have merged a local write
	// before LocalWrite's number is reported Acked: 0 acknowledges from this
	// node's memory (a crash right after can lose the write), N waits for N
	// replicas the push went to, QuorumAll for every one it went to.
	// Writes pushed together are acknowledged together (group commit).
	// Default 1 for dispatch, 0 for cities (their writes have no client
	// waiting).
	WriteQuorum int
	// AckTimeout reports a write Failed when its push is not acknowledged
	// by WriteQuorum replicas in this long. Default 1 s.
	AckTimeout time.Duration
	// CatchUpGrace is how long a node with no city up waits before it
	// counts itself caught up (nothing to catch up with). Default 2 s.
	CatchUpGrace time.Duration

	// ExchangeTimeout abandons an exchange whose next step has not come
	// back in this long (a lost message or a peer that went away). Default
	// 1 s.
	ExchangeTimeout time.Duration

	// MaxClockOffset refuses a delta or sync step carrying a stamp further
	// ahead of the local physical clock than this; the local clock is
	// never dragged forward by it. Default crdt.DefaultMaxClockOffset
	// (500 ms); negative turns the check off.
	MaxClockOffset time.Duration
	// RefusalLogInterval is how often at most a refusal from one peer is
	// reported for logging (the rest are counted). Default 10 s.
	RefusalLogInterval time.Duration

	// TombstoneTTL is how long a tombstone is kept before it is collected;
	// see the crdt package documentation. Default crdt.DefaultTombstoneTTL.
	TombstoneTTL time.Duration
	// CollectPeriod is how often tombstones are collected; horizons are
	// rounded down to whole periods so replicas drop the same ones.
	// Default crdt.DefaultCollectPeriod.
	CollectPeriod time.Duration

	// Seed seeds the engine's random choices (peers, cities to relay).
	Seed uint64
}

// DefaultCityConfig is the default protocol for the named city.
func DefaultCityConfig(self string) Config {
	return Config{
		Self:                self,
		Role:                RoleCity,
		Protocol:            ProtocolDefault,
		PushWindow:          2 * time.Millisecond,
		AntiEntropyInterval: 500 * time.Millisecond,
		GossipInterval:      -1,
		PollInterval:        -1,
		ExchangeTimeout:     time.Second,
		AckTimeout:          time.Second,
		CatchUpGrace:        2 * time.Second,
		MaxClockOffset:      crdt.DefaultMaxClockOffset,
		RefusalLogInterval:  10 * time.Second,
		TombstoneTTL:        crdt.DefaultTombstoneTTL,
		CollectPeriod:       crdt.DefaultCollectPeriod,
	}
}

// DefaultDispatchConfig is the default protocol for the dispatch node.
func DefaultDispatchConfig(self string) Config {
	c := DefaultCityConfig(self)
	c.Role = RoleDispatch
	c.WriteQuorum = 1
	c.AntiEntropyInterval = -1
	c.GossipInterval = time.Second
	c.PollInterval = 2 * time.Second
	return c
}

// OriginalCityConfig is the original protocol for a city: no push, no
// anti-entropy; it only answers dispatch.
func OriginalCityConfig(self string) Config {
	c := DefaultCityConfig(self)
	c.Protocol = ProtocolOriginal
	c.NoPush = true
	c.AntiEntropyInterval = -1
	return c
}

// OriginalDispatchConfig is the original protocol for dispatch: every write
// sends the whole replica to one random city; gossip copies a random
// city's whole replica to another every second; poll reads a random city's
// whole replica every two seconds.
func OriginalDispatchConfig(self string) Config {
	c := DefaultDispatchConfig(self)
	c.Protocol = ProtocolOriginal
	return c
}

// Preset returns the preset for role and protocol.
func Preset(self string, role Role, p Protocol) Config {
	switch {
	case role == RoleDispatch && p == ProtocolOriginal:
		return OriginalDispatchConfig(self)
	case role == RoleDispatch:
		return DefaultDispatchConfig(self)
	case p == ProtocolOriginal:
		return OriginalCityConfig(self)
	}
	return DefaultCityConfig(self)
}

// withDefaults fills zero fields from the preset of the config's role and
// protocol, and checks what is required.
func (c Config) withDefaults() (Config, error) {
	if c.Self == "" {
		return c, fmt.Errorf("replication: Config.Self is required")
	}
	if c.Role != RoleCity && c.Role != RoleDispatch {
		return c, fmt.Errorf("replication: Config.Role is required")
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolDefault
	}
	if _, err := ParseProtocol(string(c.Protocol)); err != nil {
		return c, err
	}
	p := Preset(c.Self, c.Role, c.Protocol)
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.PushWindow, p.PushWindow)
	def(&c.AntiEntropyInterval, p.AntiEntropyInterval)
	def(&c.GossipInterval, p.GossipInterval)
	def(&c.PollInterval, p.PollInterval)
	def(&c.ExchangeTimeout, p.ExchangeTimeout)
	def(&c.AckTimeout, p.AckTimeout)
	def(&c.CatchUpGrace, p.CatchUpGrace)
	if c.WriteQuorum < QuorumAll {
		return c, fmt.Errorf("replication: WriteQuorum %d (want 0, a positive count or QuorumAll)", c.WriteQuorum)
	}
	def(&c.MaxClockOffset, p.MaxClockOffset)
	def(&c.RefusalLogInterval, p.RefusalLogInterval)
	def(&c.TombstoneTTL, p.TombstoneTTL)
	def(&c.CollectPeriod, p.CollectPeriod)
	if c.Protocol == ProtocolOriginal && c.Role == RoleCity {
		c.NoPush, c.AntiEntropyInterval = true, -1
	}
	return c, nil
}
