package kernels

// PeakProber is implemented by backends that can measure the machine's arithmetic peak:
// FMAProbe runs iters iterations of a loop of independent vector multiply-adds that
// keeps every FMA unit busy, and returns the number of floating-point operations done
// (2 per multiply-add lane). Benchmarks report kernel speed as a fraction of it.
type PeakProber interface {
	FMAProbe(iters int) (flops int64)
}
