package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChaosNet runs a short chaos soak in the network lab (scripts/chaos
// -net) as its own process: a host per node, etcd and mutual TLS, clients
// and the member agent in a namespace of their own, the nemesis's network
// faults among the others. Seed 3's schedule starts with a split that
// leaves etcd with the minority, then a bomb and a skewed clock (its
// 25 s of faults hold no more). The checker must find no anomaly, the replicas must converge
// within the heal period, and the run must have held network faults (else
// it proved nothing of -net).
func TestChaosNet(t *testing.T) {
	requireLab(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "chaos"), "./scripts/chaos")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build scripts/chaos: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "out")
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "chaos"), "-net", "-json",
		"-duration", "40s", "-heal", "15s", "-seed", "3", "-rate", "100", "-clients", "6",
		"-out", out, "-bin", filepath.Join(dir, "bin"))
	cmd.Dir = ".."
	// Out of time, chaos is interrupted, so it still removes its lab.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	defer func() {
		if t.Failed() {
			t.Logf("chaos's log:\n%s", lastLines(stderr.String(), 80))
			t.Logf("node logs in %s (kept in the test's temporary directory until it ends)", filepath.Join(out, "lab"))
		}
	}()
	var sum struct {
		OK        bool    `json:"ok"`
		Unknown   int     `json:"unknown"`
		Converged bool    `json:"converged"`
		ConvergeS float64 `json:"converge_s"`
		Ops       []struct {
			Kind    string `json:"kind"`
			Invoked int    `json:"invoked"`
			OK      int    `json:"ok"`
		} `json:"ops"`
		Faults []struct {
			Kind  string `json:"kind"`
			Count int    `json:"count"`
		} `json:"faults"`
		Anomalies []json.RawMessage `json:"anomalies"`
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &sum); jerr != nil {
		t.Fatalf("chaos -net: %v; no JSON summary (%v): %q", err, jerr, stdout.String())
	}
	if err != nil || !sum.OK || len(sum.Anomalies) > 0 || !sum.Converged {
		t.Fatalf("chaos -net: exit %v, ok %v, converged %v, anomalies:\n%s", err, sum.OK, sum.Converged, stdout.String())
	}
	faults := map[string]int{}
	for _, f := range sum.Faults {
		faults[f.Kind] = f.Count
	}
	if faults["split"] == 0 {
		t.Fatalf("the soak held no split: %v", faults)
	}
	acked := 0
	for _, o := range sum.Ops {
		if o.Kind == "create" {
			acked = o.OK
		}
	}
	if acked < 100 {
		t.Fatalf("only %d acknowledged creates: the workload hardly ran", acked)
	}
	t.Logf("FIGURE chaos -net, 40 s, seed 3: faults %v, %d acknowledged creates, %d unknown outcomes, converged %.2f s after the last heal",
		faults, acked, sum.Unknown, sum.ConvergeS)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
