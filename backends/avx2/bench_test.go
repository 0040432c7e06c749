//go:build amd64 && !purego

package avx2

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/cpuid/v2"
	"github.com/viterin/vek/vek32"

	"github.com/lmrun/lmrun/backends/internal/benchmem"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// The benchmarks compare Kernels with kernels.Reference in the same run and report
// GFLOP/s (2 per multiply-add) and GB/s of weights or inputs read; BenchmarkPeak
// measures what the machine can do at all, single-threaded: FMA throughput with an
// asm loop of independent FMAs, and streaming read bandwidth over a buffer far larger
// than the last-level cache.
//
//	go test -run XXX -bench . -count 5 ./backends/avx2 | tee out.txt

func needAVX2(b testing.TB) {
	if !cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3) {
		b.Skip("CPU lacks AVX2/FMA3")
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func report(b *testing.B, flops, bytes float64) {
	s := b.Elapsed().Seconds() / float64(b.N)
	if flops > 0 {
		b.ReportMetric(flops/s/1e9, "GFLOP/s")
	}
	if bytes > 0 {
		b.ReportMetric(bytes/s/1e9, "GB/s")
	}
}

func BenchmarkPeak(b *testing.B) {
	needAVX2(b)
	b.Run("fma", func(b *testing.B) {
		const iters = 1 << 16
		for i := 0; i < b.N; i++ {
			fmaLoop(iters)
		}
		report(b, iters*12*16, 0)
	})
	// The int8 probes, in GOP/s (reported as GFLOP/s): AVX-VNNI and VPMADDUBSW.
	for _, p := range []struct {
		name string
		f    func(int)
		ok   bool
	}{{"int8-vnni", i8VNNILoop, cpuid.CPU.Supports(cpuid.AVXVNNI)}, {"int8-madd", i8MaddLoop, true}} {
		if !p.ok {
			continue
		}
		b.Run(p.name, func(b *testing.B) {
			const iters = 1 << 16
			for i := 0; i < b.N; i++ {
				p.f(iters)
			}
			report(b, iters*i8ProbeOps, 0)
		})
	}
	buf := bigBuffer()
	for _, p := range readProbes {
		b.Run(p.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				p.f(&buf[0], len(buf))
			}
			report(b, 0, float64(4*len(buf)))
		})
	}
}

// readProbes read a buffer as 2 or 4 concurrent sequential streams (a matrix–vector
// product reads 4 rows at a time); the machine's read bandwidth is the better of the two.
var readProbes = []struct {
	name string
	f    func(*float32, int) float32
}{{"read2", readBW2}, {"read4", readBW4}}

// bigBuffer returns 256 MiB of ones, 32 times the last-level cache of the machines
// lmrun runs on.
func bigBuffer() []float32 {
	buf := make([]float32, 64<<20)
	for i := range buf {
		buf[i] = 1
	}
	return buf
}

// BenchmarkBandwidth compares the decode product on weights far larger than the LLC
// with the read probes under the same conditions: each iteration runs both probes over
// 256 MiB and matvec over 256 MiB of 4096×4096 matrices, alternately, so that other
// load on a shared machine hits both alike. matvec-%-of-read is the ratio that the
// "≥ 80% of read bandwidth" target is about.
func BenchmarkBandwidth(b *testing.B) {
	needAVX2(b)
	buf := bigBuffer()
	const rows, cols = 4096, 4096
	x, dst := make([]float32, cols), make([]float32, rows)
	var tRead [2]time.Duration
	var tMV time.Duration
	for i := 0; i < b.N; i++ {
		for j, p := range readProbes {
			t0 := time.Now()
			p.f(&buf[0], len(buf))
			tRead[j] += time.Since(t0)
		}
		t0 := time.Now()
		for m := 0; m < len(buf)/(rows*cols); m++ {
			mv(dst, x, buf[m*rows*cols:], cols, cols, rows, nil)
		}
		tMV += time.Since(t0)
	}
	gb := float64(4*len(buf)) * float64(b.N) / 1e9
	read := max(gb/tRead[0].Seconds(), gb/tRead[1].Seconds())
	mv := gb / tMV.Seconds()
	b.ReportMetric(read, "read-GB/s")
	b.ReportMetric(mv, "matvec-GB/s")
	b.ReportMetric(100*mv/read, "matvec-%-of-read")
}

