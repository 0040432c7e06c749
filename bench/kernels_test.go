package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/lmrun/lmrun/backends"
	_ "github.com/lmrun/lmrun/backends/all"
	"github.com/lmrun/lmrun/kernels"
)

// fakeMachine has every level measured, at round numbers.
func fakeMachine(backendNames ...string) Machine {
	return Machine{CPU: "Example Zen 5 Processor With A Rather Long Model Name", Arch: "amd64", Backends: backendNames, Threads: 2,
		ReadGBps1: 10, ReadGBpsN: 15,
		Levels: []Level{
			{Name: "L1", SizeBytes: 48 << 10, ReadGBps1: 100},
			{Name: "L2", SizeBytes: 1 << 20, ReadGBps1: 50},
			{Name: "L3", SizeBytes: 32 << 20, ReadGBps1: 20, ReadGBpsN: 30},
			{Name: "DRAM", ReadGBps1: 10, ReadGBpsN: 15},
		},
		PeakGFLOPS: map[string]float64{"generic": 5}}
}

func TestBenchKernelsAndSVG(t *testing.T) {
	ks := map[string]kernels.Kernels{"generic": kernels.Reference{}}
	order := []string{"generic"}
	if b := backends.Best(); b.Name != "generic" {
		ks[b.Name] = b.New()
		order = append(order, b.Name)
	}
	m := fakeMachine(order...)
	m.Int8PeakGOPS = map[string]float64{}
	if len(order) > 1 {
		if gops, ok := Int8Peak(ks[order[1]]); ok {
			if gops <= 0 {
				t.Fatalf("%s: int8 peak %v GOP/s", order[1], gops)
			}
			m.Int8PeakGOPS[order[1]] = gops
		}
	}
	var cases []KernelCase
	for _, c := range KernelCases(true) {
		if c.Set < 64<<20 { // the f16 and bf16 products, slow on generic, run in cmd/lmrun's test
			cases = append(cases, c)
		}
	}
	res := BenchKernels(cases, ks, order, m, time.Millisecond)
	if len(res) != len(cases)*len(order) {
		t.Fatalf("%d results", len(res))
	}
	levels := map[string]string{}
	int8Cases := 0
	for _, r := range res {
		if r.NsPerOp <= 0 || r.Speedup <= 0 {
			t.Fatalf("bad result %+v", r)
		}
		if r.Backend == "generic" && r.Speedup != 1 {
			t.Fatalf("generic's speedup over itself is %v", r.Speedup)
		}
		levels[r.Kernel+" "+r.Shape] = r.Level
		if r.Bound == Int8Bound {
			int8Cases++
			if p := m.Int8PeakGOPS[r.Backend]; r.Limit != p || r.PeakFrac != r.GFLOPS/p && p > 0 || p == 0 && r.PeakFrac != 0 ||
				!strings.HasPrefix(r.Kernel, "gemm_q") {
				t.Errorf("%s %s on %s: judged against %v (%v), want the int8 peak %v", r.Kernel, r.Shape, r.Backend, r.Limit, r.PeakFrac, p)
			}
			if r.LimitName() != "int8 peak" {
				t.Errorf("int8-bound LimitName %q", r.LimitName())
			}
		}
		if r.Bound != BandwidthBound {
			continue
		}
		l, _ := m.LevelFor(r.WorkingSet)
		if r.Level != l.Name || r.Limit != l.ReadGBps1 || r.PeakFrac != r.GBps/l.ReadGBps1 {
			t.Fatalf("%s %s: working set %v judged against %s %v GB/s (%v), want %s", r.Kernel, r.Shape, r.WorkingSet, r.Level, r.Limit, r.PeakFrac, l.Name)
		}
	}
	for ks, want := range map[string]string{"dot 4096": "L1", "matvec 768x768": "L3", "matvec_q8_0 4096x4096": "L3", "add 4096": "L1"} {
		if levels[ks] != want {
			t.Errorf("%s judged against %q, want %q", ks, levels[ks], want)
		}
	}
	if int8Cases != 3*len(order) { // gemm_q8_0, gemm_q4_0, gemm_q4_k
		t.Errorf("%d int8-bound results, want 3 per backend", int8Cases)
	}
	var buf bytes.Buffer
	if err := WriteSVG(&buf, res, m); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, buf.Bytes(), len(res), m.CPU)
	if len(m.Int8PeakGOPS) > 0 && !strings.Contains(buf.String(), "int8 peak GOP/s, 1 thread: "+order[1]) {
		t.Error("the chart does not give the int8 peak")
	}
	if !strings.Contains(KernelCases(false)[3].Shape, "4096x4096") {
		t.Fatal("the LLC-busting matvec shape is missing")
	}
}

