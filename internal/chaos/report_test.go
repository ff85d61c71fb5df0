package chaos_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/chaos"
)

// latencyRun has 100 reads outside any fault taking 1..100 ms, 10 reads
// inside a partition taking 100..1000 ms (failed: answered, so timed), a
// create invoked at the very end of the partition (inside: windows are
// closed), a read that timed out inside it (unknown: not timed), and two
// faults still going at the end.
func latencyRun() chaos.Run {
	var specs []spec
	for i := 1; i <= 100; i++ {
		specs = append(specs, spec{kind: chaos.KindRead, out: chaos.OK, inv: 0.1 * float64(i), done: 0.1*float64(i) + float64(i)/1000, hero: heroA})
	}
	for i := 1; i <= 10; i++ {
		specs = append(specs, spec{kind: chaos.KindRead, out: chaos.Fail, status: 404, inv: 20 + float64(i)/2, done: 20 + float64(i)/2 + float64(i)/10, hero: heroA})
	}
	specs = append(specs,
		spec{kind: chaos.KindCreate, out: chaos.OK, inv: 30, done: 30.002, hero: heroA},
		spec{kind: chaos.KindRead, out: chaos.Unknown, inv: 21, done: 26, hero: heroA},
	)
	return chaos.Run{
		History: build(specs),
		Faults: []chaos.Fault{
			{Kind: "partition", Targets: []string{"gotham"}, Start: sec(20), End: sec(30)},
			{Kind: "partition", Targets: []string{"capitol"}, Start: sec(35)},
			{Kind: "sigstop", Targets: []string{"metropolis"}, Start: sec(38)},
		},
		LastHeal: sec(30),
		Finals:   []chaos.Final{{Replica: "dispatch", At: sec(40)}},
	}
}

func TestLatencyInsideAndOutsideFaults(t *testing.T) {
	rep := chaos.Check(latencyRun(), chaos.CheckConfig{Replicas: []string{"dispatch"}})
	ms := time.Millisecond
	want := []chaos.LatencyStat{
		{Kind: chaos.KindCreate, Inside: true, Count: 1, P50: 2 * ms, P99: 2 * ms, Max: 2 * ms},
		{Kind: chaos.KindRead, Inside: false, Count: 100, P50: 50 * ms, P99: 99 * ms, Max: 100 * ms},
		{Kind: chaos.KindRead, Inside: true, Count: 10, P50: 500 * ms, P99: 1000 * ms, Max: 1000 * ms},
	}
	if len(rep.Latency) != len(want) {
		t.Fatalf("latency %+v, want %+v", rep.Latency, want)
	}
	for i := range want {
		got := rep.Latency[i]
		// Times in seconds as float64 are off by a nanosecond or so.
		near := func(a, b time.Duration) bool { return (a - b).Abs() < time.Microsecond }
		if got.Kind != want[i].Kind || got.Inside != want[i].Inside || got.Count != want[i].Count ||
			!near(got.P50, want[i].P50) || !near(got.P99, want[i].P99) || !near(got.Max, want[i].Max) {
			t.Errorf("latency[%d] = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestFaultStats(t *testing.T) {
	rep := chaos.Check(latencyRun(), chaos.CheckConfig{Replicas: []string{"dispatch"}})
	// The run ends with the Final at 40 s: the open partition lasts 5 s,
	// the open sigstop 2 s.
	want := []chaos.FaultStat{
		{Kind: "partition", Count: 2, Total: 15 * time.Second},
		{Kind: "sigstop", Count: 1, Total: 2 * time.Second},
	}
	if fmt.Sprint(rep.Faults) != fmt.Sprint(want) {
		t.Errorf("faults %+v, want %+v", rep.Faults, want)
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := chaos.Check(cleanRun(), chaos.CheckConfig{}).Table(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"seed 42: PASS: no anomaly",
		"operation  invoked  ok  fail  unknown  of which open",
		"create     4        3   0     1        0",
		"read       5        4   0     1        1",
		"partition  2      3.5s",
		"anomalies: none",
		"converged 0.50s after the last heal at 9.00s (bound 10s)",
		"latency (ms)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	// Seven heroes lost on capitol: five shown in full, then a count.
	run := cleanRun()
	var specs []spec
	for i := range 7 {
		id := fmt.Sprintf("e5e5e5e5-0000-4000-8000-00000000001%d", i)
		specs = append(specs, spec{kind: chaos.KindCreate, out: chaos.OK, inv: 0.5, done: 0.51, hero: id,
			heroes: heroes(live(id, "home", 100, 1500+int64(i), "dispatch"))})
		for _, r := range []string{"dispatch", "gotham", "metropolis"} {
			h := live(id, "home", 100, 1500+int64(i), "dispatch")
			run.Finals = setFinal(run.Finals, r, id, &h)
		}
	}
	run.History = build(append(cleanSpecs(), specs...))
	rep := chaos.Check(run, chaos.CheckConfig{})
	b.Reset()
	if err := rep.Table(&b); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	for _, want := range []string{"FAIL: 7 anomalies", "lost_create  7", "  - lost_create at 11.3s op", "  ... and 2 more lost_create"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "  - lost_create"); n != 5 {
		t.Errorf("%d lost creates shown in full, want 5:\n%s", n, out)
	}
}

func TestSummaryJSON(t *testing.T) {
	run := cleanRun()
	run.Finals = setFinal(run.Finals, "capitol", heroA, nil)
	run.Converged = 0
	data, err := json.Marshal(chaos.Check(run, chaos.CheckConfig{}).Summary())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		OK        bool `json:"ok"`
		Seed      uint64
		Unknown   int
		Converged bool
		Ops       []struct{ Kind, Invoked, OK any }
		Faults    []struct {
			Kind   string
			Count  int
			TotalS float64 `json:"total_s"`
		}
		Anomalies []struct {
			Kind     string
			Count    int
			Examples []struct{ Kind, Hero, Replica, Detail string }
		}
		Latency []struct {
			Kind, Window string
			P50Ms        float64 `json:"p50_ms"`
		}
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	if got.OK || got.Seed != 42 || got.Unknown != 3 || got.Converged || len(got.Ops) != 6 {
		t.Errorf("summary %s", data)
	}
	if len(got.Faults) != 1 || got.Faults[0].Kind != "partition" || got.Faults[0].Count != 2 || got.Faults[0].TotalS != 3.5 {
		t.Errorf("faults %+v", got.Faults)
	}
	if len(got.Anomalies) != 2 || got.Anomalies[0].Kind != "lost_create" || got.Anomalies[0].Count != 1 ||
		got.Anomalies[0].Examples[0].Hero != heroA || got.Anomalies[0].Examples[0].Replica != "capitol" ||
		got.Anomalies[1].Kind != "never_converged" {
		t.Errorf("anomalies %+v", got.Anomalies)
	}
	windows := map[string]bool{}
	for _, l := range got.Latency {
		windows[l.Window] = true
	}
	if !windows["inside_faults"] || !windows["outside_faults"] || len(windows) != 2 {
		t.Errorf("latency windows %v", windows)
	}
}
