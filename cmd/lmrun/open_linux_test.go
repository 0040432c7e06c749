package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/format/gguf"
)

// residentBytes returns the memory of this process in RAM (/proc/self/statm): heap,
// stacks and the touched pages of mapped files, not the page cache of untouched ones.
func residentBytes(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		t.Fatalf("/proc/self/statm: %q", b)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// TestLoadGGUFReadsNoWeights: preparing a GGUF model for inference — mapping it,
// importing its index, binding every matrix to the kernels — reads none of its q8_0 or
// f16 weights (their scans wait for the first product), so resident memory grows by far
// less than the weights; the first token then reads them, which shows the measure sees
// touched pages.
func TestLoadGGUFReadsNoWeights(t *testing.T) {
	p, err := synth.Lookup("stories15m")
	if err != nil {
		t.Fatal(err)
	}
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.F16} {
		ck, err := synth.Build(p.Config, 1)
		if err != nil {
			t.Fatal(err)
		}
		if ck, err = convert.WithDType(ck, dt); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "m.gguf")
		if err := gguf.ExportFile(ck, path, nil); err != nil {
			t.Fatal(err)
		}
		ck = nil
		runtime.GC()
		debug.FreeOSMemory()
		before := residentBytes(t)
		m, err := loadModel(path, "", engine.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		opened := residentBytes(t) - before
		size := m.File().DataSize()
		s := m.NewSession(engine.SessionOptions{Context: 8})
		if _, err := s.Forward([]int{1}); err != nil {
			t.Fatal(err)
		}
		ran := residentBytes(t) - before
		m.Close()
		t.Logf("%s: %d MB of weights; resident memory +%d KB after open, +%d MB after one token", dt, size>>20, opened>>10, ran>>20)
		if opened > size/4 {
			t.Errorf("%s: opening %d MB of weights grew resident memory by %d MB: weights were read or copied", dt, size>>20, opened>>20)
		}
		if ran < size/2 {
			t.Errorf("%s: a token grew resident memory by only %d of %d MB: the measure does not see the weights", dt, ran>>20, size>>20)
		}
	}
}
