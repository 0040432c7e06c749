//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

func needBF16(t testing.TB) {
	need(t)
	if !cpuid.CPU.Supports(cpuid.AVX512BF16) {
		t.Skip("CPU lacks AVX512_BF16")
	}
}

func toBF16(v []float32) []uint16 {
	h := make([]uint16, len(v))
	for i, f := range v {
		h[i] = uint16(math.Float32bits(f) >> 16)
	}
	return h
}

// TestGemmBF16Probe checks the scaled VDPBF16PS tile against float64 sums of the same
// bfloat16 products (exact in float32 and float64), within float32 rounding of the
// sums, for a shape with several token blocks and row groups.
func TestGemmBF16Probe(t *testing.T) {
	needBF16(t)
	r := rand.New(rand.NewPCG(4, 4))
	N, K, T := 8, 96, 12
	w, x := toBF16(randSlice(r, N*K)), toBF16(randSlice(r, T*K))
	for _, scale := range []float32{1, 0.375} {
		dst := make([]float32, T*N)
		gemmBF16Sx46(&dst[0], N, &x[0], K, T, &w[0], K, K, N/4, scale)
		for t0 := 0; t0 < T; t0++ {
			for o := 0; o < N; o++ {
				var s, a float64
				for i := 0; i < K; i++ {
					p := float64(dtype.BF16ToF32(w[o*K+i])) * float64(dtype.BF16ToF32(x[t0*K+i])) * float64(scale)
					s += p
					a += math.Abs(p)
				}
				if g := float64(dst[t0*N+o]); math.Abs(g-s) > 1e-6*a || g == 0 {
					t.Fatalf("scale %v: [%d,%d] = %v, want %v", scale, t0, o, g, s)
				}
			}
		}
	}
}

// BenchmarkBF16Activations measures what VDPBF16PS gives a prefill on bf16 weights,
// single threaded, T = 126 tokens of K = 768 against N = 3072 rows (4.5 MiB of weights,
// from L3), in GFLOP/s (2 per product):
//
//   - MatMul: float32 activations (rows widened to float32, then the f32 tiles);
//
//   - f32tiles: the f32 tiles alone, on 16 rows widened once;
//
//   - MatMulBF16: activations rounded to bfloat16 (llama.cpp's way), VDPBF16PS tiles;
//
//   - roundBF16: the same, the activations' rounding (RoundBF16) included;
//
//   - q8scaled: gemmBF16Sx46, every 32 columns' sum scaled as MatMulQ8's contract for
//     bf16 weights with q8_0 activations asks.
//
//     go test -run XXX -bench BF16Activations ./backends/avx512
func BenchmarkBF16Activations(b *testing.B) {
	needBF16(b)
	r := rand.New(rand.NewPCG(5, 5))
	N, K, T := 3072, 768, 126
	wv := randSlice(r, N*K)
	w := bf16Mat(b, wv, N, K)
	wh := toBF16(wv)
	xv := randSlice(r, T*K)
	xh := toBF16(xv)
	dst := make([]float32, T*N)
	var k Kernels
	run := func(name string, f func()) {
		b.Run(fmt.Sprintf("T%d_K%d_N%d/%s", T, K, N, name), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				f()
			}
			s := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(2*float64(T*N*K)/s/1e9, "GFLOP/s")
		})
	}
	sc := kernels.NewScratch(k, T, K)
	run("MatMul", func() { k.MatMul(dst, N, xv, T, w, nil, 0, N, sc) })
	wf := make([]float32, 16*K) // 16 rows widened once: the f32 tiles alone
	for i := range wf {
		wf[i] = dtype.BF16ToF32(wh[i])
	}
	run("f32tiles", func() {
		for a := 0; a < N; a += 16 {
			gemmRows(dst[a:], N, xv, K, T, wf, K, K, nil, 16)
		}
	})
	run("MatMulBF16", func() { k.MatMulBF16(dst, N, xh, T, w, nil, 0, N, sc) })
	run("roundBF16", func() {
		k.RoundBF16(xv, xh)
		k.MatMulBF16(dst, N, xh, T, w, nil, 0, N, sc)
	})
	run("q8scaled", func() {
		for a := 0; a < N; a += 16 {
			gemmBF16Sx46(&dst[a], N, &xh[0], K, T, &wh[a*K], K, K, 4, 0.5)
		}
	})
}

// BenchmarkMatMulBF16Decode compares, for one token (T = 1, decode), MatMul on bf16
// weights (f32 activations) with MatMulBF16, on N×768 weights from L3 (N = 3072) and
// from DRAM (N = 32768), in GB/s of weights.
func BenchmarkMatMulBF16Decode(b *testing.B) {
	needBF16(b)
	r := rand.New(rand.NewPCG(6, 6))
	var k Kernels
	for _, N := range []int{3072, 32768} {
		K := 768
		wv := randSlice(r, N*K)
		w := bf16Mat(b, wv, N, K)
		xv := randSlice(r, K)
		xh := toBF16(xv)
		dst := make([]float32, N)
		sc := kernels.NewScratch(k, 1, K)
		for _, c := range []struct {
			name string
			f    func()
		}{
			{"MatMul", func() { k.MatMul(dst, N, xv, 1, w, nil, 0, N, sc) }},
			{"MatMulBF16", func() { k.MatMulBF16(dst, N, xh, 1, w, nil, 0, N, sc) }},
		} {
			b.Run(fmt.Sprintf("K%d_N%d/%s", K, N, c.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					c.f()
				}
				b.ReportMetric(2*float64(N*K)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GB/s")
			})
		}
	}
}

// BenchmarkRoundBF16 compares rounding 128×768 activations to bfloat16 in Go
// (kernels.RoundBF16) and with roundBF16, in ns per element.
func BenchmarkRoundBF16(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(7, 7))
	x := randSlice(r, 128*768)
	dst := make([]uint16, len(x))
	for _, c := range []struct {
		name string
		f    func([]float32, []uint16)
	}{{"go", kernels.RoundBF16}, {"avx512", Kernels{}.RoundBF16}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c.f(x, dst)
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/float64(len(x))*1e9, "ns/elem")
		})
	}
}
