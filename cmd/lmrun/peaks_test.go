package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/bench"
	"github.com/lmrun/lmrun/kernels"
)

// probes reports whether a backend's kernels measure the FMA and the int8 peak.
func probes(k kernels.Kernels) (fma, int8 bool) {
	_, fma = k.(kernels.PeakProber)
	_, int8 = k.(kernels.Int8Prober)
	return fma, int8
}

// TestInfoPeaks: lmrun info gives, for every available backend with probes, its FMA
// and int8 peaks (and none for the others, or with --peaks=false).
func TestInfoPeaks(t *testing.T) {
	var r infoReport
	if err := json.Unmarshal([]byte(mustRun(t, "info", "--json")), &r); err != nil {
		t.Fatal(err)
	}
	text := mustRun(t, "info")
	for _, bi := range r.Backends {
		b, ok := backends.Lookup(bi.Name)
		if !ok {
			t.Fatalf("info lists an unknown backend %q", bi.Name)
		}
		var fma, int8 bool
		if bi.Available {
			fma, int8 = probes(b.New())
		}
		if (bi.FMAPeakGFLOPS > 0) != fma || (bi.Int8PeakGOPS > 0) != int8 {
			t.Errorf("%s: FMA peak %v, int8 peak %v; probes: FMA %v, int8 %v", bi.Name, bi.FMAPeakGFLOPS, bi.Int8PeakGOPS, fma, int8)
		}
		line := ""
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, " "+bi.Name+" ") {
				line = l
			}
		}
		if strings.Contains(line, "int8 ") != int8 || strings.Contains(line, "FMA ") != fma {
			t.Errorf("info's line of %s: %q", bi.Name, line)
		}
	}
	var off infoReport
	if err := json.Unmarshal([]byte(mustRun(t, "info", "--json", "--peaks=false")), &off); err != nil {
		t.Fatal(err)
	}
	if len(off.Backends) != len(r.Backends) {
		t.Fatalf("--peaks=false: %+v", off)
	}
	for _, bi := range off.Backends {
		if bi.FMAPeakGFLOPS != 0 || bi.Int8PeakGOPS != 0 {
			t.Errorf("--peaks=false measured %s: %+v", bi.Name, bi)
		}
	}
}

// TestBenchModelInt8Peak: bench model on a q8_0 model judges pp against the peaks its
// products run at (most of them int8 products: the matrices whose rows are whole
// blocks), and says so in the table.
func TestBenchModelInt8Peak(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the machine (256 MB buffer)")
	}
	best := backends.Best()
	if fma, int8 := probes(best.New()); !fma || !int8 {
		t.Skipf("backend %s has no peak probes", best.Name)
	}
	dir := t.TempDir()
	f32, q8 := filepath.Join(dir, "t.lmc"), filepath.Join(dir, "q8.lmc")
	mustRun(t, "synth", "--preset", "tiny", "-o", f32)
	mustRun(t, "convert", f32, "--dtype", "q8_0", "-o", q8)
	var rs []bench.ModelResult
	js := mustRun(t, "bench", "model", "-m", q8, "-p", "16", "-n", "4", "-t", "1", "--reps", "1", "--backend", best.Name, "--json")
	if err := json.Unmarshal([]byte(js), &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Test != "pp16" || rs[1].Test != "tg4" {
		t.Fatalf("results: %+v", rs)
	}
	pp, tg := rs[0], rs[1]
	peak := 1 / (pp.Int8Share/pp.Int8PeakGOPS + (1-pp.Int8Share)/pp.PeakGFLOPS)
	if pp.PeakGFLOPS <= 0 || pp.Int8PeakGOPS <= 0 || !(pp.Int8Share > 0.5 && pp.Int8Share <= 1) ||
		math.Abs(pp.PeakGOPS-peak) > 1e-9*peak || math.Abs(pp.Fraction-pp.GFLOPS/peak) > 1e-9 {
		t.Errorf("pp: %+v; want the int8 share's peak %v", pp, peak)
	}
	if tg.ReadGBps <= 0 || math.Abs(tg.Fraction-tg.WeightGBps/tg.ReadGBps) > 1e-9 || tg.PeakGOPS != 0 {
		t.Errorf("tg: %+v, want judged against the read bandwidth", tg)
	}
	var buf bytes.Buffer
	printModelTable(&buf, rs)
	for _, want := range []string{
		fmt.Sprintf("| pp16 | 0 | %.2f | %s | %s | %.0f%% |", pp.TokPerSec, bench.FormatOps(pp.GFLOPS), pp.LimitText(), 100*pp.Fraction),
		"int8 ", " GB/s read |",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, buf.String())
		}
	}
}
