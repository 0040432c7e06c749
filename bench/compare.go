package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// KernelReportKind is the kind field of the JSON lmrun bench kernels writes.
const KernelReportKind = "lmrun bench kernels"

// KernelReport is what lmrun bench kernels --json writes and lmrun bench compare reads:
// the machine measured and every result.
type KernelReport struct {
	Kind    string         `json:"kind"`
	Machine Machine        `json:"machine"`
	Results []KernelResult `json:"results"`
}

// ReadKernelReport reads the output of lmrun bench kernels --json from path, refusing
// other JSON (bench model's, bench serve's) with an error that says so.
func ReadKernelReport(path string) (KernelReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return KernelReport{}, fmt.Errorf("reading kernel results: %w", err)
	}
	return ParseKernelReport(b, path)
}

// ParseKernelReport parses the output of lmrun bench kernels --json; name says where
// it came from in errors.
func ParseKernelReport(b []byte, name string) (KernelReport, error) {
	notKernels := func(why string) error {
		return fmt.Errorf("%s is not the output of lmrun bench kernels --json: %s", name, why)
	}
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return KernelReport{}, notKernels("it is empty")
	case b[0] == '[':
		return KernelReport{}, notKernels("it is a JSON array (lmrun bench model --json writes those)")
	case b[0] != '{':
		return KernelReport{}, notKernels("it is not a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return KernelReport{}, notKernels(fmt.Sprintf("invalid JSON: %v", err))
	}
	if _, ok := fields["results"]; !ok {
		return KernelReport{}, notKernels("it has no \"results\"")
	}
	var r KernelReport
	if err := json.Unmarshal(b, &r); err != nil {
		return KernelReport{}, notKernels(err.Error())
	}
	if r.Kind != "" && r.Kind != KernelReportKind {
		return KernelReport{}, notKernels(fmt.Sprintf("its kind is %q", r.Kind))
	}
	if len(r.Results) == 0 {
		return KernelReport{}, notKernels("it has no results")
	}
	for i, res := range r.Results {
		if res.Kernel == "" || res.Backend == "" || !(res.NsPerOp > 0) {
			return KernelReport{}, notKernels(fmt.Sprintf("result %d lacks a kernel, a backend or a time", i))
		}
	}
	return r, nil
}

// CompareColumn is one input of a comparison: a file and the machine it measured.
type CompareColumn struct {
	Label   string  `json:"label"` // CPU model and architecture, else the file name
	File    string  `json:"file"`
	Machine Machine `json:"machine"`
}

// CompareCell is one machine's result in one row; NsPerOp is 0 when the file lacks it.
type CompareCell struct {
	Backend  string  `json:"backend,omitempty"`
	NsPerOp  float64 `json:"ns_per_op,omitempty"`
	GFLOPS   float64 `json:"gflops,omitempty"`
	GBps     float64 `json:"gbps,omitempty"`
	PeakFrac float64 `json:"fraction_of_peak,omitempty"`
	Level    string  `json:"level,omitempty"`
	Speedup  float64 `json:"speedup_vs_first,omitempty"` // the first machine's time over this one's
}

// CompareRow is one kernel at one shape (and one backend, when comparing them all).
type CompareRow struct {
	Kernel  string        `json:"kernel"`
	Shape   string        `json:"shape"`
	Backend string        `json:"backend,omitempty"` // empty: each cell holds its machine's fastest backend
	Bound   Bound         `json:"bound"`
	Cells   []CompareCell `json:"cells"` // one per column
}

// Comparison lays the kernel results of several machines side by side.
type Comparison struct {
	Columns []CompareColumn `json:"columns"`
	Rows    []CompareRow    `json:"rows"`
}

// Compare matches the results of reports (read from files, which name them) by kernel
// and shape: each cell holds its machine's fastest backend, or, with allBackends, one row
// per backend. It fails when no kernel and shape was measured in every report.
func Compare(files []string, reports []KernelReport, allBackends bool) (Comparison, error) {
	if len(files) != len(reports) {
		return Comparison{}, fmt.Errorf("compare: %d files for %d reports", len(files), len(reports))
	}
	if len(reports) == 0 {
		return Comparison{}, errors.New("compare: no results to compare")
	}
	var c Comparison
	labels := map[string]int{}
	for i, r := range reports {
		col := CompareColumn{Label: r.Machine.Label(), File: files[i], Machine: r.Machine}
		if col.Label == "" {
			col.Label = filepath.Base(files[i])
		}
		labels[col.Label]++
		c.Columns = append(c.Columns, col)
	}
	for i := range c.Columns {
		if l := c.Columns[i].Label; labels[l] > 1 && l != filepath.Base(files[i]) {
			c.Columns[i].Label = l + " (" + filepath.Base(files[i]) + ")"
		}
	}
	type key struct{ kernel, shape, backend string }
	index := map[key]int{}
	inAll := map[key]int{} // kernel and shape: how many reports have them
	for i, rep := range reports {
		counted := map[key]bool{}
		for _, r := range rep.Results {
			ks := key{r.Kernel, r.Shape, ""}
			if !counted[ks] {
				counted[ks] = true
				inAll[ks]++
			}
			k := ks
			if allBackends {
				k.backend = r.Backend
			}
			row, ok := index[k]
			if !ok {
				row = len(c.Rows)
				index[k] = row
				c.Rows = append(c.Rows, CompareRow{Kernel: r.Kernel, Shape: r.Shape, Backend: k.backend, Bound: r.Bound,
					Cells: make([]CompareCell, len(reports))})
			}
			cell := &c.Rows[row].Cells[i]
			if cell.NsPerOp == 0 || r.NsPerOp < cell.NsPerOp {
				*cell = CompareCell{Backend: r.Backend, NsPerOp: r.NsPerOp, GFLOPS: r.GFLOPS, GBps: r.GBps, PeakFrac: r.PeakFrac, Level: r.Level}
			}
		}
	}
	common := 0
	for _, n := range inAll {
		if n == len(reports) {
			common++
		}
	}
	if common == 0 {
		return Comparison{}, errors.New("compare: no kernel and shape was measured in every file")
	}
	for ri := range c.Rows {
		first := c.Rows[ri].Cells[0].NsPerOp
		for ci := range c.Rows[ri].Cells {
			if cell := &c.Rows[ri].Cells[ci]; first > 0 && cell.NsPerOp > 0 {
				cell.Speedup = first / cell.NsPerOp
			}
		}
	}
	return c, nil
}

