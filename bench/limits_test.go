package bench

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/kernels"
)

// TestMixedPeak: the rate of products part int8, part float, at the two peaks, is the
// harmonic mean weighted by the shares, and unknown when a peak it needs is.
func TestMixedPeak(t *testing.T) {
	for _, c := range []struct{ fma, int8, share, want float64 }{
		{100, 400, 0, 100}, {100, 400, 1, 400}, {100, 400, 0.5, 1 / (0.5/400 + 0.5/100)},
		{100, 0, 0, 100}, {0, 400, 1, 400}, {100, 0, 0.2, 0}, {0, 400, 0.8, 0},
	} {
		if got := mixedPeak(c.fma, c.int8, c.share); math.Abs(got-c.want) > 1e-9*c.want {
			t.Errorf("mixedPeak(%v, %v, %v) = %v, want %v", c.fma, c.int8, c.share, got, c.want)
		}
	}
	r := ModelResult{GFLOPS: 50, PeakGFLOPS: 100, Int8PeakGOPS: 400}
	r.setPeak(30, 40)
	if want := 1 / (0.75/400 + 0.25/100); r.Int8Share != 0.75 || math.Abs(r.PeakGOPS-want) > 1e-9 || math.Abs(r.Fraction-50/want) > 1e-12 {
		t.Errorf("setPeak(30, 40): %+v, want share 0.75, peak %v", r, want)
	}
	if s := r.LimitText(); s != "228.6 GOP/s: int8 75% + FMA" {
		t.Errorf("LimitText of a mixed product: %q", s)
	}
	r = ModelResult{GFLOPS: 50, PeakGFLOPS: 100, Int8PeakGOPS: 1234}
	if r.setPeak(40, 40); r.LimitText() != "1.23 TOPS int8" || r.Fraction != 50.0/1234 {
		t.Errorf("all int8: %q, fraction %v", r.LimitText(), r.Fraction)
	}
	if r.setPeak(0, 40); r.LimitText() != "100.0 GFLOP/s FMA" || r.Fraction != 0.5 {
		t.Errorf("no int8: %q, fraction %v", r.LimitText(), r.Fraction)
	}
	r = ModelResult{WeightGBps: 5, ReadGBps: 20}
	if r.LimitText() != "20.00 GB/s read" {
		t.Errorf("tg: %q", r.LimitText())
	}
}

// TestBenchModelInt8Limits measures pp on a q8_0 and an f32 model with the best
// backend, the machine's limits measured, and checks each against the peaks that bound
// it: the q8_0 model's products (those whose rows are whole blocks, which the
// conversion quantizes, the classifier too) run as int8 products, against the int8
// peak, the others against the FMA peak; the f32 model's all against the FMA peak.
func TestBenchModelInt8Limits(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the machine (256 MB buffer)")
	}
	b := backends.Best()
	k := b.New()
	_, hasFMA := k.(kernels.PeakProber)
	_, hasInt8 := k.(kernels.Int8Prober)
	if !hasFMA || !hasInt8 {
		t.Skipf("backend %s has no peak probes", b.Name)
	}
	p, err := synth.Lookup("tiny")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := p.Build(3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.F32} {
		c, err := convert.WithDType(ck, dt)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, dt.String()+".lmc")
		if err := c.WriteFile(path, nil); err != nil {
			t.Fatal(err)
		}
		m, err := engine.Load(path, engine.Options{Backend: b.Name, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		const P = 16
		macs, int8 := m.PromptMACs(P)
		m.Close()
		share := float64(int8) / float64(macs)
		if (dt == dtype.F32) != (share == 0) || share < 0 || share > 1 || (dt == dtype.Q8_0 && share < 0.5) {
			t.Fatalf("%v: the model's int8 share is %v (%d of %d multiply-adds)", dt, share, int8, macs)
		}
		res, err := BenchModel(path, ModelConfig{Prompt: P, Threads: []int{1}, Reps: 1, Limits: true, Backend: b.Name})
		if err != nil {
			t.Fatal(err)
		}
		r := res[0]
		if r.PeakGFLOPS <= 0 || r.Int8PeakGOPS <= 0 || r.GFLOPS <= 0 || math.Abs(r.Int8Share-share) > 1e-12 {
			t.Fatalf("%v: %+v, want int8 share %v", dt, r, share)
		}
		// The time the products would take at the peaks, per G operations.
		peak := 1 / (share/r.Int8PeakGOPS + (1-share)/r.PeakGFLOPS)
		text := "GFLOP/s FMA"
		switch {
		case share == 1:
			text = " int8"
		case share > 0:
			text = ": int8 " + FormatPercent(share) + " + FMA"
		}
		if math.Abs(r.PeakGOPS-peak) > 1e-9*peak || math.Abs(r.Fraction-r.GFLOPS/peak) > 1e-9 || !strings.HasSuffix(r.LimitText(), text) {
			t.Errorf("%v: pp judged against %v (%q), fraction %v; want the peak %v (%q), fraction %v", dt, r.PeakGOPS, r.LimitText(), r.Fraction, peak, text, r.GFLOPS/peak)
		}
		t.Logf("%v: %.1f G/s of %s: %s", dt, r.GFLOPS, r.LimitText(), FormatPercent(r.Fraction))
	}
}
