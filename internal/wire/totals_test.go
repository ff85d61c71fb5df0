package wire

import (
	"testing"

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