// FormatNs renders nanoseconds as ns, µs, ms or s with three significant digits.
func FormatNs(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%.3g s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.3g ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.3g µs", ns/1e3)
	}
	return fmt.Sprintf("%.3g ns", ns)
}

// throughput renders a cell's rate in the unit its row is bound by.
func (cell CompareCell) throughput(b Bound) string {
	switch b {
	case ComputeBound:
		return fmt.Sprintf("%.1f GFLOP/s", cell.GFLOPS)
	case Int8Bound:
		return fmt.Sprintf("%.1f GOP/s", cell.GFLOPS)
	}
	return fmt.Sprintf("%.1f GB/s", cell.GBps)
}

// text renders a cell for a table: time, backend (unless the row names it), rate.
func (cell CompareCell) text(row CompareRow) string {
	if cell.NsPerOp == 0 {
		return "–"
	}
	parts := []string{FormatNs(cell.NsPerOp)}
	if row.Backend == "" {
		parts = append(parts, cell.Backend)
	}
	return strings.Join(append(parts, cell.throughput(row.Bound)), " · ")
}

// WriteMarkdown prints the comparison as a markdown table: per machine its time,
// backend and GB/s or GFLOP/s, and for every machine after the first its speedup over
// the first (above 1: faster).
func (c Comparison) WriteMarkdown(w io.Writer) error {
	if len(c.Rows) == 0 || len(c.Columns) == 0 {
		return errors.New("writing the comparison: nothing to compare")
	}
	var b strings.Builder
	b.WriteString("| kernel | shape |")
	if c.Rows[0].Backend != "" {
		b.WriteString(" backend |")
	}
	align := "|---|---|"
	if c.Rows[0].Backend != "" {
		align += "---|"
	}
	for i, col := range c.Columns {
		fmt.Fprintf(&b, " %s |", mdEscape(col.Label))
		align += "---:|"
		if i > 0 {
			b.WriteString(" × first |")
			align += "---:|"
		}
	}
	b.WriteString("\n" + align + "\n")
	for _, r := range c.Rows {
		fmt.Fprintf(&b, "| %s | %s |", mdEscape(r.Kernel), mdEscape(r.Shape))
		if r.Backend != "" {
			fmt.Fprintf(&b, " %s |", mdEscape(r.Backend))
		}
		for i, cell := range r.Cells {
			fmt.Fprintf(&b, " %s |", cell.text(r))
			if i > 0 {
				if cell.Speedup > 0 {
					fmt.Fprintf(&b, " %.2f× |", cell.Speedup)
				} else {
					b.WriteString(" – |")
				}
			}
		}
		b.WriteString("\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing the comparison: %w", err)
	}
	return nil
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// WriteSVG draws the comparison as grouped horizontal bars, one group per row, one bar
// per machine, the bar length being the machine's speed relative to the fastest one in
// the group, the note after it the time, backend and speedup over the first machine.
func (c Comparison) WriteSVG(w io.Writer) error {
	if len(c.Rows) == 0 || len(c.Columns) == 0 {
		return errors.New("drawing the comparison: nothing to compare")
	}
	var series []string
	for _, col := range c.Columns {
		series = append(series, col.Label)
	}
	var groups []svgGroup
	for _, r := range c.Rows {
		g := svgGroup{label: r.Kernel + " " + r.Shape}
		if r.Backend != "" {
			g.label += " " + r.Backend
		}
		fastest := 0.0
		for _, cell := range r.Cells {
			if cell.NsPerOp > 0 {
				fastest = max(fastest, 1/cell.NsPerOp)
			}
		}
		for i, cell := range r.Cells {
			if cell.NsPerOp == 0 {
				g.bars = append(g.bars, svgBar{series: i, note: "not measured"})
				continue
			}
			note := cell.text(r)
			if i > 0 && cell.Speedup > 0 {
				note += fmt.Sprintf(" · %.2f×", cell.Speedup)
			}
			g.bars = append(g.bars, svgBar{series: i, frac: (1 / cell.NsPerOp) / fastest, note: note,
				tip: fmt.Sprintf("%s: %s %s, %s", c.Columns[i].Label, r.Kernel, r.Shape, note)})
		}
		groups = append(groups, g)
	}
	header := []string{"lmrun bench compare: " + strings.Join(series, " vs ")}
	for _, col := range c.Columns {
		if len(col.Machine.Backends) > 0 {
			header = append(header, fmt.Sprintf("%s: backends %s (%s)", col.Label, strings.Join(col.Machine.Backends, ", "), filepath.Base(col.File)))
		}
	}
	return barChart(w, header, series, groups, fmt.Sprintf("speed relative to the fastest machine; × is the speedup over %s", series[0]))
}
