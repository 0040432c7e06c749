package convert

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/format/gguf"
)

// synthGGUF writes a GGUF file of a synth preset (f32 weights) and returns its path.
func synthGGUF(t testing.TB, preset string) string {
	t.Helper()
	p, err := synth.Lookup(preset)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := synth.Build(p.Config, 1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), preset+".gguf")
	if err := gguf.ExportFile(ck, path, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// residentBytes returns the memory of this process that is in RAM (/proc/self/statm):
// heap, stacks, and the pages of mapped files it has touched — not the page cache
// holding a file it has mapped but not read.
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

// mappedRanges returns the address ranges at which this process maps the file at path
// (/proc/self/maps, matched by inode and device).
func mappedRanges(t testing.TB, path string) [][2]uintptr {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	dev := fmt.Sprintf("%02x:%02x", (sys.Dev>>8)&0xfff|(sys.Dev>>32)&^0xfff, sys.Dev&0xff|(sys.Dev>>12)&^0xff)
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	var out [][2]uintptr
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[4] != strconv.FormatUint(sys.Ino, 10) || f[3] != dev {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("/proc/self/maps line %q", sc.Text())
		}
		out = append(out, [2]uintptr{uintptr(a), uintptr(b)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOpenGGUFInPlace: opening a GGUF model copies none of its tensors — every tensor's
// data lies in the process's mapping of the file — and reads none of their pages: the
// resident memory grows by far less than the tensors (a copy, or a scan of the weights,
// would add all of them).
func TestOpenGGUFInPlace(t *testing.T) {
	path := synthGGUF(t, "stories15m") // about 60 MB of f32 weights
	runtime.GC()
	debug.FreeOSMemory()
	before := residentBytes(t)
	f, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	grown := residentBytes(t) - before
	defer f.Close()

	ranges := mappedRanges(t, path)
	if len(ranges) == 0 {
		t.Fatal("the GGUF file is not mapped")
	}
	for _, tn := range f.Tensors {
		p := uintptr(unsafe.Pointer(unsafe.SliceData(tn.Data)))
		in := false
		for _, r := range ranges {
			in = in || (p >= r[0] && p+uintptr(len(tn.Data)) <= r[1])
		}
		if !in {
			t.Errorf("tensor %s is not in the file's mapping: copied", tn.Name)
		}
	}
	size := f.DataSize()
	t.Logf("%d MB of tensors; resident memory grew by %d KB on open", size>>20, grown>>10)
	if grown > size/8 {
		t.Errorf("opening %d MB of tensors grew resident memory by %d MB: tensor pages were read or copied", size>>20, grown>>20)
	}
}
