package replication_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/replication"
)

// dispatchEngine returns a dispatch engine with three cities up, at time 0.
func dispatchEngine(t *testing.T, quorum int) (*replication.Engine, *crdt.Replica) {
	t.Helper()
	r := crdt.NewReplica(crdt.NewClock("dispatch", func() int64 { return 1_800_000_000_000_000_000 }))
	cfg := replication.DefaultDispatchConfig("dispatch")
	cfg.WriteQuorum = quorum
	cfg.GossipInterval, cfg.PollInterval = -1, -1
	e, err := replication.New(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	e.SetPeers([]replication.Peer{{Name: "gotham", City: true}, {Name: "metropolis", City: true}, {Name: "capitol", City: true}})
	e.Tick(1)
	e.Advance()
	return e, r
}

func create(t *testing.T, e *replication.Engine, r *crdt.Replica) uint64 {
	t.Helper()
	_, d, err := r.Create(uuid.New(), "Q")
	if err != nil {
		t.Fatal(err)
	}
	return e.LocalWrite(d)
}

// pushes returns the pushes in e's Ready, by target.
func pushes(e *replication.Engine) map[string]replication.Message {
	out := map[string]replication.Message{}
	for _, m := range e.Ready().Messages {
		if m.Kind == replication.MsgPush {
			out[m.To] = m
		}
	}
	e.Advance()
	return out
}

func ack(t *testing.T, e *replication.Engine, from string, push replication.Message) {
	t.Helper()
	if err := e.Step(replication.Message{Kind: replication.MsgPushAck, From: from, To: "dispatch", Exchange: push.Exchange}); err != nil {
		t.Fatal(err)
	}
}

// TestGroupCommit: with a write quorum, a write after a quiet spell is
// pushed at once, with no push window to wait out; writes made while a
// push waits for its confirmation travel together in the next push, which
// leaves the moment the confirmation comes, and are acknowledged together
// by the first city's acknowledgement.
func TestGroupCommit(t *testing.T) {
	e, r := dispatchEngine(t, 1)
	first := create(t, e, r) // after a quiet spell: pushed at once
	ps := pushes(e)
	if len(ps) != 3 || ps["gotham"].Exchange == 0 {
		t.Fatalf("first write: pushes %+v", ps)
	}
	ack(t, e, "gotham", ps["gotham"])
	if rd := e.Ready(); !slices.Equal(rd.Acked, []uint64{first}) {
		t.Fatalf("acked %v, want [%d]", rd.Acked, first)
	}
	e.Advance()

	// Well inside what was the push window: a lone write leaves at once.
	e.Tick(int64(500 * time.Microsecond))
	second := create(t, e, r)
	ps = pushes(e)
	if len(ps) != 3 {
		t.Fatalf("a write with no push out waited: %d pushes", len(ps))
	}

	// Three writes while that push is out: none leaves until it is
	// confirmed, however long that takes.
	var batch []uint64
	for range 3 {
		batch = append(batch, create(t, e, r))
	}
	e.Tick(int64(50 * time.Millisecond))
	if out := pushes(e); len(out) != 0 {
		t.Fatalf("pushed while a push waits for its confirmation: %v", out)
	}
	// The first city asked for a confirmation gives it (a push asks only
	// some of the cities; the others' pushes carry no exchange id).
	for _, city := range []string{"capitol", "gotham", "metropolis"} {
		if ps[city].Exchange != 0 {
			ack(t, e, city, ps[city])
			break
		}
	}
	rd := e.Ready()
	if !slices.Equal(rd.Acked, []uint64{second}) {
		t.Fatalf("acked %v, want [%d]", rd.Acked, second)
	}
	next := map[string]replication.Message{}
	for _, m := range rd.Messages {
		if m.Kind == replication.MsgPush {
			next[m.To] = m
		}
	}
	e.Advance()
	if len(next) != 3 || next["capitol"].Delta.Len() != 3 {
		t.Fatalf("on confirmation: %d pushes, capitol's carries %d entries", len(next), next["capitol"].Delta.Len())
	}
	ack(t, e, "capitol", next["capitol"])
	ack(t, e, "capitol", next["capitol"]) // a duplicate changes nothing
	ack(t, e, "gotham", next["gotham"])
	rd = e.Ready()
	if !slices.Equal(rd.Acked, batch) || len(rd.Failed) != 0 {
		t.Fatalf("acked %v failed %v, want %v once", rd.Acked, rd.Failed, batch)
	}
	e.Advance()
	st := e.Stats()
	if st.WritesAcked != 5 {
		t.Fatalf("WritesAcked = %d, want 5", st.WritesAcked)
	}
	// Three pushes were confirmed: the second 49.5 ms after it left (at
	// 0.5 ms, confirmed at 50 ms), the others at once.
	var buckets [len(replication.ConfirmBounds) + 1]uint64
	buckets[0], buckets[slices.Index(replication.ConfirmBounds[:], 50*time.Millisecond)] = 2, 1
	if st.Confirmed != 3 || time.Duration(st.ConfirmNanos) != 49500*time.Microsecond || st.ConfirmBuckets != buckets {
		t.Fatalf("Confirmed %d in %v, buckets %v; want 3 in 49.5ms, buckets %v", st.Confirmed, time.Duration(st.ConfirmNanos), st.ConfirmBuckets, buckets)
	}
}

// TestPushWindow: without a write quorum, writes within the push window
// after a push travel together in one push at its end.
func TestPushWindow(t *testing.T) {
	e, r := dispatchEngine(t, 0)
	create(t, e, r) // after a quiet spell: pushed at once
	if ps := pushes(e); len(ps) != 3 {
		t.Fatalf("first write: %d pushes", len(ps))
	}
	for range 3 {
		create(t, e, r)
	}
	if ps := pushes(e); len(ps) != 0 {
		t.Fatalf("pushed inside the window: %v", ps)
	}
	e.Tick(int64(3 * time.Millisecond))
	ps := pushes(e)
	if len(ps) != 3 || ps["capitol"].Delta.Len() != 3 {
		t.Fatalf("window end: %d pushes, capitol's carries %d entries", len(ps), ps["capitol"].Delta.Len())
	}
}

func TestQuorumAllWaitsForEveryCity(t *testing.T) {
	e, r := dispatchEngine(t, replication.QuorumAll)
	w := create(t, e, r)
	ps := pushes(e)
	ack(t, e, "gotham", ps["gotham"])
	ack(t, e, "capitol", ps["capitol"])
	if rd := e.Ready(); len(rd.Acked) != 0 {
		t.Fatalf("acknowledged by 2 of 3: %v", rd.Acked)
	}
	ack(t, e, "metropolis", ps["metropolis"])
	if rd := e.Ready(); !slices.Equal(rd.Acked, []uint64{w}) {
		t.Fatalf("acked %v, want [%d]", rd.Acked, w)
	}
}

// TestUnconfirmedWritesFail: no acknowledgement within AckTimeout, too
// few cities for the quorum, and no city at all each report Failed.
func TestUnconfirmedWritesFail(t *testing.T) {
	e, r := dispatchEngine(t, 1)
	w := create(t, e, r)
	pushes(e)
	e.Tick(int64(time.Second) - 1)
	if rd := e.Ready(); len(rd.Failed) != 0 {
		t.Fatalf("failed before the timeout: %v", rd.Failed)
	}
	e.Tick(int64(time.Second) + 1)
	if rd := e.Ready(); !slices.Equal(rd.Failed, []uint64{w}) {
		t.Fatalf("failed %v, want [%d]", rd.Failed, w)
	}
	e.Advance()

	e2, r2 := dispatchEngine(t, 2)
	e2.SetPeers([]replication.Peer{{Name: "gotham", City: true}})
	w2 := create(t, e2, r2)
	if rd := e2.Ready(); !slices.Equal(rd.Failed, []uint64{w2}) || len(rd.Messages) != 1 {
		t.Fatalf("quorum 2 with one city: failed %v, %d messages (the write still spreads)", rd.Failed, len(rd.Messages))
	}

	e3, r3 := dispatchEngine(t, 1)
	e3.SetPeers(nil)
	w3 := create(t, e3, r3)
	if rd := e3.Ready(); !slices.Equal(rd.Failed, []uint64{w3}) {
		t.Fatalf("no city: failed %v, want [%d]", rd.Failed, w3)
	}
}

// TestQuorumZeroAnswersAtOnce: WriteQuorum 0 keeps the old behaviour.
func TestQuorumZeroAnswersAtOnce(t *testing.T) {
	e, r := dispatchEngine(t, 0)
	if w := create(t, e, r); w != 0 {
		t.Fatalf("LocalWrite = %d, want 0 (nothing to wait for)", w)
	}
	for _, p := range pushes(e) {
		if p.Exchange != 0 {
			t.Fatalf("a push asks for an acknowledgement nobody waits for: %+v", p)
		}
	}
}

// TestCityAcknowledgesAPushOnlyWhenMerged: a push asking for an
// acknowledgement gets one after the merge; a refused one gets none.
func TestCityAcknowledgesAPushOnlyWhenMerged(t *testing.T) {
	now := int64(1_800_000_000_000_000_000)
	r := crdt.NewReplica(crdt.NewClock("gotham", func() int64 { return now }))
	e, err := replication.New(replication.DefaultCityConfig("gotham"), r)
	if err != nil {
		t.Fatal(err)
	}
	e.Tick(1)
	e.Advance()
	src := crdt.NewReplica(crdt.NewClock("dispatch", func() int64 { return now }))
	_, d, _ := src.Create(uuid.New(), "Acked")
	if err := e.Step(replication.Message{Kind: replication.MsgPush, From: "dispatch", Exchange: 9, Delta: d}); err != nil {
		t.Fatal(err)
	}
	rd := e.Ready()
	if len(rd.Messages) != 1 || rd.Messages[0].Kind != replication.MsgPushAck || rd.Messages[0].Exchange != 9 || rd.Messages[0].To != "dispatch" {
		t.Fatalf("ready %+v, want one ack of push 9 to dispatch", rd.Messages)
	}
	e.Advance()
	ahead := crdt.NewReplica(crdt.NewClock("dispatch", func() int64 { return now + int64(time.Hour) }))
	_, d2, _ := ahead.Create(uuid.New(), "Future")
	if err := e.Step(replication.Message{Kind: replication.MsgPush, From: "dispatch", Exchange: 10, Delta: d2}); err == nil {
		t.Fatal("a push stamped an hour ahead was merged")
	}
	for _, m := range e.Ready().Messages {
		if m.Kind == replication.MsgPushAck {
			t.Fatalf("a refused push was acknowledged: %+v", m)
		}
	}
}

// TestCaughtUp: a new dispatch is not caught up until an exchange with a
// city completes, or no city has been up for CatchUpGrace.
func TestCaughtUp(t *testing.T) {
	r := crdt.NewReplica(crdt.NewClock("dispatch", func() int64 { return 1 }))
	e, err := replication.New(replication.DefaultDispatchConfig("dispatch"), r)
	if err != nil {
		t.Fatal(err)
	}
	e.Tick(0)
	if e.CaughtUp() {
		t.Fatal("caught up at start")
	}
	e.Tick(int64(2 * time.Second))
	if !e.CaughtUp() {
		t.Fatal("not caught up after 2 s with no city up")
	}
	e.SetPeers([]replication.Peer{{Name: "gotham", City: true}})
	if e.CaughtUp() {
		t.Fatal("caught up with a city up and no exchange done")
	}
	e.Tick(int64(2*time.Second) + 1)
	var open replication.Message
	for _, m := range e.Ready().Messages {
		if m.Kind == replication.MsgSync && m.To == "gotham" {
			open = m
		}
	}
	if open.Exchange == 0 {
		t.Fatal("no poll of the city that came up")
	}
	e.Advance()
	// The city answers that it holds nothing more: the exchange ends.
	if err := e.Step(replication.Message{Kind: replication.MsgSyncReply, From: "gotham", To: "dispatch", Exchange: open.Exchange}); err != nil {
		t.Fatal(err)
	}
	if !e.CaughtUp() {
		t.Fatal("not caught up after a completed exchange")
	}
}

// TestCaughtUpReadsEveryCity: a write acknowledged by one city may be on
// that city alone, so a restarted dispatch is caught up only once it has
// read every city that is up (or the ones it has not read went away).
func TestCaughtUpReadsEveryCity(t *testing.T) {
	r := crdt.NewReplica(crdt.NewClock("dispatch", func() int64 { return 1 }))
	e, err := replication.New(replication.DefaultDispatchConfig("dispatch"), r)
	if err != nil {
		t.Fatal(err)
	}
	e.SetPeers([]replication.Peer{{Name: "gotham", City: true}, {Name: "metropolis", City: true}, {Name: "capitol", City: true}})
	e.Tick(0)
	opened := map[string]uint64{}
	for _, m := range e.Ready().Messages {
		if m.Kind == replication.MsgSync {
			opened[m.To] = m.Exchange
		}
	}
	e.Advance()
	if len(opened) != 3 {
		t.Fatalf("catch-up reads %v, want one per city", opened)
	}
	done := func(city string) {
		t.Helper()
		if err := e.Step(replication.Message{Kind: replication.MsgSyncReply, From: city, To: "dispatch", Exchange: opened[city]}); err != nil {
			t.Fatal(err)
		}
	}
	done("gotham")
	if e.CaughtUp() {
		t.Fatal("caught up after reading one city of three")
	}
	done("metropolis")
	if e.CaughtUp() {
		t.Fatal("caught up after reading two cities of three")
	}
	// Capitol goes away before answering: the two read are all there is.
	e.SetPeers([]replication.Peer{{Name: "gotham", City: true}, {Name: "metropolis", City: true}})
	if !e.CaughtUp() {
		t.Fatal("not caught up after reading every city that is up")
	}
}
