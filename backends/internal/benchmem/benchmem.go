// Package benchmem is what the backends' benchmarks measure with: memory mapped in small
// pages, as a weight file is, and the calling thread's CPU time.
package benchmem

import (
	"runtime"
	"testing"
)

// LockThread pins the goroutine to its thread, for ThreadTime, until b ends.
func LockThread(b testing.TB) {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
}
