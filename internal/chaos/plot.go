package chaos

import (
	"bytes"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// minPlotLatency is the smallest latency plotted, in milliseconds: a log
// axis cannot show zero, and nothing faster is meaningful.
const minPlotLatency = 0.001

// kindColors gives each operation kind its colour; other kinds get grey.
var kindColors = map[Kind]color.NRGBA{
	KindCreate:    {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	KindAssign:    {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	KindTerminate: {R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	KindRead:      {R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	KindList:      {R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
	KindCityRead:  {R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}, // brown
}

// faultColors shade fault windows, one translucent colour per fault kind
// in order of first appearance. NRGBA: the alpha is not premultiplied.
var faultColors = []color.NRGBA{
	{R: 0xff, G: 0x00, B: 0x00, A: 0x30},
	{R: 0x00, G: 0x60, B: 0xff, A: 0x30},
	{R: 0xff, G: 0xb0, B: 0x00, A: 0x38},
	{R: 0x00, G: 0xa0, B: 0x40, A: 0x30},
	{R: 0xa0, G: 0x00, B: 0xff, A: 0x30},
	{R: 0x60, G: 0x60, B: 0x60, A: 0x30},
}

// outcomeGlyphs gives each completed outcome its shape.
var outcomeGlyphs = map[Outcome]draw.GlyphDrawer{
	OK:      draw.CircleGlyph{},
	Fail:    draw.CrossGlyph{},
	Unknown: draw.TriangleGlyph{},
}

// Plot draws the run's latency over time to path: one point per completed
// operation at x = its invocation time in seconds and y = its latency in
// milliseconds, coloured by kind and shaped by outcome (circle ok, cross
// fail, triangle unknown), over the fault windows shaded by kind. The y
// axis is logarithmic when latencies span two decades or more. The format
// follows path's extension, .svg or .png; the file is written only once
// the picture is drawn.
func Plot(run Run, path string) error {
	format := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	if format != "svg" && format != "png" {
		return fmt.Errorf("chaos: plot %s: want a .svg or .png file", path)
	}
	p, err := latencyPlot(run)
	if err != nil {
		return fmt.Errorf("chaos: plot: %w", err)
	}
	wt, err := p.WriterTo(10*vg.Inch, 5*vg.Inch, format)
	if err != nil {
		return fmt.Errorf("chaos: plot: %w", err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return fmt.Errorf("chaos: plot: %w", err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// latencyPlot builds the picture Plot draws.
func latencyPlot(run Run) (*plot.Plot, error) {
	ops, _ := pairOperations(run.History)
	type series struct {
		kind    Kind
		outcome Outcome
	}
	points := map[series]plotter.XYs{}
	var kinds []Kind
	lo, hi := 0.0, 0.0
	for _, o := range ops {
		if o.open {
			continue
		}
		y := max(float64(o.done-o.invoke)/float64(time.Millisecond), minPlotLatency)
		if len(points) == 0 || y < lo {
			lo = y
		}
		hi = max(hi, y)
		s := series{o.kind, o.outcome}
		if _, ok := points[s]; !ok && !slices.Contains(kinds, o.kind) {
			kinds = append(kinds, o.kind)
		}
		points[s] = append(points[s], plotter.XY{X: o.invoke.Seconds(), Y: y})
	}
	sortKinds(kinds)

	p := plot.New()
	p.Title.Text = fmt.Sprintf("chaos soak, seed %d: latency of each operation (circle ok, cross fail, triangle unknown)", run.Seed)
	p.X.Label.Text = "invoked at (s)"
	p.Y.Label.Text = "latency (ms)"
	p.Legend.Top = true
	logY := len(points) > 0 && hi/lo >= 100
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	end := runEnd(run).Seconds()
	if len(points) == 0 {
		lo, hi = 0, 1
	}
	p.X.Min, p.X.Max = 0, max(end, 1)
	p.Y.Min, p.Y.Max = lo, hi

	// Fault windows first, so that the points are drawn over them. Each
	// kind has one colour and one legend entry.
	var faultKinds []string
	for _, f := range run.Faults {
		i := slices.Index(faultKinds, f.Kind)
		first := i < 0
		if first {
			faultKinds = append(faultKinds, f.Kind)
			i = len(faultKinds) - 1
		}
		x0, x1 := f.Start.Seconds(), f.End.Seconds()
		if f.End == 0 {
			x1 = end
		}
		poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: lo}, {X: x1, Y: lo}, {X: x1, Y: hi}, {X: x0, Y: hi}})
		if err != nil {
			return nil, err
		}
		poly.Color = faultColors[i%len(faultColors)]
		poly.LineStyle.Width, poly.LineStyle.Color = 0, color.Transparent
		p.Add(poly)
		if first {
			p.Legend.Add("fault: "+f.Kind, poly)
		}
	}

	for _, k := range kinds {
		c, ok := kindColors[k]
		if !ok {
			c = color.NRGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xff}
		}
		legend := false
		for _, out := range []Outcome{OK, Fail, Unknown} {
			xys := points[series{k, out}]
			if len(xys) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(1.5), Shape: outcomeGlyphs[out]}
			p.Add(sc)
			if !legend {
				p.Legend.Add(string(k), sc)
				legend = true
			}
		}
	}
	return p, nil
}
