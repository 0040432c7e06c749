//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/backends/internal/benchmem"
	"github.com/lmrun/lmrun/backends/internal/qgemm/qgemmtest"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// BenchmarkMatMul compares the f32 products of avx2 and avx512 in the same run, single
// threaded, reporting GFLOP/s (2 per multiply-add) and GB/s of weights: T tokens of K
// inputs against N×K weights, N = 3072 (12 MiB: from L3) and N = 65536 (192 MiB: from
// DRAM).
//
//	go test -run XXX -bench MatMul ./backends/avx512
func BenchmarkMatMul(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(2, 2))
	impls := []kernels.Kernels{avx2.Kernels{}, Kernels{}}
	for _, N := range []int{3072, 65536} {
		K := 768
		w, _ := kernels.NewMatF32(randSlice(r, N*K), N, K)
		for _, T := range []int{1, 2, 4, 8, 16, 64} {
			x, dst := randSlice(r, T*K), make([]float32, T*N)
			for _, k := range impls {
				b.Run(fmt.Sprintf("T%d_K%d_N%d/%s", T, K, N, k.Name()), func(b *testing.B) {
					sc := kernels.NewScratch(k, T, K)
					for i := 0; i < b.N; i++ {
						k.MatMul(dst, N, x, T, w, nil, 0, N, sc)
					}
					s := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(2*float64(T*N*K)/s/1e9, "GFLOP/s")
					b.ReportMetric(4*float64(N*K)/s/1e9, "GB/s")
				})
			}
		}
	}
}

// BenchmarkMatMulHalf compares the f16 and bf16 products of avx2 and avx512 in the same
// run, single threaded: T tokens of K = 768 inputs against N×K weights, N = 3072 (4.5
// MiB: from L3) and N = 32768 (48 MiB: mostly from DRAM), GFLOP/s and GB/s of weights;
// for bf16 also avx512's product with the activations rounded to bfloat16
// (avx512-bf16act: RoundBF16, then MatMulBF16).
//
//	go test -run XXX -bench MatMulHalf ./backends/avx512
func BenchmarkMatMulHalf(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(3, 3))
	impls := []kernels.Kernels{avx2.Kernels{}, Kernels{}}
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
		for _, N := range []int{3072, 32768} {
			K := 768
			w, err := kernels.NewMat(dt, halfBits(r, dt, N*K, false), N, K)
			if err != nil {
				b.Fatal(err)
			}
			for _, T := range []int{1, 8, 128} {
				x, dst := randSlice(r, T*K), make([]float32, T*N)
				type impl struct {
					name string
					f    func(sc kernels.Scratch)
				}
				var runs []impl
				for _, k := range impls {
					runs = append(runs, impl{k.Name(), func(sc kernels.Scratch) { k.MatMul(dst, N, x, T, w, nil, 0, N, sc) }})
				}
				if dt == dtype.BF16 && hasBF16 { // activations rounded to bfloat16 (MatMulBF16)
					var k Kernels
					xb := make([]uint16, len(x))
					runs = append(runs, impl{"avx512-bf16act", func(sc kernels.Scratch) {
						k.RoundBF16(x, xb)
						k.MatMulBF16(dst, N, xb, T, w, nil, 0, N, sc)
					}})
				}
				for _, c := range runs {
					b.Run(fmt.Sprintf("%v/T%d_K%d_N%d/%s", dt, T, K, N, c.name), func(b *testing.B) {
						sc := kernels.NewScratch(Kernels{}, T, K)
						for i := 0; i < b.N; i++ {
							c.f(sc)
						}
						s := b.Elapsed().Seconds() / float64(b.N)
						b.ReportMetric(2*float64(T*N*K)/s/1e9, "GFLOP/s")
						b.ReportMetric(2*float64(N*K)/s/1e9, "GB/s")
					})
				}
			}
		}
	}
}

// BenchmarkPeak compares the FMA and int8 peaks at 8 lanes (avx2's probes: AVX-VNNI
// where the CPU has it) and at 16, on 1 and 2 threads (one probe per goroutine; the
// rate is the sum of theirs).
//
//	go test -run XXX -bench Peak -count 5 ./backends/avx512
func BenchmarkPeak(b *testing.B) {
	need(b)
	for _, k := range []kernels.Kernels{avx2.Kernels{}, Kernels{}} {
		for _, p := range []struct {
			what, unit string
			probe      func(int) int64
		}{
			{"fma", "GFLOP/s", k.(kernels.PeakProber).FMAProbe},
			{"int8", "GOP/s", k.(kernels.Int8Prober).Int8Probe},
		} {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", p.what, k.Name(), threads), func(b *testing.B) {
					var ops atomic.Int64
					var wg sync.WaitGroup
					for w := 0; w < threads; w++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for i := 0; i < b.N; i++ {
								ops.Add(p.probe(1 << 16))
							}
						}()
					}
					wg.Wait()
					b.ReportMetric(float64(ops.Load())/b.Elapsed().Seconds()/1e9, p.unit)
				})
			}
		}
	}
}

