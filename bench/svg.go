package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strings"
)

// TextWidth estimates the width in pixels of s drawn in a sans-serif font of size px,
// bold or not. It errs wide for the common fonts (DejaVu Sans, Helvetica, Arial), so a
// chart laid out with it keeps its labels inside the canvas.
func TextWidth(s string, px float64, bold bool) float64 {
	w := 0.0
	for _, r := range s {
		switch {
		case strings.ContainsRune("ijlI.,:;'|!()[] ", r):
			w += 0.4
		case strings.ContainsRune("mwMW%@", r):
			w += 1.0
		case r >= 'A' && r <= 'Z':
			w += 0.75
		case r < 128:
			w += 0.65
		default:
			w += 0.9
		}
	}
	if bold {
		w *= 1.12
	}
	return w * px
}

// svgDoc collects the elements of a chart and how far right they reach, so that the
// canvas can be made wide enough for all of them.
type svgDoc struct {
	body  strings.Builder
	right float64 // rightmost extent of anything drawn
}

const (
	svgFont   = 11 // px, the default font size
	svgMargin = 10 // px around the drawing
)

// text draws s with its anchor ("start", "middle" or "end") at x.
func (d *svgDoc) text(x, y float64, anchor string, px float64, bold bool, s string) {
	w := TextWidth(s, px, bold)
	right := x + w
	switch anchor {
	case "middle":
		right = x + w/2
	case "end":
		right = x
	}
	d.right = max(d.right, right)
	attrs := ""
	if anchor != "start" {
		attrs += fmt.Sprintf(` text-anchor="%s"`, anchor)
	}
	if px != svgFont {
		attrs += fmt.Sprintf(` font-size="%g"`, px)
	}
	if bold {
		attrs += ` font-weight="bold"`
	}
	fmt.Fprintf(&d.body, `<text x="%.1f" y="%.1f"%s>%s</text>`+"\n", x, y, attrs, html.EscapeString(s))
}

// rect draws a filled rectangle with an optional tooltip.
func (d *svgDoc) rect(x, y, w, h float64, fill, tip string) {
	d.right = max(d.right, x+w)
	if tip == "" {
		fmt.Fprintf(&d.body, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y, w, h, fill)
		return
	}
	fmt.Fprintf(&d.body, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
		x, y, w, h, fill, html.EscapeString(tip))
}

func (d *svgDoc) line(x1, y1, x2, y2 float64, stroke string) {
	d.right = max(d.right, x1, x2)
	fmt.Fprintf(&d.body, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x1, y1, x2, y2, stroke)
}

// legend draws a colour key for names starting at (x, y) and returns the y below it.
func (d *svgDoc) legend(x, y float64, names []string) float64 {
	for i, n := range names {
		d.rect(x, y, 10, 10, svgColor(i), "")
		d.text(x+14, y+9, "start", svgFont, false, n)
		x += 14 + TextWidth(n, svgFont, false) + 16
	}
	return y + 20
}