var impls = []kernels.Kernels{kernels.Reference{}, Kernels{}}

// BenchmarkMatVec is the decode product, T = 1, on rows×cols weights. "hot" reuses one
// matrix (it stays in cache when it fits); "cold" cycles through copies totalling at
// least 64 MiB, so every byte comes from memory as in a real decode step.
func BenchmarkMatVec(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(1, 1))
	for _, sh := range [][2]int{{768, 768}, {3072, 768}, {768, 3072}, {4096, 4096}} {
		rows, cols := sh[0], sh[1]
		copies := max(1, (64<<20)/(4*rows*cols))
		ws := make([]*kernels.Mat, copies)
		for i := range ws {
			ws[i], _ = kernels.NewMatF32(randSlice(r, rows*cols), rows, cols)
		}
		x, dst := randSlice(r, cols), make([]float32, rows)
		for _, temp := range []string{"hot", "cold"} {
			if temp == "cold" && copies == 1 && rows*cols*4 < 64<<20 {
				continue
			}
			for _, k := range impls {
				b.Run(fmt.Sprintf("%dx%d/%s/%s", rows, cols, temp, k.Name()), func(b *testing.B) {
					sc := kernels.NewScratch(k, 1, cols)
					for i := 0; i < b.N; i++ {
						w := ws[0]
						if temp == "cold" {
							w = ws[i%copies]
						}
						k.MatMul(dst, rows, x, 1, w, nil, 0, rows, sc)
					}
					report(b, 2*float64(rows*cols), 4*float64(rows*cols))
				})
			}
		}
	}
}

// BenchmarkGEMM is the prefill product, T tokens of K inputs against N×K weights:
// T128_K768_N3072 is GPT-2's FFN up-projection on a 128-token batch (the engine batches
// at most 64 tokens).
func BenchmarkGEMM(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(2, 2))
	for _, sh := range [][3]int{{128, 768, 3072}, {64, 768, 3072}, {64, 3072, 768}, {64, 4096, 4096}} {
		T, cols, rows := sh[0], sh[1], sh[2]
		w, _ := kernels.NewMatF32(randSlice(r, rows*cols), rows, cols)
		x, dst := randSlice(r, T*cols), make([]float32, T*rows)
		for _, k := range impls {
			b.Run(fmt.Sprintf("T%d_K%d_N%d/%s", T, cols, rows, k.Name()), func(b *testing.B) {
				sc := kernels.NewScratch(k, T, cols)
				for i := 0; i < b.N; i++ {
					k.MatMul(dst, rows, x, T, w, nil, 0, rows, sc)
				}
				report(b, 2*float64(T*rows*cols), 4*float64(rows*cols))
			})
		}
	}
}

// BenchmarkGEMMWiden is BenchmarkGEMM on f16 (kernels.NewMat's, so F16Finite), bf16 and
// q8_0 weights with float32 activations: the rows widened to float32 in scratch, then
// the f32 GEMM.
func BenchmarkGEMMWiden(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(3, 3))
	T, cols, rows := 64, 768, 3072
	x, dst := randSlice(r, T*cols), make([]float32, T*rows)
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16, dtype.Q8_0} {
		data, err := dtype.Quantize(dt, randSlice(r, rows*cols), cols)
		if err != nil {
			b.Fatal(err)
		}
		w, err := kernels.NewMat(dt, data, rows, cols)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%v/T%d_K%d_N%d", dt, T, cols, rows), func(b *testing.B) {
			sc := kernels.NewScratch(Kernels{}, T, cols)
			for i := 0; i < b.N; i++ {
				Kernels{}.MatMul(dst, rows, x, T, w, nil, 0, rows, sc)
			}
			report(b, 2*float64(T*rows*cols), float64(len(data)))
		})
	}
}

