package layout

import (
	"errors"
	"flag"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
)

// ClockFlags are the clock settings every node takes on its command line.
type ClockFlags struct {
	// Offset shifts this node's wall clock, for tests and demonstrations
	// of a node whose clock is wrong. Default 0.
	Offset time.Duration
	// MaxOffset is how far ahead of the local physical clock a remote
	// stamp may be before the message carrying it is refused; 0 turns the
	// check off. Default crdt.DefaultMaxClockOffset. See the crdt package
	// documentation.
	MaxOffset time.Duration
}

// Register adds -clock-offset and -max-clock-offset to fs, with defaults 0
// and crdt.DefaultMaxClockOffset whatever c held, so the zero ClockFlags
// is ready to use. A negative -max-clock-offset is a parse error rather
// than a quiet way to turn the check off.
func (c *ClockFlags) Register(fs *flag.FlagSet) {
	c.Offset, c.MaxOffset = 0, crdt.DefaultMaxClockOffset
	fs.DurationVar(&c.Offset, "clock-offset", 0, "shift this node's wall clock by D, for tests and demonstrations")
	fs.Var(maxOffsetValue{&c.MaxOffset}, "max-clock-offset",
		"refuse remote stamps further ahead of the local clock than this `duration`; 0 turns the check off")
}

// Phys returns the node's physical clock for crdt.NewClock: Unix time in
// nanoseconds, shifted by Offset as it is when Phys is called.
func (c ClockFlags) Phys() func() int64 {
	off := int64(c.Offset)
	return func() int64 { return time.Now().UnixNano() + off }
}

// maxOffsetValue is a flag.Value for a non-negative duration.
type maxOffsetValue struct{ d *time.Duration }

func (v maxOffsetValue) String() string {
	if v.d == nil {
		return "0s"
	}
	return v.d.String()
}

func (v maxOffsetValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d < 0 {
		return errors.New("negative; 0 turns the check off")
	}
	*v.d = d
	return nil
}

// EngineMaxOffset returns MaxOffset as replication.Config.MaxClockOffset
// takes it: there 0 means the default and a negative value turns the
// check off, here 0 turns it off.
func (c ClockFlags) EngineMaxOffset() time.Duration {
	if c.MaxOffset == 0 {
		return -1
	}
	return c.MaxOffset
}
