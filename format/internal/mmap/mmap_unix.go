//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package mmap

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// File maps the first size bytes of f read-only and returns them with the function that
// unmaps them. The mapping stays valid after f is closed, until unmap is called; a size
// of 0 maps nothing.
func File(f *os.File, size int) ([]byte, func() error, error) {
	if size == 0 {
		return nil, func() error { return nil }, nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	return b, func() error { return unix.Munmap(b) }, nil
}