func BenchmarkDot(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{64, 768, 4096} {
		x, y := randSlice(r, n), randSlice(r, n)
		for _, k := range impls {
			b.Run(fmt.Sprintf("%d/%s", n, k.Name()), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					k.Dot(x, y)
				}
				report(b, 2*float64(n), 8*float64(n))
			})
		}
		b.Run(fmt.Sprintf("%d/vek", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				vek32.Dot(x, y)
			}
			report(b, 2*float64(n), 8*float64(n))
		})
	}
}

func BenchmarkAdd(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{768, 4096} {
		x, y := randSlice(r, n), randSlice(r, n)
		for _, k := range impls {
			b.Run(fmt.Sprintf("%d/%s", n, k.Name()), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					k.Add(x, y)
				}
				report(b, 0, 12*float64(n))
			})
		}
		b.Run(fmt.Sprintf("%d/vek", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				vek32.Add_Inplace(x, y)
			}
			report(b, 0, 12*float64(n))
		})
	}
}

func BenchmarkSoftmax(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(5, 5))
	const n = 1024
	src := randSlice(r, n)
	x := make([]float32, n)
	for _, k := range impls {
		b.Run(fmt.Sprintf("%d/%s", n, k.Name()), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				copy(x, src)
				k.Softmax(x)
			}
			report(b, 0, 4*n)
		})
	}
}

// BenchmarkAttention is one head (head_dim 64) over n cached positions, keys and values
// interleaved with a stride of 12 heads as in a KV cache row.
func BenchmarkAttention(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(6, 6))
	const hd, stride = 64, 768
	for _, n := range []int{256, 1024} {
		kc, vc := randSlice(r, n*stride), randSlice(r, n*stride)
		q, out, scores := randSlice(r, hd), make([]float32, hd), make([]float32, n)
		for _, k := range impls {
			b.Run(fmt.Sprintf("%d/%s", n, k.Name()), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					k.Attention(out, q, kc, vc, n, stride, 0.125, scores)
				}
				report(b, 4*float64(n*hd), 8*float64(n*hd))
			})
		}
	}
}

// BenchmarkAttentionF16 is BenchmarkAttention over a binary16 cache.
func BenchmarkAttentionF16(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(6, 6))
	const hd, stride = 64, 768
	half := func(v []float32) []uint16 {
		h := make([]uint16, len(v))
		for i, x := range v {
			h[i] = dtype.F32ToF16(x)
		}
		return h
	}
	for _, n := range []int{256, 1024} {
		kc, vc := half(randSlice(r, n*stride)), half(randSlice(r, n*stride))
		q, out, scores := randSlice(r, hd), make([]float32, hd), make([]float32, n)
		for _, k := range impls {
			b.Run(fmt.Sprintf("%d/%s", n, k.Name()), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					k.AttentionF16(out, q, kc, vc, n, stride, 0.125, scores)
				}
				report(b, 4*float64(n*hd), 4*float64(n*hd))
			})
		}
	}
}

func BenchmarkElementwise(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(7, 7))
	const n = 3072
	src, y, w := randSlice(r, n), randSlice(r, n), randSlice(r, n)
	x := make([]float32, n)
	for _, k := range impls {
		for _, op := range []struct {
			name string
			f    func()
		}{
			{"GELU", func() { k.GELU(x) }},
			{"SiLU", func() { k.SiLU(x) }},
			{"SwiGLU", func() { k.SwiGLU(x, y) }},
			{"RMSNorm", func() { k.RMSNorm(x, src, w, 1e-5) }},
			{"LayerNorm", func() { k.LayerNorm(x, src, w, y, 1e-5) }},
			{"RoPE", func() { k.RoPE(x, n/64, 64, w[:32], y[:32]) }},
		} {
			b.Run(fmt.Sprintf("%s%d/%s", op.name, n, k.Name()), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					copy(x, src)
					op.f()
				}
				report(b, 0, 4*n)
			})
		}
	}
}