// writeTo emits the document with a canvas wide enough for everything drawn.
func (d *svgDoc) writeTo(w io.Writer, height float64) error {
	width := math.Ceil(d.right + svgMargin)
	_, err := fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="%d">`+"\n"+
		`<rect width="100%%" height="100%%" fill="white"/>`+"\n%s</svg>\n", width, math.Ceil(height), svgFont, d.body.String())
	if err != nil {
		return fmt.Errorf("writing the SVG: %w", err)
	}
	return nil
}

func svgColor(i int) string {
	colors := [...]string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"}
	return colors[i%len(colors)]
}

// svgBar is one bar of a grouped bar chart: a length as a fraction of the full scale,
// the note written after it and a tooltip.
type svgBar struct {
	series int // index of the colour and legend entry
	frac   float64
	note   string
	tip    string
}

// svgGroup is one labelled group of bars.
type svgGroup struct {
	label string
	bars  []svgBar
}

// barChart draws groups of horizontal bars under the header lines (the first one bold,
// the title) and a legend of series, with a 0–100 % axis labelled axis.
func barChart(w io.Writer, header []string, series []string, groups []svgGroup, axis string) error {
	const barH, gap, scale = 14.0, 10.0, 420.0
	var d svgDoc
	y := float64(svgMargin)
	for i, h := range header {
		px, bold := float64(svgFont), false
		if i == 0 {
			px, bold = 14, true
		}
		y += px + 4
		d.text(svgMargin, y, "start", px, bold, h)
	}
	labelW := 0.0
	for _, g := range groups {
		labelW = max(labelW, TextWidth(g.label, svgFont, false))
	}
	left := math.Ceil(svgMargin + labelW + 8)
	y = d.legend(left, y+10, series)
	top, bottom := y, y
	for _, g := range groups {
		bottom += float64(len(g.bars))*barH + gap
	}
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		x := left + f*scale
		d.line(x, top-4, x, bottom, "#ddd")
		d.text(x, bottom+13, "middle", svgFont, false, fmt.Sprintf("%.0f%%", f*100))
	}
	for _, g := range groups {
		d.text(left-6, y+float64(len(g.bars))*barH/2+4, "end", svgFont, false, g.label)
		for i, b := range g.bars {
			by := y + float64(i)*barH
			bw := min(max(b.frac, 0), 1.2) * scale
			d.rect(left, by, bw, barH-2, svgColor(b.series), b.tip)
			d.text(left+bw+4, by+barH-4, "start", svgFont, false, b.note)
		}
		y += float64(len(g.bars))*barH + gap
	}
	d.text(left, y+28, "start", svgFont, false, axis)
	return d.writeTo(w, y+28+svgMargin)
}

// WriteSVG draws kernel results as grouped horizontal bars, one group per kernel and
// shape, one bar per backend, the bar length being the fraction of the machine limit the
// kernel is bound by (the read bandwidth of the level its working set lives in, the FMA
// peak or the int8 peak); results without a known limit are drawn against the best backend's speed
// instead and marked so. The title names m's CPU and backends, the lines under it m's
// limits.
func WriteSVG(w io.Writer, rs []KernelResult, m Machine) error {
	type key struct{ kernel, shape string }
	var keys []key
	seen := map[key]bool{}
	backendSet := map[string]bool{}
	best := map[key]float64{}
	for _, r := range rs {
		k := key{r.Kernel, r.Shape}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
		backendSet[r.Backend] = true
		best[k] = max(best[k], 1/r.NsPerOp)
	}
	backendNames := append([]string(nil), m.Backends...)
	for _, b := range backendNames {
		delete(backendSet, b)
	}
	var extra []string
	for b := range backendSet {
		extra = append(extra, b)
	}
	sort.Strings(extra)
	backendNames = append(backendNames, extra...)
	if len(m.Backends) == 0 {
		m.Backends = backendNames
	}
	var groups []svgGroup
	for _, k := range keys {
		g := svgGroup{label: k.kernel + " " + k.shape}
		for i, b := range backendNames {
			for _, r := range rs {
				if r.Kernel != k.kernel || r.Shape != k.shape || r.Backend != b {
					continue
				}
				frac, note := r.PeakFrac, FormatPercent(r.PeakFrac)+" of "+r.LimitName()
				if frac == 0 {
					frac, note = (1/r.NsPerOp)/best[k], "relative to fastest"
				}
				unit := "GFLOP/s"
				if r.Bound == Int8Bound {
					unit = "GOP/s"
				}
				tip := fmt.Sprintf("%s %s on %s: %.0f ns, %.2f %s, %.2f GB/s, working set %s, %s",
					r.Kernel, r.Shape, b, r.NsPerOp, r.GFLOPS, unit, r.GBps, FormatBytes(r.WorkingSet), note)
				g.bars = append(g.bars, svgBar{series: i, frac: frac, note: note, tip: tip})
			}
		}
		groups = append(groups, g)
	}
	return barChart(w, append([]string{"lmrun bench kernels: " + m.Title()}, m.LimitLines()...), backendNames, groups,
		"fraction of the limit each kernel is bound by: read bandwidth of the level its working set lives in, FMA or int8 peak")
}

// LimitLines describes the measured limits of m in a few lines: read bandwidth per
// level, FMA and int8 peaks per backend.
func (m Machine) LimitLines() []string {
	var out []string
	var bw []string
	for _, l := range m.Levels {
		s := l.Name
		if l.SizeBytes > 0 {
			s += " (" + FormatBytes(float64(l.SizeBytes)) + ")"
		}
		s += fmt.Sprintf(" %.1f", l.ReadGBps1)
		if l.ReadGBpsN > 0 && m.Threads > 1 {
			s += fmt.Sprintf(" (%d threads %.1f)", m.Threads, l.ReadGBpsN)
		}
		bw = append(bw, s)
	}
	if len(bw) == 0 && m.ReadGBps1 > 0 {
		bw = append(bw, fmt.Sprintf("DRAM %.1f", m.ReadGBps1))
	}
	if len(bw) > 0 {
		out = append(out, "read GB/s, 1 thread: "+strings.Join(bw, " · "))
	}
	for _, p := range []struct {
		what  string
		peaks map[string]float64
	}{{"FMA peak GFLOP/s", m.PeakGFLOPS}, {"int8 peak GOP/s", m.Int8PeakGOPS}} {
		if ps := m.peaksInOrder(p.peaks); len(ps) > 0 {
			out = append(out, p.what+", 1 thread: "+strings.Join(ps, " · "))
		}
	}
	return out
}

// peaksInOrder renders peaks, by backend, as "avx2 120.5", in the order of m.Backends
// (by name when none of them has one).
func (m Machine) peaksInOrder(peaks map[string]float64) []string {
	var out []string
	for _, b := range m.Backends {
		if p, ok := peaks[b]; ok {
			out = append(out, fmt.Sprintf("%s %.1f", b, p))
		}
	}
	if len(out) == 0 {
		for b, p := range peaks {
			out = append(out, fmt.Sprintf("%s %.1f", b, p))
		}
		sort.Strings(out)
	}
	return out
}

// PeakLines describes the peaks measured per backend, a line each, in the order of
// m.Backends: "avx512: FMA 250.3 GFLOP/s, int8 1.02 TOPS (1 thread)".
func (m Machine) PeakLines() []string {
	var out []string
	for _, b := range m.Backends {
		var ps []string
		if p, ok := m.PeakGFLOPS[b]; ok {
			ps = append(ps, fmt.Sprintf("FMA %.1f GFLOP/s", p))
		}
		if p, ok := m.Int8PeakGOPS[b]; ok {
			ps = append(ps, "int8 "+FormatOps(p))
		}
		if len(ps) > 0 {
			out = append(out, fmt.Sprintf("peak %s: %s (1 thread)", b, strings.Join(ps, ", ")))
		}
	}
	return out
}

// FormatPercent renders a fraction as a percentage: whole percents, tenths below 1 %,
// "<0.1%" below that.
func FormatPercent(f float64) string {
	if f < 0.0005 {
		return "<0.1%"
	}
	if f < 0.01 {
		return fmt.Sprintf("%.1f%%", 100*f)
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}
