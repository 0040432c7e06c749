package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// twoMachines returns kernel reports of two made-up machines: B is twice as fast on
// the matvec (with avx512), 1.5 times on dot, and has a kernel A lacks.
func twoMachines() (a, b KernelReport) {
	a = KernelReport{Kind: KernelReportKind,
		Machine: Machine{CPU: "Example Zen 4", Arch: "amd64", Backends: []string{"generic", "avx2"}},
		Results: []KernelResult{
			{Kernel: "matvec", Shape: "768x768", Backend: "generic", Bound: BandwidthBound, NsPerOp: 1e6, GBps: 2.4},
			{Kernel: "matvec", Shape: "768x768", Backend: "avx2", Bound: BandwidthBound, NsPerOp: 100e3, GBps: 23.6},
			{Kernel: "gemm", Shape: "128x768x3072", Backend: "avx2", Bound: ComputeBound, NsPerOp: 6e6, GFLOPS: 100.7},
			{Kernel: "dot", Shape: "4096", Backend: "avx2", Bound: BandwidthBound, NsPerOp: 300, GBps: 109},
		}}
	b = KernelReport{Kind: KernelReportKind,
		Machine: Machine{CPU: "Example Zen 5", Arch: "amd64", Backends: []string{"generic", "avx2", "avx512"}},
		Results: []KernelResult{
			{Kernel: "matvec", Shape: "768x768", Backend: "avx2", Bound: BandwidthBound, NsPerOp: 80e3, GBps: 29.5},
			{Kernel: "matvec", Shape: "768x768", Backend: "avx512", Bound: BandwidthBound, NsPerOp: 50e3, GBps: 47.2},
			{Kernel: "dot", Shape: "4096", Backend: "avx512", Bound: BandwidthBound, NsPerOp: 200, GBps: 163.8},
			{Kernel: "rope", Shape: "32heads,hd128", Backend: "avx512", Bound: BandwidthBound, NsPerOp: 250, GBps: 66},
		}}
	return a, b
}

func TestCompare(t *testing.T) {
	a, b := twoMachines()
	c, err := Compare([]string{"a.json", "b.json"}, []KernelReport{a, b}, false)
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := c.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| kernel | shape | Example Zen 4 amd64 | Example Zen 5 amd64 | × first |",
		"| matvec | 768x768 | 100 µs · avx2 · 23.6 GB/s | 50 µs · avx512 · 47.2 GB/s | 2.00× |",
		"| dot | 4096 | 300 ns · avx2 · 109.0 GB/s | 200 ns · avx512 · 163.8 GB/s | 1.50× |",
		"| gemm | 128x768x3072 | 6 ms · avx2 · 100.7 GFLOP/s | – | – |",
		"| rope | 32heads,hd128 | – | 250 ns · avx512 · 66.0 GB/s | – |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, md.String())
		}
	}
	var svg bytes.Buffer
	if err := c.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, svg.Bytes(), 6, "Example Zen 4 amd64 vs Example Zen 5 amd64")
	if !strings.Contains(svg.String(), "50 µs · avx512 · 47.2 GB/s · 2.00×") {
		t.Errorf("the chart lacks the matvec speedup:\n%s", svg.String())
	}

	all, err := Compare([]string{"a.json", "b.json"}, []KernelReport{a, b}, true)
	if err != nil {
		t.Fatal(err)
	}
	md.Reset()
	if err := all.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| kernel | shape | backend |",
		"| matvec | 768x768 | avx2 | 100 µs · 23.6 GB/s | 80 µs · 29.5 GB/s | 1.25× |",
		"| matvec | 768x768 | avx512 | – | 50 µs · 47.2 GB/s | – |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("the all-backends table lacks %q:\n%s", want, md.String())
		}
	}
}

func TestCompareLabels(t *testing.T) {
	a, b := twoMachines()
	b.Machine = a.Machine // the same machine twice: told apart by file
	noName := a
	noName.Machine = Machine{}
	c, err := Compare([]string{"x/a.json", "y/b.json", "z/old.json"}, []KernelReport{a, b, noName}, false)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{c.Columns[0].Label, c.Columns[1].Label, c.Columns[2].Label}
	want := []string{"Example Zen 4 amd64 (a.json)", "Example Zen 4 amd64 (b.json)", "old.json"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("labels %q, want %q", got, want)
			break
		}
	}
}

func TestCompareRefuses(t *testing.T) {
	a, b := twoMachines()
	b.Results = []KernelResult{{Kernel: "softmax", Shape: "1024", Backend: "neon", NsPerOp: 400}}
	if _, err := Compare([]string{"a.json", "b.json"}, []KernelReport{a, b}, false); err == nil || !strings.Contains(err.Error(), "no kernel and shape") {
		t.Errorf("no common kernels: %v", err)
	}
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, _ := json.Marshal(a)
	for name, tc := range map[string]struct{ body, want string }{
		"model.json":  {`[{"model":"t.lmc","test":"tg4","tokens_per_second":50}]`, "JSON array"},
		"serve.json":  {`{"Parallel":1,"Load":{}}`, `no "results"`},
		"empty.json":  {``, "empty"},
		"text.json":   {`| kernel |`, "not a JSON object"},
		"broken.json": {`{"results": [`, "invalid JSON"},
		"kind.json":   {`{"kind":"lmrun bench model","results":[{"kernel":"dot","backend":"avx2","ns_per_op":1}]}`, `kind is "lmrun bench model"`},
		"none.json":   {`{"results":[]}`, "no results"},
		"zero.json":   {`{"results":[{"kernel":"dot","backend":"avx2"}]}`, "lacks"},
		"good.json":   {string(good), ""},
	} {
		r, err := ReadKernelReport(write(name, tc.body))
		if tc.want == "" {
			if err != nil || len(r.Results) != len(a.Results) || r.Machine.CPU != a.Machine.CPU {
				t.Errorf("%s: %v %+v", name, err, r)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming the file and saying %q", name, err, tc.want)
		}
	}
	if _, err := ReadKernelReport(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("a missing file: %v", err)
	}
}
