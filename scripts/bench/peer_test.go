package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/superhero-cluster/superhero/internal/localcluster"
)

func TestNATSArgs(t *testing.T) {
	got := strings.Join(natsArgs(1, 3, 20000, "/s"), " ")
	for _, want := range []string{
		"--server_name n2", "--addr 127.0.0.1", "--port 20001", "--jetstream", "--store_dir /s/n2",
		"--cluster_name bench", "--cluster nats://127.0.0.1:20004",
		"--routes nats://127.0.0.1:20003,nats://127.0.0.1:20005",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
}

func TestScanStep(t *testing.T) {
	msg := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = []string{kv[i+1]}
		}
		return h
	}
	tests := []struct {
		name    string
		h       nats.Header
		seq     uint64
		done    bool
		wantErr bool
	}{
		{"message", msg("Nats-Sequence", "42", "Nats-Subject", "$KV.bench.k"), 42, false, false},
		{"end of batch", msg("Status", "204", "Description", "EOB"), 0, true, false},
		{"past the last message", msg("Status", "404", "Description", "Message Not Found"), 0, true, false},
		{"bad request", msg("Status", "408", "Description", "Bad Request"), 0, false, true},
		{"message without a sequence", msg("Nats-Subject", "$KV.bench.k"), 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq, done, err := scanStep(tt.h)
			if seq != tt.seq || done != tt.done || (err != nil) != tt.wantErr {
				t.Fatalf("scanStep = %d, %v, %v; want %d, %v, error %v", seq, done, err, tt.seq, tt.done, tt.wantErr)
			}
		})
	}
}

func TestPerCore(t *testing.T) {
	var r row
	if _, ok := perCore("")(&r); ok {
		t.Fatal("writes per core without CPU figures")
	}
	r.set("cpu_us_per_write", 200)
	r.set("cpu_us_per_write_64", 250)
	if v, ok := perCore("")(&r); !ok || v != 5000 {
		t.Fatalf("perCore = %v, %v; want 5000", v, ok)
	}
	if v, ok := perCore("_64")(&r); !ok || v != 4000 {
		t.Fatalf("perCore(_64) = %v, %v; want 4000", v, ok)
	}
}

// comparedRows are ours and the peer's as a run with peer, write_to_all
// and throughput leaves them.
func comparedRows() []row {
	mk := func(scenario, protocol string, kv ...any) row {
		r := row{Scenario: scenario, Protocol: protocol}
		for i := 0; i < len(kv); i += 2 {
			r.set(kv[i].(string), kv[i+1].(float64))
		}
		return r
	}
	failed := mk("peer", "nats-kv-memory", "p50_ms", 1.0)
	failed.Err = "boom"
	return []row{
		mk("write_to_all", "default", "api_p50_ms", 0.5, "p50_ms", 3.0, "p99_ms", 6.0),
		mk("write_to_all", "original", "api_p50_ms", 90.0, "p50_ms", 900.0, "p99_ms", 990.0),
		mk("throughput", "default", "per_s", 7000.0, "cpu_us_per_write", 200.0, "per_s_64", 8000.0, "cpu_us_per_write_64", 160.0),
		mk("throughput", "quorum-0", "per_s", 9000.0, "cpu_us_per_write", 100.0),
		mk("peer", "nats-kv-file", "api_p50_ms", 1.0, "p50_ms", 1.5, "p99_ms", 2.0, "per_s", 7000.0, "cpu_us_per_write", 250.0, "per_s_64", 10000.0, "cpu_us_per_write_64", 200.0),
		failed,
		{Scenario: "peer", Protocol: "skipped", Note: "SKIPPED: no nats-server"},
	}
}

func TestPeerRatios(t *testing.T) {
	got := peerRatios(comparedRows())
	if len(got) != 1 || got[0].Protocol != "ours/nats-kv-file" {
		t.Fatalf("ratio rows %+v, want one for the file row alone", got)
	}
	want := map[string]float64{
		"ratio_api_p50_ms": 0.5, "ratio_p50_ms": 2, "ratio_p99_ms": 3,
		"ratio_per_s": 1, "ratio_per_s_per_core": 1.25, "ratio_cpu_us_per_write": 0.8,
		"ratio_per_s_64": 0.8, "ratio_per_s_per_core_64": 1.25, "ratio_cpu_us_per_write_64": 0.8,
	}
	for name, w := range want {
		if v, ok := got[0].get(name); !ok || math.Abs(v-w) > 1e-9 {
			t.Errorf("%s = %v (%v), want %v", name, v, ok, w)
		}
	}
	if len(got[0].Metrics) != len(want) {
		t.Errorf("metrics %+v, want %d", got[0].Metrics, len(want))
	}

	// Without our rows there is nothing to compare.
	if r := peerRatios(comparedRows()[4:]); len(r) != 0 {
		t.Fatalf("ratio rows without ours: %+v", r)
	}
}

