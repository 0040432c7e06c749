//go:build linux

package benchmem

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SmallPages returns n bytes of memory mapped in 4 KiB pages (no transparent huge
// pages), as a weight file mapped from the page cache is, unmapped when b ends: the
// hardware prefetchers stop at every page boundary there.
func SmallPages(b testing.TB, n int) []byte {
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

// ThreadTime returns the CPU time the calling thread has used, which, unlike the wall
// clock, does not count the time other processes took the core: on a busy machine it
// times a kernel (on a locked thread, LockThread) far more steadily.
func ThreadTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