// TestSVGLabelsInside draws the results that ran off the edge before: cache-resident
// kernels at several times a limit, long names.
func TestSVGLabelsInside(t *testing.T) {
	m := fakeMachine("avx512", "avx2", "generic")
	m.PeakGFLOPS = map[string]float64{"avx512": 200, "avx2": 100}
	var rs []KernelResult
	for i, b := range m.Backends {
		f := float64(i + 1)
		rs = append(rs,
			KernelResult{Kernel: "matvec", Shape: "768x768", Backend: b, Bound: BandwidthBound, NsPerOp: 1000 * f, GBps: 60 / f, PeakFrac: 2.02 / f, Level: "DRAM"},
			KernelResult{Kernel: "dot", Shape: "4096", Backend: b, Bound: BandwidthBound, NsPerOp: 100 * f, GBps: 30 / f, PeakFrac: 2.97 / f, Level: "L1"},
			KernelResult{Kernel: "attention_with_a_long_name", Shape: "1024pos,12heads,hd64", Backend: b, Bound: ComputeBound, NsPerOp: 5000 * f, GFLOPS: 50 / f},
		)
	}
	var buf bytes.Buffer
	if err := WriteSVG(&buf, rs, m); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, buf.Bytes(), len(rs), m.CPU)
	for _, want := range []string{"avx512, avx2, generic", "202% of DRAM read BW", "297% of L1 read BW", "L3 (32.0 MiB) 20.0 (2 threads 30.0)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

// checkSVG parses an SVG and checks that it has at least bars rectangles, that its
// first text (the title) names cpu, and that no text reaches past either edge.
func checkSVG(t *testing.T, svg []byte, bars int, cpu string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	var width float64
	rects, texts := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		attr := func(name string) string {
			for _, a := range se.Attr {
				if a.Name.Local == name {
					return a.Value
				}
			}
			return ""
		}
		num := func(name string, def float64) float64 {
			s := attr(name)
			if s == "" {
				return def
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("<%s %s=%q>: %v", se.Name.Local, name, s, err)
			}
			return v
		}
		switch se.Name.Local {
		case "svg":
			width = num("width", 0)
		case "rect":
			rects++
		case "text":
			var s string
			if err := d.DecodeElement(&s, &se); err != nil {
				t.Fatal(err)
			}
			texts++
			if texts == 1 && !strings.Contains(s, cpu) {
				t.Errorf("title %q does not name the CPU %q", s, cpu)
			}
			w := TextWidth(s, num("font-size", svgFont), attr("font-weight") == "bold")
			x := num("x", 0)
			lo, hi := x, x+w
			switch attr("text-anchor") {
			case "middle":
				lo, hi = x-w/2, x+w/2
			case "end":
				lo, hi = x-w, x
			}
			if lo < 0 || hi > width {
				t.Errorf("text %q spans %.1f to %.1f, outside the canvas 0 to %v", s, lo, hi, width)
			}
		}
	}
	if width <= 0 {
		t.Fatal("the SVG has no width")
	}
	if rects < bars {
		t.Fatalf("%d bars for %d results", rects, bars)
	}
}

func TestFormatPercent(t *testing.T) {
	for f, want := range map[float64]string{0.0001: "<0.1%", 0.004: "0.4%", 0.5: "50%", 2.97: "297%"} {
		if got := FormatPercent(f); got != want {
			t.Errorf("FormatPercent(%v) = %q, want %q", f, got, want)
		}
	}
}

func TestLevelFor(t *testing.T) {
	m := fakeMachine()
	for ws, want := range map[float64]string{1: "L1", 48 << 10: "L1", 48<<10 + 1: "L2", 2 << 20: "L3", 33 << 20: "DRAM", 1 << 40: "DRAM"} {
		if l, ok := m.LevelFor(ws); !ok || l.Name != want {
			t.Errorf("working set %v: %q, want %s", ws, l.Name, want)
		}
	}
	if l, ok := (Machine{ReadGBps1: 7}).LevelFor(1); !ok || l.Name != "DRAM" || l.ReadGBps1 != 7 {
		t.Errorf("a machine without levels: %+v %v", l, ok)
	}
	if _, ok := (Machine{}).LevelFor(1); ok {
		t.Error("a machine measured not at all has a level")
	}
}

func TestSysfsCacheSizes(t *testing.T) {
	fsys := fstest.MapFS{}
	for dir, v := range map[string][3]string{
		"index0": {"1", "Data", "48K"}, "index1": {"1", "Instruction", "32K"},
		"index2": {"2", "Unified", "1024K"}, "index3": {"3", "Unified", "32M"},
	} {
		for i, f := range []string{"level", "type", "size"} {
			fsys[dir+"/"+f] = &fstest.MapFile{Data: []byte(v[i] + "\n")}
		}
	}
	if l1, l2, l3 := sysfsCacheSizes(fsys); l1 != 48<<10 || l2 != 1<<20 || l3 != 32<<20 {
		t.Fatalf("sysfs cache sizes %d %d %d", l1, l2, l3)
	}
	if l1, l2, l3 := sysfsCacheSizes(fstest.MapFS{}); l1 != 0 || l2 != 0 || l3 != 0 {
		t.Fatal("sizes from nothing")
	}
	if l1, l2, l3 := CacheSizes(); l1 < 0 || l2 < 0 || l3 < 0 {
		t.Fatalf("negative cache sizes %d %d %d", l1, l2, l3)
	}
}

func TestReadBandwidthOfCacheResident(t *testing.T) {
	bw := ReadBandwidthOf(16<<10, 1, 2, kernels.Reference{})
	if !(bw > 0.1 && bw < 100000) || math.IsInf(bw, 0) {
		t.Fatalf("read bandwidth of 16 KiB: %v GB/s", bw)
	}
}

func TestReadBandwidthPositive(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 256 MB")
	}
	if bw := ReadBandwidth(1, 1, kernels.Reference{}); !(bw > 0.1 && bw < 10000) {
		t.Fatalf("read bandwidth %v GB/s", bw)
	}
}

// BenchmarkKernels: every kernel case on every available backend, for benchstat.
func BenchmarkKernels(b *testing.B) {
	for _, c := range KernelCases(false) {
		for _, be := range backends.List() {
			if !be.Available() {
				continue
			}
			b.Run(c.Kernel+"/"+c.Shape+"/"+be.Name, func(b *testing.B) {
				f := c.Setup(be.New())
				b.SetBytes(int64(c.Bytes))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					f()
				}
				b.ReportMetric(c.Flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
