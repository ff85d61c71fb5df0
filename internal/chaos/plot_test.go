package chaos_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/superhero-cluster/superhero/internal/chaos"
)

// plotRuns are runs whose pictures must draw: the clean scenario, one
// whose latencies span decades (a log axis) with faults never healed, and
// an empty one.
func plotRuns() map[string]chaos.Run {
	return map[string]chaos.Run{
		"clean":   cleanRun(),
		"latency": latencyRun(),
		"empty":   {},
	}
}

func TestPlotSVG(t *testing.T) {
	for name, run := range plotRuns() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "latency.svg")
			if err := chaos.Plot(run, path); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			dec := xml.NewDecoder(bytes.NewReader(data))
			root := ""
			for {
				tok, err := dec.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("not XML: %v", err)
				}
				if se, ok := tok.(xml.StartElement); ok && root == "" {
					root = se.Name.Local
				}
			}
			if root != "svg" {
				t.Errorf("root element %q, want svg", root)
			}
			if name != "empty" && !bytes.Contains(data, []byte("latency (ms)")) {
				t.Error("the y axis is not labelled")
			}
		})
	}
}

func TestPlotPNG(t *testing.T) {
	for name, run := range plotRuns() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "latency.PNG")
			if err := chaos.Plot(run, path); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
				t.Errorf("image is %v", b)
			}
		})
	}
}

func TestPlotRefusesOtherFormats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latency.pdf")
	if err := chaos.Plot(cleanRun(), path); err == nil {
		t.Fatal("a .pdf was accepted")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was left behind: %v", err)
	}
}