// BenchmarkMatVecQ8 times MatMulQ8 (T = 1) on q8_0 and q4_0 weights: 768×768 stays in
// cache (compute), 4096×4096 streams from memory (bandwidth).
func BenchmarkMatVecQ8(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(1, 1))
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		for _, sh := range [][2]int{{768, 768}, {4096, 4096}} {
			rows, cols := sh[0], sh[1]
			data, _ := dtype.Quantize(dt, randSlice(r, rows*cols), cols)
			w, _ := kernels.NewMat(dt, data, rows, cols) // as the engine loads them
			xq := make([]byte, dtype.RowBytes(dtype.Q8_0, cols))
			kernels.QuantizeQ8(randSlice(r, cols), xq)
			dst := make([]float32, rows)
			sc := kernels.NewScratch(Kernels{}, 1, cols)
			b.Run(fmt.Sprintf("%v/%dx%d", dt, rows, cols), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					Kernels{}.MatMulQ8(dst, rows, xq, 1, w, nil, 0, rows, sc)
				}
				report(b, 2*float64(rows*cols), float64(len(data)))
			})
		}
	}
}

// BenchmarkMatVecK times MatMulQ8 (T = 1, q8_k activations) on k-quant weights (random
// super-blocks: lmrun has no k-quant quantizer), at the shapes of BenchmarkMatVecQ8 and
// a Llama-7B FFN (11008×4096): GB/s of weights as stored.
func BenchmarkMatVecK(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(1, 1))
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		for _, sh := range [][2]int{{768, 768}, {4096, 4096}, {11008, 4096}} {
			rows, cols := sh[0], sh[1]
			data := randKQuant(r, dt, rows*cols)
			w, _ := kernels.NewMat(dt, data, rows, cols)
			xq := make([]byte, dtype.RowBytes(dtype.Q8_K, cols))
			kernels.QuantizeQ8K(randSlice(r, cols), xq)
			dst := make([]float32, rows)
			sc := kernels.NewScratch(Kernels{}, 1, cols)
			b.Run(fmt.Sprintf("%v/%dx%d", dt, rows, cols), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					Kernels{}.MatMulQ8(dst, rows, xq, 1, w, nil, 0, rows, sc)
				}
				report(b, 2*float64(rows*cols), float64(len(data)))
			})
		}
	}
}

// BenchmarkQuantizeQ8K times the q8_k activation quantizer on a 4096-wide row.
func BenchmarkQuantizeQ8K(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randSlice(r, 4096)
	xq := make([]byte, dtype.RowBytes(dtype.Q8_K, len(x)))
	b.Run("avx2", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Kernels{}.QuantizeQ8K(x, xq)
		}
		report(b, 0, 4*float64(len(x)))
	})
}

// randKQuant returns n elements of random k-quant super-blocks of dtype dt with small
// normal f16 scales (2⁻¹⁴ to 2⁻¹³), as bench.RandomKQuant makes them.
func randKQuant(r *rand.Rand, dt dtype.DType, n int) []byte {
	_, bs := dt.Block()
	b := make([]byte, n/dtype.QKBlock*bs)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	half := func() uint16 { return 1<<10 | uint16(r.IntN(1024)) }
	for o := 0; o < len(b); o += bs {
		if dt == dtype.Q6_K {
			binary.LittleEndian.PutUint16(b[o+208:], half()|uint16(r.IntN(2))<<15)
			continue
		}
		binary.LittleEndian.PutUint16(b[o:], half())
		binary.LittleEndian.PutUint16(b[o+2:], half())
	}
	return b
}

