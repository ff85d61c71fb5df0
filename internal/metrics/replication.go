package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/superhero-cluster/superhero/internal/wire"
	"github.com/superhero-cluster/superhero/replication"
)

// Replication returns a collector of a node's replication counters, read
// from t at scrape time (one consistent reading of the engines' Stats per
// scrape).
func Replication(t *wire.Totals) prometheus.Collector { return replicationCollector{t} }

type replicationCollector struct{ t *wire.Totals }

var (
	sentMessagesDesc = prometheus.NewDesc("superhero_replication_sent_messages_total",
		"Replication messages this node sent (handed to its outbox; those that did not leave are also in superhero_replication_dropped_messages_total), by kind: push (writes to merge), push-ack, sync and sync-reply (anti-entropy steps), state-request and state (original protocol).",
		[]string{"kind"}, nil)
	sentBytesDesc = prometheus.NewDesc("superhero_replication_sent_bytes_total",
		"Payload bytes of the replication messages this node sent, by kind.",
		[]string{"kind"}, nil)
	droppedDesc = prometheus.NewDesc("superhero_replication_dropped_messages_total",
		"Replication messages that did not leave this node (a peer's queue was full, or the send failed); anti-entropy repairs what they carried.",
		nil, nil)
	latenessDesc = prometheus.NewDesc("superhero_replication_timer_lateness_seconds",
		"How late the actor that owns the replication engine handled each of the engine's deadlines (push window, gossip, poll, anti-entropy, exchange and ack timeouts), from the deadline to the first message it handled after it. Anything past 0.1 s means its mailbox is too busy: exchanges time out and writes answer \"outcome unknown\".",
		nil, nil)
	confirmDesc = prometheus.NewDesc("superhero_replication_push_confirm_seconds",
		"With a write quorum (dispatch): from a push that carries writes waiting for the quorum leaving this node to its confirmation by enough replicas. A create, terminate or assign home waits about this long, plus the rest of the push before it when one was out.",
		nil, nil)
)

// engineCounter is one counter read from the engines' summed Stats.
type engineCounter struct {
	desc   *prometheus.Desc
	labels []string
	value  func(replication.Stats) uint64
}

var engineCounters = func() []engineCounter {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("superhero_replication_"+name, help, labels, nil)
	}
	ended := desc("exchanges_ended_total", "Anti-entropy exchanges this node started (own and relayed) that ended, by outcome: done (in agreement), timed_out (no answer in time), cut (at the step limit), aborted (the peer left).", "outcome")
	writes := desc("writes_total", "Local writes waiting for the write quorum, by outcome: acked (enough replicas merged them), unknown (not confirmed in time, or too few replicas up; dispatch answers 503 \"outcome unknown\").", "outcome")
	return []engineCounter{
		{desc: desc("push_entries_total", "Entries carried by the pushes this node sent (a push to n peers counts its entries n times)."),
			value: func(s replication.Stats) uint64 { return s.PushEntries }},
		{desc: desc("sync_rounds_total", "Exchanges this node started with its own replica: a city's anti-entropy rounds; dispatch's gossip and poll exchanges."),
			value: func(s replication.Stats) uint64 { return s.Exchanges }},
		{desc: desc("relayed_exchanges_total", "Exchanges between two cities that dispatch relayed (gossip)."),
			value: func(s replication.Stats) uint64 { return s.Relays }},
		{desc: desc("state_reads_total", "Whole-replica reads and copies of the original protocol."),
			value: func(s replication.Stats) uint64 { return s.StateReads }},
		{desc: ended, labels: []string{"done"}, value: func(s replication.Stats) uint64 { return s.Done }},
		{desc: ended, labels: []string{"timed_out"}, value: func(s replication.Stats) uint64 { return s.TimedOut }},
		{desc: ended, labels: []string{"cut"}, value: func(s replication.Stats) uint64 { return s.Cut }},
		{desc: ended, labels: []string{"aborted"}, value: func(s replication.Stats) uint64 { return s.Aborted }},
		{desc: desc("sync_steps_total", "Anti-entropy steps (sync requests and replies) this node sent."),
			value: func(s replication.Stats) uint64 { return s.SyncSteps }},
		{desc: desc("merged_entries_total", "Entries from other nodes that changed this node's replica (merges)."),
			value: func(s replication.Stats) uint64 { return s.Merged }},
		{desc: desc("refused_total", "Replication messages refused whole because a stamp in them was too far ahead of this node's clock (-max-clock-offset): a peer's clock is off, and its writes do not get here."),
			value: func(s replication.Stats) uint64 { return s.Refused }},
		{desc: desc("stale_replies_total", "Answers that came after their exchange or push had ended (late or duplicated messages)."),
			value: func(s replication.Stats) uint64 { return s.Stale }},
		{desc: desc("tombstones_collected_total", "Tombstones dropped from this node's replica after their time to live."),
			value: func(s replication.Stats) uint64 { return s.Collected }},
		{desc: writes, labels: []string{"acked"}, value: func(s replication.Stats) uint64 { return s.WritesAcked }},
		{desc: writes, labels: []string{"unknown"}, value: func(s replication.Stats) uint64 { return s.WritesFailed }},
	}
}()

func (replicationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sentMessagesDesc
	ch <- sentBytesDesc
	ch <- droppedDesc
	ch <- latenessDesc
	ch <- confirmDesc
	seen := map[*prometheus.Desc]bool{}
	for _, c := range engineCounters {
		if !seen[c.desc] {
			seen[c.desc] = true
			ch <- c.desc
		}
	}
}

func (c replicationCollector) Collect(ch chan<- prometheus.Metric) {
	for k := replication.MsgKind(1); k <= replication.LastMsgKind; k++ {
		msgs, bytes := c.t.Sent(k)
		ch <- prometheus.MustNewConstMetric(sentMessagesDesc, prometheus.CounterValue, float64(msgs), k.String())
		ch <- prometheus.MustNewConstMetric(sentBytesDesc, prometheus.CounterValue, float64(bytes), k.String())
	}
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.t.Outbox.Dropped.Load()))
	late := c.t.TimerLateness()
	buckets := make(map[float64]uint64, len(late.Buckets))
	for i, b := range wire.LatenessBuckets {
		buckets[b.Seconds()] = late.Buckets[i]
	}
	ch <- prometheus.MustNewConstHistogram(latenessDesc, late.Count, late.Sum.Seconds(), buckets)
	st := c.t.Engine()
	confirms := make(map[float64]uint64, len(replication.ConfirmBounds))
	var n uint64
	for i, b := range replication.ConfirmBounds {
		n += st.ConfirmBuckets[i]
		confirms[b.Seconds()] = n
	}
	ch <- prometheus.MustNewConstHistogram(confirmDesc, st.Confirmed, time.Duration(st.ConfirmNanos).Seconds(), confirms)
	for _, e := range engineCounters {
		ch <- prometheus.MustNewConstMetric(e.desc, prometheus.CounterValue, float64(e.value(st)), e.labels...)
	}
}
