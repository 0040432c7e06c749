package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/bench"
)

// writeKernelReport writes r as bench kernels --json would.
func writeKernelReport(t *testing.T, path string, r bench.KernelReport) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBenchCompareCommand(t *testing.T) {
	dir := t.TempDir()
	a := writeKernelReport(t, filepath.Join(dir, "zen4.json"), bench.KernelReport{Kind: bench.KernelReportKind,
		Machine: bench.Machine{CPU: "Example Zen 4", Arch: "amd64", Backends: []string{"generic", "avx2"}},
		Results: []bench.KernelResult{
			{Kernel: "matvec", Shape: "4096x4096", Backend: "generic", Bound: bench.BandwidthBound, NsPerOp: 40e6, GBps: 1.7},
			{Kernel: "matvec", Shape: "4096x4096", Backend: "avx2", Bound: bench.BandwidthBound, NsPerOp: 2.4e6, GBps: 28},
			{Kernel: "gemm", Shape: "128x768x3072", Backend: "avx2", Bound: bench.ComputeBound, NsPerOp: 8e6, GFLOPS: 75.5},
		}})
	b := writeKernelReport(t, filepath.Join(dir, "m2.json"), bench.KernelReport{Kind: bench.KernelReportKind,
		Machine: bench.Machine{CPU: "Example M2", Arch: "arm64", Backends: []string{"generic", "neon"}},
		Results: []bench.KernelResult{
			{Kernel: "matvec", Shape: "4096x4096", Backend: "neon", Bound: bench.BandwidthBound, NsPerOp: 1.2e6, GBps: 56},
			{Kernel: "gemm", Shape: "128x768x3072", Backend: "neon", Bound: bench.ComputeBound, NsPerOp: 16e6, GFLOPS: 37.7},
		}})
	svg := filepath.Join(dir, "c.svg")
	out := mustRun(t, "bench", "compare", a, b, "--svg", svg)
	for _, want := range []string{
		"1. Example Zen 4 amd64: " + a,
		"| kernel | shape | Example Zen 4 amd64 | Example M2 arm64 | × first |",
		"| matvec | 4096x4096 | 2.4 ms · avx2 · 28.0 GB/s | 1.2 ms · neon · 56.0 GB/s | 2.00× |",
		"| gemm | 128x768x3072 | 8 ms · avx2 · 75.5 GFLOP/s | 16 ms · neon · 37.7 GFLOP/s | 0.50× |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bench compare output lacks %q:\n%s", want, out)
		}
	}
	if s, err := os.ReadFile(svg); err != nil || !strings.Contains(string(s), "Example Zen 4 amd64 vs Example M2 arm64") {
		t.Errorf("--svg: %v\n%s", err, s)
	}
	var cmp bench.Comparison
	js := mustRun(t, "bench", "compare", a, b, "--json", "--all-backends")
	if err := json.Unmarshal([]byte(js), &cmp); err != nil || len(cmp.Columns) != 2 || len(cmp.Rows) != 5 || cmp.Rows[0].Backend != "generic" || cmp.Rows[3].Backend != "neon" {
		t.Fatalf("--json --all-backends: %v %+v\n%s", err, cmp, js)
	}

	model := filepath.Join(dir, "model.json")
	if err := os.WriteFile(model, []byte(`[{"model":"t.lmc","test":"tg4"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	other := writeKernelReport(t, filepath.Join(dir, "other.json"), bench.KernelReport{
		Results: []bench.KernelResult{{Kernel: "dot", Shape: "4096", Backend: "neon", NsPerOp: 300}}})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{a}, "two or more files"},
		{[]string{a, filepath.Join(dir, "absent.json")}, "absent.json"},
		{[]string{a, model}, "model.json is not the output of lmrun bench kernels --json"},
		{[]string{a, other}, "no kernel and shape"},
	} {
		if _, _, err := lmrun(t, append([]string{"bench", "compare"}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench compare %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

// TestBenchKernelsJSONCompares: what bench kernels --json writes, bench compare reads.
func TestBenchKernelsJSONCompares(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the machine (256 MB buffer)")
	}
	best := backends.Best()
	js := mustRun(t, "bench", "kernels", "--quick", "--time", "1ms", "--backend", "generic,"+best.Name, "--json")
	var rep bench.KernelReport
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Kind != bench.KernelReportKind || rep.Machine.Arch == "" || len(rep.Machine.Levels) == 0 ||
		rep.Machine.Levels[len(rep.Machine.Levels)-1].Name != "DRAM" || len(rep.Machine.Backends) == 0 ||
		rep.Machine.BackendFeatures["generic"] == nil {
		t.Fatalf("machine section: %+v", rep.Machine)
	}
	_, int8 := probes(best.New())
	if p := rep.Machine.Int8PeakGOPS[best.Name]; (p > 0) != int8 || rep.Machine.Int8PeakGOPS["generic"] != 0 {
		t.Fatalf("int8 peaks %v (%s has a probe: %v)", rep.Machine.Int8PeakGOPS, best.Name, int8)
	}
	int8Results := 0
	for _, r := range rep.Results {
		if r.Bound == bench.BandwidthBound && (r.Level == "" || r.WorkingSet <= 0 || r.PeakFrac <= 0) {
			t.Fatalf("a bandwidth-bound result not judged against a level: %+v", r)
		}
		if r.Bound == bench.Int8Bound && r.Backend == best.Name && int8 {
			int8Results++
			if p := rep.Machine.Int8PeakGOPS[best.Name]; r.Limit != p || r.PeakFrac != r.GFLOPS/p {
				t.Fatalf("an int8-bound result not judged against the int8 peak %v: %+v", p, r)
			}
		}
	}
	if int8 && int8Results == 0 {
		t.Fatal("no int8-bound result")
	}
	path := filepath.Join(t.TempDir(), "here.json")
	if err := os.WriteFile(path, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "bench", "compare", path, path)
	if !strings.Contains(out, "| matvec | 768x768 |") || !strings.Contains(out, "| 1.00× |") {
		t.Errorf("comparing a run with itself:\n%s", out)
	}
}
