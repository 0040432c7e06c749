package kernels

// PeakProber is implemented by backends that can measure the machine's arithmetic peak:
// FMAProbe runs iters iterations of a loop of independent vector multiply-adds that
// keeps every FMA unit busy, and returns the number of floating-point operations done
// (2 per multiply-add lane). Benchmarks report kernel speed as a fraction of it.
type PeakProber interface {
	FMAProbe(iters int) (flops int64)
}

// Int8Prober is implemented by backends that can measure the machine's int8 peak, the
// limit of the integer products of block-quantized weights (q8_0, q4_0, the k-quants)
// with quantized activations: Int8Probe runs iters iterations of a loop of independent
// multiply-adds of byte pairs into int32 lanes, with the instructions the backend's
// int8 products use, and returns the number of int8 operations done, 2 per multiply-add
// of a byte pair as llama.cpp and Intel count int8 OPS (widening and accumulating
// instructions that multiply nothing count none). A backend without one reports no
// int8 peak.
type Int8Prober interface {
	Int8Probe(iters int) (ops int64)
}
