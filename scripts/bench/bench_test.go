package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/localcluster"
	"github.com/superhero-cluster/superhero/messages"
)

func durations(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, v := range ms {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", durations(7), 50, 7 * time.Millisecond},
		{"one value p99", durations(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100 of 1..100", hundred, 100, 100 * time.Millisecond},
		{"p1 of 1..100", hundred, 1, time.Millisecond},
		{"p50 of four is the second", durations(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of four is the last", durations(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{"p0 clamps to the first", durations(1, 2, 3), 0, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Fatalf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeSortsACopy(t *testing.T) {
	in := durations(30, 10, 20, 50, 40)
	s := summarize(in)
	want := summary{N: 5, P50: 30 * time.Millisecond, P99: 50 * time.Millisecond, Max: 50 * time.Millisecond}
	if s != want {
		t.Fatalf("summarize = %+v, want %+v", s, want)
	}
	if in[0] != 30*time.Millisecond {
		t.Fatalf("summarize reordered its input: %v", in)
	}
	if (summarize(nil) != summary{}) {
		t.Fatal("summary of nothing is not zero")
	}
}

func TestRowMetricsAndTargets(t *testing.T) {
	r := row{Scenario: "s", Protocol: "default"}
	r.set("extra", 1)
	r.setLatency(durations(2, 4, 6))
	r.set("p50_ms", 3) // replaces
	if v, _ := r.get("p50_ms"); v != 3 {
		t.Fatalf("p50_ms = %v after replacing it", v)
	}
	if r.N != 3 {
		t.Fatalf("N = %d", r.N)
	}
	var names []string
	for _, m := range r.ordered() {
		names = append(names, m.Name)
	}
	if got := strings.Join(names, ","); got != "p50_ms,p99_ms,max_ms,extra" {
		t.Fatalf("order %s: standard metrics first, then others as added", got)
	}

	r.Targets = []target{atMost("p99_ms", 10), atLeast("extra", 1)}
	if !r.met() {
		t.Fatal("targets met but row not")
	}
	r.Targets = append(r.Targets, atMost("missing", 1))
	if r.met() {
		t.Fatal("a target on a missing metric counts as met")
	}
	r.Targets = r.Targets[:2]
	r.Err = "boom"
	if r.met() {
		t.Fatal("a failed row meets its targets")
	}
	if (&row{}).met() {
		t.Fatal("a row without targets is met")
	}
}

func TestSetDropsNonFinite(t *testing.T) {
	var r row
	zero := 0.0
	r.set("ratio", 1/zero)
	r.set("nan", zero/zero)
	if len(r.Metrics) != 0 {
		t.Fatalf("non-finite values kept: %+v", r.Metrics)
	}
}

func TestNote(t *testing.T) {
	var r row
	r.note("a %d", 1)
	r.note("b")
	if r.Note != "a 1; b" {
		t.Fatalf("note %q", r.Note)
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 5000: "5000", 1.5: "1.50", 0.2249: "0.22", 12.34: "12.3", 123.6: "124", -2.5: "-2.50",
	} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
	if got := atMost("p50_ms", 10).String(); got != "p50_ms<=10" {
		t.Errorf("target %q", got)
	}
	if got := atLeast("ratio", 100).String(); got != "ratio>=100" {
		t.Errorf("target %q", got)
	}
}

func sampleRows() []row {
	ok := row{Scenario: "write_to_all", Protocol: "default", Targets: []target{atMost("p50_ms", 10), atLeast("ratio", 100)}}
	ok.setLatency(durations(3, 4, 5))
	ok.set("ratio", 250)
	ok.set("api_p50_ms", 0.5)
	miss := row{Scenario: "scale", Protocol: "default", N: 100000, Targets: []target{atMost("rss_mb", 300)}, Note: "rss_mb is city01's"}
	miss.set("rss_mb", 369)
	failed := row{Scenario: "limit", Protocol: "default", Err: "cluster start: no"}
	return []row{ok, miss, failed}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeTable(&b, sampleRows()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 6 { // header, 3 rows, note, error
		t.Fatalf("want 6 lines, got %d:\n%s", len(lines), out)
	}
	header := strings.Fields(lines[0])
	if strings.Join(header, " ") != "scenario protocol n p50_ms p99_ms max_ms ratio per_s lost bytes rss_mb other targets" {
		t.Fatalf("header %q", lines[0])
	}
	for _, want := range []string{
		"p50_ms<=10 ok, ratio>=100 ok",
		"api_p50_ms=0.50",
		"rss_mb<=300 MISS",
		"scale/default: rss_mb is city01's",
		"limit/default error: cluster start: no",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Columns line up: every row's protocol starts where the header's does.
	col := strings.Index(lines[0], "protocol")
	for _, l := range lines[1:4] {
		if !strings.HasPrefix(l[col:], "default") {
			t.Errorf("misaligned row %q", l)
		}
	}
	row := strings.Fields(lines[1])
	if row[2] != "3" || row[3] != "4" || row[6] != "250" || row[7] != "-" {
		t.Errorf("row cells %q", row)
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := writeJSON(&b, sampleRows()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want one line per row, got %d:\n%s", len(lines), b.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("line 1 is not JSON: %v\n%s", err, lines[0])
	}
	for key, want := range map[string]any{
		"scenario": "write_to_all", "protocol": "default", "n": 3.0, "p50_ms": 4.0, "ratio": 250.0, "api_p50_ms": 0.5, "met": true,
	} {
		if first[key] != want {
			t.Errorf("%s = %v, want %v", key, first[key], want)
		}
	}
	if tg, _ := first["targets"].(map[string]any); tg["p50_ms<=10"] != true || tg["ratio>=100"] != true {
		t.Errorf("targets %v", first["targets"])
	}
	if !strings.Contains(lines[0], `"p50_ms<=10":true`) {
		t.Errorf("target names are escaped: %s", lines[0])
	}
	// Keys keep the documented order.
	order := []string{`"scenario"`, `"protocol"`, `"n"`, `"p50_ms"`, `"p99_ms"`, `"max_ms"`, `"ratio"`, `"api_p50_ms"`, `"targets"`, `"met"`}
	at := -1
	for _, k := range order {
		i := strings.Index(lines[0], k)
		if i <= at {
			t.Fatalf("key %s out of order in %s", k, lines[0])
		}
		at = i
	}

	var miss, failed map[string]any
	if err := errors.Join(json.Unmarshal([]byte(lines[1]), &miss), json.Unmarshal([]byte(lines[2]), &failed)); err != nil {
		t.Fatal(err)
	}
	if miss["met"] != false || miss["note"] != "rss_mb is city01's" || miss["rss_mb"] != 369.0 {
		t.Errorf("missed row %v", miss)
	}
	if failed["error"] != "cluster start: no" {
		t.Errorf("failed row %v", failed)
	}
	for _, k := range []string{"n", "met", "targets", "p50_ms"} {
		if _, ok := failed[k]; ok {
			t.Errorf("failed row has %q, which does not apply", k)
		}
	}
}

func TestFeedCountsOnlyNewCityWrites(t *testing.T) {
	f := &feed{cities: map[string]bool{"gotham": true}, prev: map[string]localcluster.APIHero{}}
	wrote := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := wrote.Format(time.RFC3339Nano)
	recv := wrote.Add(7 * time.Millisecond)
	patrol := localcluster.APIHero{ID: "a", Location: "gotham", Patrolling: true, Health: 90, UpdatedAt: at, UpdatedBy: "gotham"}

	// A snapshot and frames before recording only set the view.
	if err := f.take("snapshot", []localcluster.APIHero{{ID: "a", Location: "gotham", Health: 90, UpdatedAt: at, UpdatedBy: "gotham"}}, recv); err != nil {
		t.Fatal(err)
	}
	f.record(true)
	frames := [][]localcluster.APIHero{
		{patrol}, // a city's write: counted
		{patrol}, // the same entry again: not a new write
		{{ID: "b", Location: "home", UpdatedAt: at, UpdatedBy: messages.DispatchName}}, // dispatch's
		{{ID: "c", Location: "gotham", UpdatedAt: at}},                                 // no updated_by: in a city, new
		{{ID: "d", Location: "home", UpdatedAt: at}},                                   // no updated_by: at home
	}
	for _, fr := range frames {
		if err := f.take("delta", fr, recv); err != nil {
			t.Fatal(err)
		}
	}
	lat, n, err := f.results()
	if err != nil || n != len(frames) {
		t.Fatalf("frames %d, err %v", n, err)
	}
	if len(lat) != 2 || lat[0] != 7*time.Millisecond || lat[1] != 7*time.Millisecond {
		t.Fatalf("latencies %v, want two of 7ms", lat)
	}
	if err := f.take("delta", []localcluster.APIHero{{ID: "e", Location: "gotham", UpdatedAt: "yesterday"}}, recv); err == nil {
		t.Fatal("a bad updated_at was accepted")
	}
}

func TestStall(t *testing.T) {
	s := stall{d: 20 * time.Millisecond}
	if s.check(1) != nil || s.check(2) != nil {
		t.Fatal("progress reported as a stall")
	}
	time.Sleep(30 * time.Millisecond)
	if err := s.check(2); !errors.Is(err, errStalled) {
		t.Fatalf("no progress for longer than d: %v", err)
	}
	if s.check(3) != nil {
		t.Fatal("new progress still a stall")
	}
}

func TestSelectScenarios(t *testing.T) {
	all, err := selectScenarios("", false)
	if err != nil || len(all) != len(scenarios) {
		t.Fatalf("all: %v %v", all, err)
	}
	some, err := selectScenarios("limit, write_to_all", false)
	if err != nil || strings.Join(some, ",") != "limit,write_to_all" {
		t.Fatalf("some: %v %v", some, err)
	}
	quick, err := selectScenarios("", true)
	if err != nil || slices.Contains(quick, "peer") || len(quick) != len(scenarios)-1 {
		t.Fatalf("a -quick run builds no nats-server unless asked: %v %v", quick, err)
	}
	if named, err := selectScenarios("peer", true); err != nil || strings.Join(named, ",") != "peer" {
		t.Fatalf("-quick -scenarios peer: %v %v", named, err)
	}
	if _, err := selectScenarios("limit,nope", false); err == nil {
		t.Fatal("unknown scenario accepted")
	}
}
