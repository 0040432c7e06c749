//go:build linux && amd64 && !purego

package avx512

import (
	"testing"

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
