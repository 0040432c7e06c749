//go:build linux && amd64 && !purego

package avx2

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// smallPages returns n bytes of memory mapped in 4 KiB pages (no transparent huge
// pages), as a weight file mapped from the page cache is, unmapped when b ends: the
// hardware prefetchers stop at every page boundary there.
func smallPages(b *testing.B, n int) []byte {
	m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.Madvise(m, unix.MADV_NOHUGEPAGE); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = unix.Munmap(m) })
	return m
}

// threadTime returns the CPU time the calling thread has used, which, unlike the wall
// clock, does not count the time other processes took the core: on a busy machine it
// times a kernel (on a locked thread) far more steadily.
func threadTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// lockThread pins the goroutine to its thread for threadTime until b ends.
func lockThread(b *testing.B) {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
}