// BenchmarkMatVecHalf times MatMul (T = 1) on f16 and bf16 weights.
func BenchmarkMatVecHalf(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(1, 1))
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
		for _, sh := range [][2]int{{768, 768}, {4096, 4096}} {
			rows, cols := sh[0], sh[1]
			data, err := dtype.Quantize(dt, randSlice(r, rows*cols), cols)
			if err != nil {
				b.Fatal(err)
			}
			x := randSlice(r, cols)
			dst := make([]float32, rows)
			sc := kernels.NewScratch(Kernels{}, 1, cols)
			for _, finite := range []bool{false, true} {
				if finite && dt != dtype.F16 {
					continue
				}
				// F16Finite lets f16 take the mix kernels (half the columns widened on
				// the integer pipes): NewMat's matrices find it out from their data, a
				// Mat built as a literal never claims it.
				w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: data}
				if finite {
					if w, err = kernels.NewMat(dt, data, rows, cols); err != nil {
						b.Fatal(err)
					}
				}
				name := fmt.Sprintf("%v/%dx%d", dt, rows, cols)
				if finite {
					name = fmt.Sprintf("%v-mix/%dx%d", dt, rows, cols)
				}
				b.Run(name, func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						Kernels{}.MatMul(dst, rows, x, 1, w, nil, 0, rows, sc)
					}
					report(b, 2*float64(rows*cols), float64(len(data)))
				})
			}
		}
	}
}

// BenchmarkMatMulQ8 times MatMulQ8 on q8_0 and q4_0 weights (quantized as the engine
// loads them) with the matrix–vector kernels per token ("mv"), the VPMADDUBSW GEMM
// ("maddubs"; "maddubs-packed" on q8_0 weights packed at load) and the AVX-VNNI GEMM
// ("vnni"), single threaded: T tokens of a 2048×768 matrix (an FFN of stories110m),
// GOP/s (2 per multiply-add).
func BenchmarkMatMulQ8(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(3, 3))
	const N, K = 2048, 768
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		data, _ := dtype.Quantize(dt, randSlice(r, N*K), K)
		w, _ := kernels.NewMat(dt, data, N, K)
		for _, T := range []int{2, 3, 4, 8, 32, 128} {
			xb := dtype.RowBytes(dtype.Q8_0, K)
			xq := make([]byte, T*xb)
			for t := 0; t < T; t++ {
				kernels.QuantizeQ8(randSlice(r, K), xq[t*xb:(t+1)*xb])
			}
			dst := make([]float32, T*N)
			for _, form := range []string{"mv", "maddubs", "maddubs-packed", "vnni"} {
				if form == "vnni" && !cpuid.CPU.Supports(cpuid.AVXVNNI) || form == "maddubs-packed" && dt != dtype.Q8_0 {
					continue
				}
				b.Run(fmt.Sprintf("%v/T%d/%s", dt, T, form), func(b *testing.B) {
					defer func(v, m bool) { useVNNI, useMadd = v, m }(useVNNI, useMadd)
					useVNNI, useMadd = form == "vnni", strings.HasPrefix(form, "maddubs")
					w := w
					if form == "maddubs-packed" {
						p := *w
						gemmMadd.Pack(&p)
						w = &p
					}
					sc := kernels.NewScratch(Kernels{}, T, K)
					for i := 0; i < b.N; i++ {
						Kernels{}.MatMulQ8(dst, N, xq, T, w, nil, 0, N, sc)
					}
					b.ReportMetric(2*float64(T*N*K)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GOP/s")
				})
			}
		}
	}
}

