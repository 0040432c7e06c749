package bench

import (
	"fmt"
	"html"
	"io"
	"sort"
)

// WriteSVG draws kernel results as grouped horizontal bars, one group per kernel and
// shape, one bar per backend, the bar length being the fraction of the machine limit the
// kernel is bound by (read bandwidth or FMA peak); results without a known limit are
// drawn against the best backend's speed instead and marked so.
func WriteSVG(w io.Writer, rs []KernelResult, title string) error {
	type key struct{ kernel, shape string }
	var groups []key
	seen := map[key]bool{}
	backendSet := map[string]bool{}
	best := map[key]float64{}
	for _, r := range rs {
		k := key{r.Kernel, r.Shape}
		if !seen[k] {
			seen[k] = true
			groups = append(groups, k)
		}
		backendSet[r.Backend] = true
		best[k] = max(best[k], 1/r.NsPerOp)
	}
	var backendNames []string
	for b := range backendSet {
		backendNames = append(backendNames, b)
	}
	sort.Strings(backendNames)
	colors := []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"}
	const left, barH, gap, width = 260, 14, 10, 420
	height := 60 + len(groups)*(len(backendNames)*barH+gap) + 30
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", left+width+140, height)
	p(`<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	for i, b := range backendNames {
		p(`<rect x="%d" y="30" width="10" height="10" fill="%s"/><text x="%d" y="39">%s</text>`+"\n", left+i*90, colors[i%len(colors)], left+14+i*90, html.EscapeString(b))
	}
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		x := left + int(f*width)
		p(`<line x1="%d" y1="50" x2="%d" y2="%d" stroke="#ddd"/><text x="%d" y="%d" text-anchor="middle">%.0f%%</text>`+"\n", x, x, height-25, x, height-12, f*100)
	}
	y := 55
	for _, g := range groups {
		p(`<text x="%d" y="%d" text-anchor="end">%s %s</text>`+"\n", left-6, y+len(backendNames)*barH/2+4, html.EscapeString(g.kernel), html.EscapeString(g.shape))
		for i, b := range backendNames {
			for _, r := range rs {
				if r.Kernel != g.kernel || r.Shape != g.shape || r.Backend != b {
					continue
				}
				frac, note := r.PeakFrac, fmt.Sprintf("%.0f%% of %s", r.PeakFrac*100, map[Bound]string{BandwidthBound: "read BW", ComputeBound: "FMA peak"}[r.Bound])
				if frac == 0 {
					frac, note = (1/r.NsPerOp)/best[g], "relative to fastest"
				}
				p(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s on %s: %.0f ns, %.2f GFLOP/s, %.2f GB/s, %s</title></rect>`+"\n",
					left, y+i*barH, min(frac, 1.2)*width, barH-2, colors[i%len(colors)], html.EscapeString(r.Kernel), html.EscapeString(r.Shape), html.EscapeString(b), r.NsPerOp, r.GFLOPS, r.GBps, note)
				p(`<text x="%.1f" y="%d">%s</text>`+"\n", float64(left)+min(frac, 1.2)*width+4, y+i*barH+barH-4, html.EscapeString(note))
			}
		}
		y += len(backendNames)*barH + gap
	}
	p("</svg>\n")
	return nil
}