func TestWriteSideBySide(t *testing.T) {
	var b bytes.Buffer
	if err := writeSideBySide(&b, comparedRows()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"ours  nats-kv-file  ours/peer", "3     1.50          2\n", "5000  4000          1.25", "200   250           0.80"} {
		if !strings.Contains(out, want) {
			t.Errorf("side by side lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "nats-kv-memory") || strings.Contains(out, "skipped") {
		t.Errorf("failed or skipped peer rows shown:\n%s", out)
	}
	if strings.Contains(out, "ours: run with") {
		t.Errorf("hint shown with every figure of ours present:\n%s", out)
	}

	b.Reset()
	if err := writeSideBySide(&b, comparedRows()[4:]); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "ours: run with -scenarios peer,write_to_all,throughput") {
		t.Errorf("no hint without our rows:\n%s", b.String())
	}

	b.Reset()
	if err := writeSideBySide(&b, comparedRows()[:4]); err != nil || b.Len() != 0 {
		t.Fatalf("side by side without peer rows: %q, %v", b.String(), err)
	}
}

// testNATSServer returns a nats-server to run: $BENCH_NATS_SERVER or the
// one a bench run built into the cache folder. Tests never build one (it
// takes a minute and the network), so without either they skip; with
// CI=true they fail, since .ci/run builds it first with a quick peer run.
func testNATSServer(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(natsServerEnv); p != "" {
		return p
	}
	p, err := natsServerCached()
	if err == nil {
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no nats-server with CI=true (.ci/run builds it with go run ./scripts/bench -quick -scenarios peer): %v", err)
	}
	t.Skipf("no nats-server (set %s, or run go run ./scripts/bench -quick -scenarios peer once): %v", natsServerEnv, err)
	return ""
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestNATSReplicaReads runs a real three-node cluster: a put reaches every
// replica, each replica answers for a sequence it holds and not for one
// past its end, and a whole-replica scan crosses batch boundaries and
// finds every key exactly once.
func TestNATSReplicaReads(t *testing.T) {
	bin := testNATSServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	c, err := startNATS(ctx, bin, peerServers, log, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	b, err := createBucket(ctx, c, jetstream.MemoryStorage)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ready(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := b.putEverywhere(ctx, "one", []byte("v"))
	if err != nil || w.all < w.api {
		t.Fatalf("putEverywhere = %+v, %v", w, err)
	}

	js, err := jetstream.New(c.conns[1])
	if err != nil {
		t.Fatal(err)
	}
	const n = 2*scanBatch + 7
	for i := range n {
		if _, err := js.PublishAsync(fmt.Sprintf("$KV.%s.k.%d", peerBucket, i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("async puts not acknowledged")
	}
	last, err := b.kvs[0].Put(ctx, "last", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	for i, nc := range c.conns {
		name := c.names[i]
		err := localcluster.Poll(ctx, 10*time.Millisecond, func() (bool, error) { return hasSeq(ctx, nc, b.stream, last) })
		if err != nil {
			t.Fatalf("%s never held sequence %d: %v", name, last, err)
		}
		if ok, err := hasSeq(ctx, nc, b.stream, last+1); ok || err != nil {
			t.Fatalf("%s: hasSeq past the end = %v, %v", name, ok, err)
		}
		seen := map[string]int{}
		if err := scanReplica(ctx, nc, b.stream, func(subject string) { seen[subject]++ }); err != nil {
			t.Fatalf("%s: scan: %v", name, err)
		}
		// warmup, one, the n async keys, last
		if len(seen) != n+3 {
			t.Errorf("%s: scan found %d keys, want %d", name, len(seen), n+3)
		}
		for k, times := range seen {
			if times != 1 {
				t.Errorf("%s: %s scanned %d times", name, k, times)
			}
		}
		for _, k := range []string{"warmup", "one", "k.0", fmt.Sprintf("k.%d", n-1), "last"} {
			if seen["$KV."+peerBucket+"."+k] != 1 {
				t.Errorf("%s: scan lacks %s", name, k)
			}
		}
	}
}

// TestOursBesideWins: a peer row holding our figures measured beside it
// (ours_<metric>) is compared with those alone, not with our own
// scenarios' rows, which ran at another time.
func TestOursBesideWins(t *testing.T) {
	rows := comparedRows()
	rows[4].set("ours_p50_ms", 0.75)
	rows[4].set("ours_cpu_us_per_write_64", 100)
	got := peerRatios(rows)
	if len(got) != 1 {
		t.Fatalf("ratio rows %+v", got)
	}
	want := map[string]float64{"ratio_p50_ms": 0.5, "ratio_cpu_us_per_write_64": 0.5, "ratio_per_s_per_core_64": 2}
	for name, w := range want {
		if v, ok := got[0].get(name); !ok || math.Abs(v-w) > 1e-9 {
			t.Errorf("%s = %v (%v), want %v", name, v, ok, w)
		}
	}
	if len(got[0].Metrics) != len(want) {
		t.Errorf("metrics %+v: figures not measured beside it were compared", got[0].Metrics)
	}
	var b bytes.Buffer
	if err := writeSideBySide(&b, rows); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(strings.Join(strings.Fields(out), " "), "read every 1 ms 0.75 1.50 0.50") || !strings.Contains(out, "ours: run with") {
		t.Errorf("side by side:\n%s", out)
	}
}
