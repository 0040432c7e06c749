//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package kernels

import (
	"runtime/debug"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lmrun/lmrun/dtype"
)

// TestNewMatReadsNothing: NewMat wraps weights without reading them, so that loading a
// model leaves the mapped file on disk. The matrices lie in memory that cannot be read
// at all; any read by NewMat faults, which fails the test.
func TestNewMatReadsNothing(t *testing.T) {
	const rows, cols = 64, 1024
	size := 4 * rows * cols
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var m *Mat
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0} {
		n := dtype.RowBytes(dt, cols) * rows
		if faults(func() { m, err = NewMat(dt, mem[:n], rows, cols) }) {
			t.Fatalf("NewMat(%s) read the matrix", dt)
		}
		if err != nil {
			t.Fatalf("NewMat(%s): %v", dt, err)
		}
	}
	// The check is real: asking for a fact reads the data, and faults here.
	m, err = NewMat(dtype.Q8_0, mem[:dtype.RowBytes(dtype.Q8_0, cols)*rows], rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	if !faults(func() { m.Q8Sym() }) {
		t.Fatal("Q8Sym read unreadable memory without a fault: the test cannot see reads")
	}
}

// faults reports whether f faulted (with debug.SetPanicOnFault on).
func faults(f func()) (faulted bool) {
	defer func() { faulted = recover() != nil }()
	f()
	return false
}