// BenchmarkMatMulQ8K times MatMulQ8 on k-quant weights (random super-blocks) with the
// matrix–vector kernels per token ("mv"), the k-quant GEMM with VPMADDWD ("madd") and
// with AVX-VNNI ("vnni") — the GEMMs called directly, so at T = 1 too — single threaded:
// T tokens of a 2048×2048 matrix, GOP/s (2 per multiply-add).
func BenchmarkMatMulQ8K(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(4, 4))
	const N, K = 2048, 2048
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q6_K} {
		w, _ := kernels.NewMat(dt, randKQuant(r, dt, N*K), N, K)
		for _, T := range []int{1, 2, 3, 8, 128} {
			xb := dtype.RowBytes(dtype.Q8_K, K)
			xq := make([]byte, T*xb)
			kernels.QuantizeQ8K(randSlice(r, T*K), xq)
			dst := make([]float32, T*N)
			for _, form := range []string{"mv", "madd", "vnni"} {
				if form == "vnni" && !cpuid.CPU.Supports(cpuid.AVXVNNI) {
					continue
				}
				b.Run(fmt.Sprintf("%v/T%d/%s", dt, T, form), func(b *testing.B) {
					defer func(v, m bool) { useVNNI, useMadd = v, m }(useVNNI, useMadd)
					useVNNI, useMadd = false, false
					sc := kernels.NewScratch(Kernels{}, T, K)
					for i := 0; i < b.N; i++ {
						switch form {
						case "vnni":
							kgemm.MatMulQ8K(dst, N, xq, T, w, nil, 0, N, sc)
						case "madd":
							kgemmMadd.MatMulQ8K(dst, N, xq, T, w, nil, 0, N, sc)
						default:
							Kernels{}.MatMulQ8(dst, N, xq, T, w, nil, 0, N, sc)
						}
					}
					b.ReportMetric(2*float64(T*N*K)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GOP/s")
				})
			}
		}
	}
}

// BenchmarkPrefill times the f32, f16 and bf16 products of a 128-token prompt, single
// threaded, on the shapes of 768-wide models' layers (K inputs, N rows: the attention,
// a 2048- and a 3072-row FFN's up and down products), in GFLOP/s and as a percentage
// of the FMA peak (fmaLoop). The weights rotate over copies of ≥ 64 MiB in all (twice
// L3), mapped in 4 KiB pages, so that they come from memory as a mapped model's do.
// Both figures count the thread's CPU time, not the wall clock, so that other
// processes on the machine disturb them less (they still do, through the caches and
// the core's other thread: compare figures of one run).
//
//	go test -run XXX -bench Prefill -count 5 ./backends/avx2
func BenchmarkPrefill(b *testing.B) {
	needAVX2(b)
	r := rand.New(rand.NewPCG(5, 5))
	const T = 128
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		for _, s := range [][2]int{{768, 768}, {768, 2048}, {2048, 768}, {768, 3072}, {3072, 768}} {
			K, N := s[0], s[1]
			size := dtype.RowBytes(dt, K) * N
			copies := max(1, (64<<20)/size)
			b.Run(fmt.Sprintf("%v/K%d_N%d", dt, K, N), func(b *testing.B) {
				mem := benchmem.SmallPages(b, copies*size)
				ws := make([]*kernels.Mat, copies)
				for i := range ws {
					data, err := dtype.Quantize(dt, randSlice(r, N*K), K)
					if err != nil {
						b.Fatal(err)
					}
					m := mem[i*size : (i+1)*size : (i+1)*size]
					copy(m, data)
					if ws[i], err = kernels.NewMat(dt, m, N, K); err != nil {
						b.Fatal(err)
					}
					ws[i].F16Finite() // found out once per matrix, as a model's are at load
				}
				x, dst := randSlice(r, T*K), make([]float32, T*N)
				sc := kernels.NewScratch(Kernels{}, T, K)
				benchmem.LockThread(b)
				peak := fmaPeak()
				i := 0 // the run, whose copy of the weights each takes in turn
				benchmem.ReportFLOPs(b, 2*float64(T*N*K), peak, func() {
					Kernels{}.MatMul(dst, N, x, T, ws[i%copies], nil, 0, N, sc)
					i++
				})
			})
		}
	}
}

// fmaPeak returns the FMA peak of the calling thread in FLOP/s, the best of a few runs
// of fmaLoop timed by threadTime.
func fmaPeak() float64 {
	const iters = 1 << 18
	return benchmem.BestRate(func() float64 { fmaLoop(iters); return iters * 12 * 16 })
}