// BenchmarkMatMulQ8 compares MatMulQ8 on q8_0 and q4_0 weights (quantized as the engine
// loads them) of avx2 and avx512 in the same run, single threaded, each on the matrix as
// loaded and packed at load ("+repack": avx2's Repack, q8_0 only; avx512's GEMM's Pack,
// q8_0 and q4_0): T tokens of a 2048×768 matrix
// (an FFN of stories110m, from L2/L3) and, for T ≤ 32, of an 8192×4096 one (from DRAM),
// GOP/s (2 per multiply-add).
//
//	go test -run XXX -bench MatMulQ8 ./backends/avx512
func BenchmarkMatMulQ8(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(3, 3))
	impls := []kernels.Q8Kernels{avx2.Kernels{}, Kernels{}}
	for _, shape := range [][2]int{{2048, 768}, {8192, 4096}} {
		N, K := shape[0], shape[1]
		for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
			data, _ := dtype.Quantize(dt, randSlice(r, N*K), K)
			for _, T := range []int{1, 2, 4, 8, 32, 128} {
				if N > 2048 && T > 32 {
					continue
				}
				xb := dtype.RowBytes(dtype.Q8_0, K)
				xq := make([]byte, T*xb)
				for t := 0; t < T; t++ {
					kernels.QuantizeQ8(randSlice(r, K), xq[t*xb:(t+1)*xb])
				}
				dst := make([]float32, T*N)
				for _, k := range impls {
					for _, pack := range []bool{false, true} {
						w, _ := kernels.NewMat(dt, data, N, K)
						name := k.(kernels.Kernels).Name()
						if pack {
							// avx512's GEMM packs q4_0 too, which its Repack declines.
							if _, ok := k.(Kernels); ok && !gemm.Pack(w) || !ok && !k.(kernels.Repacker).Repack(w) {
								continue
							}
							name += "+repack"
						}
						b.Run(fmt.Sprintf("%dx%d/%v/T%d/%s", N, K, dt, T, name), func(b *testing.B) {
							sc := kernels.NewScratch(k.(kernels.Kernels), T, K)
							for i := 0; i < b.N; i++ {
								k.MatMulQ8(dst, N, xq, T, w, nil, 0, N, sc)
							}
							b.ReportMetric(2*float64(T*N*K)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GOP/s")
						})
					}
				}
			}
		}
	}
}

// BenchmarkMatMulQ8K compares MatMulQ8 on q4_k, q5_k and q6_k weights of avx2 (its YMM
// k-quant GEMM from T = 2, one token at a time at T = 1) and avx512 (the k-quant GEMM
// from T = 2) in the same run, single threaded: T
// tokens of a 2048×2048 matrix, GOP/s (2 per multiply-add).
//
//	go test -run XXX -bench MatMulQ8K ./backends/avx512
func BenchmarkMatMulQ8K(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(3, 3))
	impls := []kernels.Q8Kernels{avx2.Kernels{}, Kernels{}}
	const N, K = 2048, 2048
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		w, _ := kernels.NewMat(dt, qgemmtest.KBlocks(r, dt, N*K/dtype.QKBlock, false), N, K)
		for _, T := range []int{1, 2, 4, 8, 32, 128} {
			xb := dtype.RowBytes(dtype.Q8_K, K)
			xq := make([]byte, T*xb)
			for t := 0; t < T; t++ {
				kernels.QuantizeQ8K(randSlice(r, K), xq[t*xb:(t+1)*xb])
			}
			dst := make([]float32, T*N)
			for _, k := range impls {
				name := k.(kernels.Kernels).Name()
				b.Run(fmt.Sprintf("%v/T%d/%s", dt, T, name), func(b *testing.B) {
					sc := kernels.NewScratch(k.(kernels.Kernels), T, K)
					for i := 0; i < b.N; i++ {
						k.MatMulQ8(dst, N, xq, T, w, nil, 0, N, sc)
					}
					b.ReportMetric(2*float64(T*N*K)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GOP/s")
				})
			}
		}
	}
}

// BenchmarkPrefill times avx512's f32 and f16 products of a 128-token prompt, single
// threaded, on the shapes of 768-wide models' layers (K inputs, N rows: the attention,
// a 2048- and a 3072-row FFN's up and down products) and a classifier, in GFLOP/s and
// as a percentage of the FMA peak (fmaLoop). Both figures count the thread's CPU time,
// not the wall clock, so that other processes on the machine disturb them less (they
// still do, through the caches and the core's other thread: compare figures of one
// run).
//
//	go test -run XXX -bench Prefill -count 5 ./backends/avx512
func BenchmarkPrefill(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(4, 4))
	k := Kernels{}
	const T = 128
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16} {
		for _, s := range [][2]int{{768, 768}, {768, 2048}, {2048, 768}, {768, 3072}, {3072, 768}, {768, 32000}} {
			K, N := s[0], s[1]
			var w *kernels.Mat
			var err error
			if dt == dtype.F32 {
				w, err = kernels.NewMatF32(randSlice(r, N*K), N, K)
			} else {
				w, err = kernels.NewMat(dt, halfBits(r, dt, N*K, false), N, K)
			}
			if err != nil {
				b.Fatal(err)
			}
			x, dst := randSlice(r, T*K), make([]float32, T*N)
			b.Run(fmt.Sprintf("%v/K%d_N%d", dt, K, N), func(b *testing.B) {
				sc := kernels.NewScratch(k, T, K)
				benchmem.LockThread(b)
				peak := fmaPeak()
				benchmem.ReportFLOPs(b, 2*float64(T*N*K), peak, func() { k.MatMul(dst, N, x, T, w, nil, 0, N, sc) })
			})
		}
	}
}

// fmaPeak returns the FMA peak of the calling thread in FLOP/s, the best of a few runs
// of fmaLoop timed by the thread's CPU time.
func fmaPeak() float64 {
	const iters = 1 << 18
	return benchmem.BestRate(func() float64 { fmaLoop(iters); return iters * 16 * 32 })
}
