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

// ReportFLOPs runs f b.N times on the calling thread (locked, LockThread), timed by its
// CPU time (ThreadTime), and reports the GFLOP/s of flops floating-point operations a
// run and, against peak FLOP/s, their percentage of it ("%peak").
func ReportFLOPs(b *testing.B, flops, peak float64, f func()) {
	b.ResetTimer()
	t0 := ThreadTime()
	for i := 0; i < b.N; i++ {
		f()
	}
	s := (ThreadTime() - t0).Seconds() / float64(b.N)
	b.ReportMetric(flops/s/1e9, "GFLOP/s")
	b.ReportMetric(100*flops/s/peak, "%peak")
}

// BestRate returns the best of five runs of probe timed by the calling thread's CPU
// time, as operations a second: probe runs and returns how many operations it did.
func BestRate(probe func() float64) float64 {
	best := 0.0
	for range 5 {
		t := ThreadTime()
		ops := probe()
		best = max(best, ops/(ThreadTime()-t).Seconds())
	}
	return best
}
