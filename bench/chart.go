package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Chart colours: onramp and its peers.
var (
	colorOnramp = color.RGBA{R: 0xd9, G: 0x5f, B: 0x02, A: 0xff}
	colorPeer   = color.RGBA{R: 0x75, G: 0x70, B: 0xb3, A: 0xff}
)

// WriteCharts draws one horizontal bar chart per area with results (the
// area's first compared metric: median bars, min–max whiskers) as
// dir/<area>.svg, and returns the file names by area key.
func WriteCharts(run *Run, areas []Area, dir string) (map[string]string, error) {
	return writeCharts(run, areas, dir, ".svg")
}

// writeCharts draws in the format of ext (".svg", ".png").
func writeCharts(run *Run, areas []Area, dir, ext string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range areas {
		if len(a.Compare) == 0 {
			continue
		}
		metric := a.Compare[0]
		var names []string
		var med []float64
		var errs plotter.XErrors
		var onramp []bool
		unit := ""
		for _, s := range run.Scenarios {
			if s.Area != a.Key || s.Error != "" {
				continue
			}
			m := s.Metric(metric)
			if m == nil || m.Summary.N == 0 {
				continue
			}
			unit = m.Unit
			names = append(names, s.Label)
			med = append(med, m.Summary.Median)
			errs = append(errs, struct{ Low, High float64 }{m.Summary.Median - m.Summary.Min, m.Summary.Max - m.Summary.Median})
			onramp = append(onramp, s.Onramp)
		}
		if len(names) == 0 {
			continue
		}
		// Bottom to top reads top to bottom like the table.
		for i, j := 0, len(names)-1; i < j; i, j = i+1, j-1 {
			names[i], names[j] = names[j], names[i]
			med[i], med[j] = med[j], med[i]
			errs[i], errs[j] = errs[j], errs[i]
			onramp[i], onramp[j] = onramp[j], onramp[i]
		}
		p := plot.New()
		p.Title.Text = a.Title
		p.X.Label.Text = fmt.Sprintf("%s (%s), median of runs, whiskers min–max", metric, unit)
		p.X.Min = 0
		w := vg.Points(14)
		// One bar chart per colour, with zeros for the others' bars.
		for _, want := range []bool{true, false} {
			vals := make(plotter.Values, len(med))
			any := false
			for i := range med {
				if onramp[i] == want {
					vals[i] = med[i]
					any = true
				}
			}
			if !any {
				continue
			}
			bc, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, err
			}
			bc.Horizontal = true
			bc.LineStyle.Width = 0
			bc.Color = colorPeer
			if want {
				bc.Color = colorOnramp
			}
			p.Add(bc)
		}
		pts := make(plotter.XYs, len(med))
		maxX := 0.0
		for i := range med {
			pts[i] = plotter.XY{X: med[i], Y: float64(i)}
			maxX = math.Max(maxX, med[i]+errs[i].High)
		}
		eb, err := plotter.NewXErrorBars(struct {
			plotter.XYs
			plotter.XErrors
		}{pts, errs})
		if err != nil {
			return nil, err
		}
		p.Add(eb)
		p.X.Max = maxX * 1.05
		p.NominalY(names...)
		name := a.Key + ext
		h := vg.Points(float64(60 + 24*len(names)))
		if err := p.Save(6*vg.Inch, h, filepath.Join(dir, name)); err != nil {
			return nil, err
		}
		out[a.Key] = name
	}
	return out, nil
}
