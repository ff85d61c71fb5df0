// Package metricstest scrapes a /metrics endpoint in tests and reads the
// samples of the Prometheus text format, as a scraper would see them.
package metricstest

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TextFormat is the Content-Type of the Prometheus text format, up to its
// parameters.
const TextFormat = "text/plain; version=0.0.4"

// Sample is one line of the text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Samples are a scrape's samples.
type Samples []Sample

// Scrape GETs url, fails the test unless it answers 200 in the text format
// (what a scraper that asks for nothing else gets), and returns its
// samples.
func Scrape(tb testing.TB, url string) Samples {
	tb.Helper()
	s, err := TryScrape(url)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TryScrape is Scrape returning the error, for polling.
func TryScrape(url string) (Samples, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, TextFormat) {
		return nil, fmt.Errorf("GET %s: Content-Type %q, want %q", url, ct, TextFormat)
	}
	return Parse(string(body))
}

// Parse reads the samples of the text format; comments are skipped.
func Parse(text string) (Samples, error) {
	var out Samples
	for i, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", i+1, line, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseLine(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	rest := line
	if i := strings.IndexAny(line, "{ "); i < 0 {
		return s, fmt.Errorf("no value")
	} else {
		s.Name, rest = line[:i], line[i:]
	}
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, ",")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, "=\"")
			if eq < 0 {
				return s, fmt.Errorf("bad labels")
			}
			name := rest[:eq]
			rest = rest[eq+2:]
			var v strings.Builder
			for {
				if rest == "" {
					return s, fmt.Errorf("unterminated label value")
				}
				c := rest[0]
				rest = rest[1:]
				if c == '"' {
					break
				}
				if c == '\\' && rest != "" {
					c, rest = rest[0], rest[1:]
					if c == 'n' {
						c = '\n'
					}
				}
				v.WriteByte(c)
			}
			s.Labels[name] = v.String()
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, err
	}
	s.Value = v
	return s, nil
}

// matches reports whether s is named name and has every label of kv
// (name, value, name, value...).
func (s Sample) matches(name string, kv []string) bool {
	if s.Name != name {
		return false
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if v, ok := s.Labels[kv[i]]; !ok || v != kv[i+1] {
			return false
		}
	}
	return true
}

// Has reports whether a sample named name has the labels kv (name,
// value, ...).
func (ss Samples) Has(name string, kv ...string) bool {
	for _, s := range ss {
		if s.matches(name, kv) {
			return true
		}
	}
	return false
}

// Value returns the sum of the samples named name that have the labels kv
// (name, value, ...): one series' value, or several summed (every outcome
// of a counter, say). It is 0 when none has them.
func (ss Samples) Value(name string, kv ...string) float64 {
	var sum float64
	for _, s := range ss {
		if s.matches(name, kv) {
			sum += s.Value
		}
	}
	return sum
}

// Names returns the metric names present, for failure messages.
func (ss Samples) Names() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s.Name)
		}
	}
	return out
}
