package wire

import (
	"slices"
	"time"

	"github.com/superhero-cluster/superhero/replication"
)

// Transport carries an engine's messages to the other nodes.
type Transport interface {
	// Peers returns the other nodes that are up now.
	Peers() []replication.Peer
	// Send hands m to the network without blocking and returns the size
	// of its payload. It may drop m: anti-entropy repairs what is lost.
	Send(m replication.Message) int
}

// Driver is what an actor needs to drive a replication engine: the
// engine's time (nanoseconds on the monotonic clock since the driver
// started), its membership from the transport, sending what it has ready,
// and one timer for its next deadline. It is not safe for concurrent use;
// the actor that owns it serialises calls.
type Driver struct {
	engine    *replication.Engine
	transport Transport
	totals    *Totals
	start     time.Time
	peers     []replication.Peer
	timer     *time.Timer
	armed     bool
	armedAt   int64
	met       bool // the armed deadline has passed and its lateness was counted
	// elapsed is the engine's time; tests replace it.
	elapsed func() int64
}

// NewDriver returns a driver for e over t. It counts what e does and
// what it sends into totals, if not nil; pass the same Totals to the
// drivers of the node's successive engines.
func NewDriver(e *replication.Engine, t Transport, totals *Totals) *Driver {
	d := &Driver{engine: e, transport: t, totals: totals, start: time.Now()}
	d.elapsed = func() int64 { return int64(time.Since(d.start)) }
	return d
}

// Engine returns the engine driven.
func (d *Driver) Engine() *replication.Engine { return d.engine }

// Tick brings the engine to the current time and membership. Call it
// before every input to the engine. The first Tick past the deadline the
// timer was armed for counts how late it came (Totals.TimerLateness): an
// actor whose mailbox is busy handles its engine's deadlines late.
func (d *Driver) Tick() {
	if peers := d.transport.Peers(); !slices.Equal(peers, d.peers) {
		d.peers = peers
		d.engine.SetPeers(peers)
	}
	now := d.elapsed()
	if d.armed && !d.met && now >= d.armedAt {
		d.met = true
		d.totals.observeLateness(time.Duration(now - d.armedAt))
	}
	d.engine.Tick(now)
}

// Woken says the timer armed by Flush has fired (its wake message arrived).
func (d *Driver) Woken() { d.armed = false }

// Flush sends the messages the engine has ready, calling sent for each
// with its payload size, then hands the Ready to act (for the changes and
// refusals), advances the engine, updates the Totals, and arms the timer
// to call wake at the engine's next deadline. sent and act may be nil.
func (d *Driver) Flush(sent func(replication.Message, int), act func(replication.Ready), wake func()) {
	if d.engine.HasReady() {
		rd := d.engine.Ready()
		for _, m := range rd.Messages {
			size := d.transport.Send(m)
			d.totals.countSent(m, size)
			if sent != nil {
				sent(m, size)
			}
		}
		if act != nil {
			act(rd)
		}
		d.engine.Advance()
	}
	d.totals.observe(d.engine)
	next := d.engine.NextTick()
	if d.armed && d.armedAt <= next {
		return // a timer is armed for then or earlier
	}
	d.Stop()
	d.armed, d.armedAt, d.met = true, next, false
	d.timer = time.AfterFunc(time.Duration(next-d.elapsed()), wake)
}

// Stop stops the timer.
func (d *Driver) Stop() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer, d.armed = nil, false
	}
}
