//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package format

import (
	"io"
	"os"
)

// mapFile reads the whole file where this build has no mmap.
func mapFile(f *os.File, size int) ([]byte, func() error, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, nil, err
	}
	return b, func() error { return nil }, nil
}
