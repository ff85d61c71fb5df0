package wire

import (
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/replication"
)

// onePeer is a transport to one city that takes every message.
type onePeer struct{ sent []replication.Message }

func (*onePeer) Peers() []replication.Peer {
	return []replication.Peer{{Name: "metropolis", City: true}}
}

func (p *onePeer) Send(m replication.Message) int {
	p.sent = append(p.sent, m)
	return 100 * len(p.sent)
}

// TestTotalsCountAcrossEngines drives two engines one after the other, as
// a restarted city does, and checks that the totals add up instead of
// starting over, and that observing an engine twice counts it once.
func TestTotalsCountAcrossEngines(t *testing.T) {
	var totals Totals
	tr := &onePeer{}
	for i := 1; i <= 2; i++ {
		cfg := replication.DefaultCityConfig("gotham")
		cfg.AntiEntropyInterval = -1
		e, err := replication.New(cfg, crdt.NewReplica(crdt.NewClock("gotham", func() int64 { return 1_800_000_000_000_000_000 })))
		if err != nil {
			t.Fatal(err)
		}
		d := NewDriver(e, tr, &totals)
		d.Tick()
		e.LocalWrite(someDelta(t)) // after a quiet spell: pushed at once
		d.Flush(nil, nil, func() {})
		d.Flush(nil, nil, func() {}) // nothing new: counted once
		d.Stop()

		if got := totals.Engine().Pushes; got != uint64(i) {
			t.Fatalf("engine %d: Pushes = %d, want %d", i, got, i)
		}
		msgs, bytes := totals.Sent(replication.MsgPush)
		if msgs != uint64(i) || bytes != 100*uint64(i*(i+1)/2) {
			t.Fatalf("engine %d: sent %d pushes, %d bytes; want %d, %d", i, msgs, bytes, i, 100*i*(i+1)/2)
		}
	}
	if len(tr.sent) != 2 {
		t.Fatalf("transport got %d messages, want 2", len(tr.sent))
	}
	if msgs, _ := totals.Sent(replication.MsgSync); msgs != 0 {
		t.Fatalf("sync messages = %d, want 0", msgs)
	}
}

// TestTimerLateness drives a driver on a manual clock: the first Tick past
// the armed deadline counts its lateness once, in the right bucket, and a
// Tick before the deadline counts nothing.
func TestTimerLateness(t *testing.T) {
	var totals Totals
	cfg := replication.DefaultCityConfig("gotham")
	e, err := replication.New(cfg, crdt.NewReplica(crdt.NewClock("gotham", func() int64 { return 1_800_000_000_000_000_000 })))
	if err != nil {
		t.Fatal(err)
	}
	d := NewDriver(e, &onePeer{}, &totals)
	var now int64
	d.elapsed = func() int64 { return now }
	d.Tick()
	d.Flush(nil, nil, func() {})
	defer d.Stop()
	deadline := d.armedAt
	if deadline <= now {
		t.Fatalf("armed for %d at %d", deadline, now)
	}
	now = deadline - 1
	d.Tick()
	if l := totals.TimerLateness(); l.Count != 0 {
		t.Fatalf("counted %+v before the deadline", l)
	}
	now = deadline + int64(30*time.Millisecond) // in the 50 ms bucket
	d.Tick()
	d.Tick() // the same deadline: not counted again
	l := totals.TimerLateness()
	if l.Count != 1 || l.Sum != 30*time.Millisecond || l.Buckets[3] != 0 || l.Buckets[4] != 1 || l.Over(3) != 1 || l.Over(5) != 0 {
		t.Fatalf("lateness %+v", l)
	}
}
