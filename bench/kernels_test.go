package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lmrun/lmrun/backends"
	_ "github.com/lmrun/lmrun/backends/all"
	"github.com/lmrun/lmrun/kernels"
)

func TestBenchKernelsAndSVG(t *testing.T) {
	ks := map[string]kernels.Kernels{"generic": kernels.Reference{}}
	order := []string{"generic"}
	if b := backends.Best(); b.Name != "generic" {
		ks[b.Name] = b.New()
		order = append(order, b.Name)
	}
	m := Machine{ReadGBps1: 10, PeakGFLOPS: map[string]float64{"generic": 5}}
	res := BenchKernels(KernelCases(true), ks, order, m, time.Millisecond)
	if len(res) != len(KernelCases(true))*len(order) {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res {
		if r.NsPerOp <= 0 || r.Speedup <= 0 {
			t.Fatalf("bad result %+v", r)
		}
		if r.Backend == "generic" && r.Speedup != 1 {
			t.Fatalf("generic's speedup over itself is %v", r.Speedup)
		}
		if r.Bound == BandwidthBound && r.PeakFrac != r.GBps/10 {
			t.Fatalf("fraction of bandwidth %v for %v GB/s", r.PeakFrac, r.GBps)
		}
	}
	var buf bytes.Buffer
	if err := WriteSVG(&buf, res, "test <chart>"); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&buf)
	rects := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects < len(res) {
		t.Fatalf("%d bars for %d results", rects, len(res))
	}
	if !strings.Contains(KernelCases(false)[3].Shape, "4096x4096") {
		t.Fatal("the LLC-busting matvec shape is missing")
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
