//go:build !linux && amd64 && !purego

package avx512

import "testing"

// smallPages returns n bytes of memory (4 KiB pages where the OS lets one ask for them:
// here the heap's).
func smallPages(_ *testing.B, n int) []byte { return make([]byte, n) }
