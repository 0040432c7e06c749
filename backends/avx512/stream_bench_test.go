//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// abBatch is how many calls of one backend's kernel benchAB times at a time.
const abBatch = 16

// benchAB runs f2 (avx2) and f5 (avx512) in turns, abBatch calls each, and reports the
// time of one call of each and their ratio (speedup = avx2's time / avx512's): the two
// share whatever else the machine runs, so the ratio stays steady where ns/op does not.
func benchAB(b *testing.B, f2, f5 func()) {
	var d2, d5 time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		for j := 0; j < abBatch; j++ {
			f2()
		}
		t1 := time.Now()
		for j := 0; j < abBatch; j++ {
			f5()
		}
		d2, d5 = d2+t1.Sub(t0), d5+time.Since(t1)
	}
	calls := float64(b.N * abBatch)
	b.ReportMetric(float64(d2.Nanoseconds())/calls, "avx2-ns/call")
	b.ReportMetric(float64(d5.Nanoseconds())/calls, "avx512-ns/call")
	b.ReportMetric(float64(d2)/float64(d5), "speedup")
}

// BenchmarkStream compares the kernels outside the products of avx2 and avx512,
// single threaded, at the engine's shapes: vectors of 576, 768 and 2048 floats (the
// models' widths), RoPE over 9, 12 and 32 heads of 64, and one head of attention (64
// wide) over 128, 512 and 2048 cached positions; each reports both backends' time per
// call and the speedup (see benchAB).
//
//	go test -run XXX -bench Stream -count 5 ./backends/avx512
func BenchmarkStream(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(4, 12))
	var a2 avx2.Kernels
	var a5 Kernels
	for _, n := range []int{576, 768, 2048} {
		x, y, w, bias := randSlice(r, n), randSlice(r, n), randSlice(r, n), randSlice(r, n)
		dst := make([]float32, n)
		heads := n / 64
		cos, sin := randSlice(r, 32), randSlice(r, 32)
		xq, xk := make([]byte, dtype.RowBytes(dtype.Q8_0, n)), make([]byte, dtype.RowBytes(dtype.Q8_K, n))
		ops := func(k kernels.Kernels) map[string]func() {
			q8 := k.(kernels.Q8Kernels)
			return map[string]func(){
				"Dot":         func() { k.Dot(x, y) },
				"Softmax":     func() { copy(dst, x); k.Softmax(dst) },
				"RMSNorm":     func() { k.RMSNorm(dst, x, w, 1e-5) },
				"LayerNorm":   func() { k.LayerNorm(dst, x, w, bias, 1e-5) },
				"GELU":        func() { copy(dst, x); k.GELU(dst) },
				"SiLU":        func() { copy(dst, x); k.SiLU(dst) },
				"SwiGLU":      func() { copy(dst, x); k.SwiGLU(dst, y) },
				"ReLU":        func() { copy(dst, x); k.ReLU(dst) },
				"Add":         func() { k.Add(dst, x) },
				"Scale":       func() { k.Scale(dst, 1.0001) },
				"RoPE":        func() { k.RoPE(dst, heads, 64, cos, sin) },
				"RoPENeoX":    func() { k.RoPENeoX(dst, heads, 64, cos, sin) },
				"QuantizeQ8":  func() { q8.QuantizeQ8(x, xq) },
				"QuantizeQ8K": func() { q8.QuantizeQ8K(x[:n&^255], xk) },
			}
		}
		o2, o5 := ops(a2), ops(a5)
		for _, name := range []string{"Dot", "Softmax", "RMSNorm", "LayerNorm", "GELU", "SiLU", "SwiGLU",
			"ReLU", "Add", "Scale", "RoPE", "RoPENeoX", "QuantizeQ8", "QuantizeQ8K"} {
			b.Run(fmt.Sprintf("%s/n%d", name, n), func(b *testing.B) {
				copy(dst, x)
				benchAB(b, o2[name], o5[name])
			})
		}
	}
	const hd = 64
	for _, n := range []int{128, 512, 2048} {
		q, kc, vc := randSlice(r, hd), randSlice(r, n*hd), randSlice(r, n*hd)
		kh, vh := make([]uint16, n*hd), make([]uint16, n*hd)
		for i := range kh {
			kh[i], vh[i] = dtype.F32ToF16(kc[i]), dtype.F32ToF16(vc[i])
		}
		out, sc := make([]float32, hd), make([]float32, n)
		b.Run(fmt.Sprintf("Attention/n%d", n), func(b *testing.B) {
			benchAB(b, func() { a2.Attention(out, q, kc, vc, n, hd, 0.125, sc) },
				func() { a5.Attention(out, q, kc, vc, n, hd, 0.125, sc) })
		})
		b.Run(fmt.Sprintf("AttentionF16/n%d", n), func(b *testing.B) {
			benchAB(b, func() { a2.AttentionF16(out, q, kh, vh, n, hd, 0.125, sc) },
				func() { a5.AttentionF16(out, q, kh, vh, n, hd, 0.125, sc) })
		})
	}
}
