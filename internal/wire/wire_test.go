package wire

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/testkit"
	"github.com/superhero-cluster/superhero/messages"
	"github.com/superhero-cluster/superhero/replication"
)

func someDelta(t *testing.T) crdt.Delta {
	t.Helper()
	r := crdt.NewReplica(crdt.NewClock("gotham", func() int64 { return 1_800_000_000_000_000_000 }))
	_, d, err := r.Create(uuid.New(), "Wire")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	d := someDelta(t)
	r := crdt.NewReplica(crdt.NewClock("metropolis", func() int64 { return 1 }))
	r.Merge(d)
	for _, m := range []replication.Message{
		{Kind: replication.MsgPush, From: "gotham", To: "dispatch", Delta: d},
		{Kind: replication.MsgSync, From: "dispatch", To: "gotham", Exchange: 7},
		{Kind: replication.MsgSyncReply, From: "metropolis", To: "gotham", Exchange: 9, Sync: r.SyncStart()},
		{Kind: replication.MsgState, From: "gotham", To: "dispatch", Exchange: 3, Delta: d},
	} {
		p, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		b, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var q messages.Replicate
		if err := proto.Unmarshal(b, &q); err != nil {
			t.Fatal(err)
		}
		got, err := Decode(&q, m.To)
		if err != nil {
			t.Fatalf("%v: %v", m.Kind, err)
		}
		if got.Kind != m.Kind || got.From != m.From || got.To != m.To || got.Exchange != m.Exchange ||
			got.Delta.Len() != m.Delta.Len() || got.Sync.IsEmpty() != m.Sync.IsEmpty() {
			t.Fatalf("%v: round trip gave %+v", m.Kind, got)
		}
	}
}

func TestDecodeRefusesBadMessages(t *testing.T) {
	for name, p := range map[string]*messages.Replicate{
		"unknown kind": {From: "gotham", Kind: 99},
		"no sender":    {Kind: uint32(replication.MsgPush)},
		"bad delta":    {From: "gotham", Kind: uint32(replication.MsgPush), Delta: []byte{1, 2, 3}},
		"bad sync":     {From: "gotham", Kind: uint32(replication.MsgSync), Sync: []byte{9}},
	} {
		if _, err := Decode(p, "dispatch"); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: err = %v, want ErrBadMessage", name, err)
		}
	}
}

// TestOutboxKeepsOrderPerPeerAndDropsWhenFull: a peer that hangs delays
// no one else, its queue drops what does not fit (counted), and Close
// stops every goroutine even with a send hanging.
func TestOutboxKeepsOrderPerPeerAndDropsWhenFull(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]uint64{}
	release := make(chan struct{})
	o := NewOutbox(OutboxConfig{QueueLen: 32, Send: func(ctx context.Context, to string, msg proto.Message) error {
		if to == "capitol" {
			select { // capitol hangs until released or the send times out
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		mu.Lock()
		got[to] = append(got[to], msg.(*messages.Replicate).Exchange)
		mu.Unlock()
		return nil
	}})
	for i := range uint64(100) {
		if i < 20 {
			o.Send(replication.Message{Kind: replication.MsgSync, From: "dispatch", To: "gotham", Exchange: i})
		}
		o.Send(replication.Message{Kind: replication.MsgSync, From: "dispatch", To: "capitol", Exchange: i})
	}
	testkit.AwaitCondition(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["gotham"]) == 20
	}, "gotham did not get its 20 messages while capitol hung")
	mu.Lock()
	for i, x := range got["gotham"] {
		if x != uint64(i) {
			t.Fatalf("gotham got %v: out of order", got["gotham"])
		}
	}
	mu.Unlock()
	if n := o.Counters().Dropped.Load(); n == 0 {
		t.Fatal("capitol's full queue dropped nothing")
	}
	returnsWithin(t, 5*time.Second, o.Close, "Close did not stop the outbox")
	close(release)
	if size := o.Send(replication.Message{Kind: replication.MsgPush, From: "dispatch", To: "gotham", Delta: someDelta(t)}); size == 0 {
		t.Fatal("Send after Close reported no payload")
	}
}

func TestOutboxCloseIsBoundedByABlockedSend(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	o := NewOutbox(OutboxConfig{Timeout: 50 * time.Millisecond, Send: func(context.Context, string, proto.Message) error {
		entered <- struct{}{}
		<-release // a transport that ignores ctx, as the node's may
		return nil
	}})
	o.Send(replication.Message{Kind: replication.MsgSync, From: "dispatch", To: "capitol", Exchange: 1})
	<-entered
	returnsWithin(t, 5*time.Second, o.Close, "Close waited for a send blocked in the transport")
	close(release)
	// The blocked goroutine ends once its send returns.
	returnsWithin(t, 5*time.Second, o.wg.Wait, "the outbox's goroutine did not end after its send returned")
}

// returnsWithin runs f and fails the test if it has not returned within d.
func returnsWithin(t *testing.T, d time.Duration, f func(), failure string) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal(failure)
	}
}
