package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// summary describes a set of latencies.
type summary struct {
	N             int
	P50, P99, Max time.Duration
}

// summarize returns the nearest-rank percentiles of ds (not modified).
func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return summary{N: len(s), P50: percentile(s, 50), P99: percentile(s, 99), Max: s[len(s)-1]}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted: the smallest value with at least p% of the values at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ms converts d to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// metric is one named figure of a row.
type metric struct {
	Name  string
	Value float64
}

// target is a goal for one metric: at most Limit when AtMost, else at least.
type target struct {
	Metric string
	AtMost bool
	Limit  float64
}

func (t target) String() string {
	op := ">="
	if t.AtMost {
		op = "<="
	}
	return t.Metric + op + formatValue(t.Limit)
}

// met reports whether r meets t; a missing metric does not.
func (t target) met(r *row) bool {
	v, ok := r.get(t.Metric)
	if !ok {
		return false
	}
	if t.AtMost {
		return v <= t.Limit
	}
	return v >= t.Limit
}

func atMost(m string, limit float64) target  { return target{Metric: m, AtMost: true, Limit: limit} }
func atLeast(m string, limit float64) target { return target{Metric: m, Limit: limit} }

// row is the result of one scenario in one protocol.
type row struct {
	Scenario string
	Protocol string
	N        int
	Metrics  []metric
	Targets  []target
	Note     string
	Err      string
}

// standard are the metrics with a column of their own in the table, in
// output order; others follow them.
var standard = []string{"p50_ms", "p99_ms", "max_ms", "ratio", "per_s", "lost", "bytes", "rss_mb"}

// set records a metric, replacing an earlier value. Non-finite values are
// dropped: they have no JSON form.
func (r *row) set(name string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	if i := slices.IndexFunc(r.Metrics, func(m metric) bool { return m.Name == name }); i >= 0 {
		r.Metrics[i].Value = v
		return
	}
	r.Metrics = append(r.Metrics, metric{name, v})
}

func (r *row) get(name string) (float64, bool) {
	if i := slices.IndexFunc(r.Metrics, func(m metric) bool { return m.Name == name }); i >= 0 {
		return r.Metrics[i].Value, true
	}
	return 0, false
}

// setLatency records the count and the p50, p99 and max of ds.
func (r *row) setLatency(ds []time.Duration) {
	s := summarize(ds)
	r.N = s.N
	if s.N == 0 {
		return
	}
	r.set("p50_ms", ms(s.P50))
	r.set("p99_ms", ms(s.P99))
	r.set("max_ms", ms(s.Max))
}

// note appends a remark.
func (r *row) note(format string, args ...any) {
	if r.Note != "" {
		r.Note += "; "
	}
	r.Note += fmt.Sprintf(format, args...)
}

// met reports whether every target is met; false without targets.
func (r *row) met() bool {
	if len(r.Targets) == 0 || r.Err != "" {
		return false
	}
	for _, t := range r.Targets {
		if !t.met(r) {
			return false
		}
	}
	return true
}

// ordered returns the metrics, standard ones first.
func (r *row) ordered() []metric {
	out := make([]metric, 0, len(r.Metrics))
	for _, name := range standard {
		if v, ok := r.get(name); ok {
			out = append(out, metric{name, v})
		}
	}
	for _, m := range r.Metrics {
		if !slices.Contains(standard, m.Name) {
			out = append(out, m)
		}
	}
	return out
}

// formatValue prints v with about three significant digits.
func formatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e15:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// writeTable prints rows as an aligned table, then the notes and errors.
func writeTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tprotocol\tn\t"+strings.Join(standard, "\t")+"\tother\ttargets")
	var foot []string
	for i := range rows {
		r := &rows[i]
		cells := []string{r.Scenario, r.Protocol, dash(r.N > 0, fmt.Sprint(r.N))}
		for _, name := range standard {
			v, ok := r.get(name)
			cells = append(cells, dash(ok, formatValue(v)))
		}
		var other []string
		for _, m := range r.ordered() {
			if !slices.Contains(standard, m.Name) {
				other = append(other, m.Name+"="+formatValue(m.Value))
			}
		}
		if r.Err != "" {
			other = append(other, "ERROR")
		}
		cells = append(cells, dash(len(other) > 0, strings.Join(other, " ")), targets(r))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
		if r.Err != "" {
			foot = append(foot, fmt.Sprintf("%s/%s error: %s", r.Scenario, r.Protocol, r.Err))
		}
		if r.Note != "" {
			foot = append(foot, fmt.Sprintf("%s/%s: %s", r.Scenario, r.Protocol, r.Note))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range foot {
		if _, err := fmt.Fprintln(w, "  "+f); err != nil {
			return err
		}
	}
	return nil
}

func dash(ok bool, s string) string {
	if !ok {
		return "-"
	}
	return s
}

// targets renders a row's targets as "p50_ms<=10 ok, p99_ms<=50 MISS".
func targets(r *row) string {
	if len(r.Targets) == 0 {
		return "-"
	}
	parts := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		verdict := "MISS"
		if t.met(r) && r.Err == "" {
			verdict = "ok"
		}
		parts[i] = t.String() + " " + verdict
	}
	return strings.Join(parts, ", ")
}

// writeJSON prints one JSON object per row and line: scenario, protocol,
// n, the metrics (standard ones first), then targets (each name to whether
// it is met), met, note and error where they apply.
func writeJSON(w io.Writer, rows []row) error {
	for i := range rows {
		b, err := rowJSON(&rows[i])
		if err != nil {
			return err
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

func rowJSON(r *row) ([]byte, error) {
	var buf bytes.Buffer
	first := true
	add := func(key string, v any) error {
		k, err := marshal(key)
		if err != nil {
			return err
		}
		val, err := marshal(v)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(val)
		return nil
	}
	buf.WriteByte('{')
	fields := []struct {
		key  string
		val  any
		keep bool
	}{
		{"scenario", r.Scenario, true},
		{"protocol", r.Protocol, true},
		{"n", r.N, r.N > 0},
	}
	for _, f := range fields {
		if f.keep {
			if err := add(f.key, f.val); err != nil {
				return nil, err
			}
		}
	}
	for _, m := range r.ordered() {
		if err := add(m.Name, m.Value); err != nil {
			return nil, err
		}
	}
	if len(r.Targets) > 0 {
		// Targets keep their order: an object built by hand.
		var tb bytes.Buffer
		tb.WriteByte('{')
		for i, t := range r.Targets {
			k, _ := marshal(t.String())
			if i > 0 {
				tb.WriteByte(',')
			}
			fmt.Fprintf(&tb, "%s:%t", k, t.met(r) && r.Err == "")
		}
		tb.WriteByte('}')
		if err := add("targets", json.RawMessage(tb.Bytes())); err != nil {
			return nil, err
		}
		if err := add("met", r.met()); err != nil {
			return nil, err
		}
	}
	if r.Note != "" {
		if err := add("note", r.Note); err != nil {
			return nil, err
		}
	}
	if r.Err != "" {
		if err := add("error", r.Err); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// marshal is json.Marshal without HTML escaping, so "<=" stays readable.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
