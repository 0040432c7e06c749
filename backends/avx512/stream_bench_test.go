//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// BenchmarkStream compares the kernels outside the products of avx2 and avx512 in the
// same run, single threaded, at the engine's shapes: vectors of 576, 768 and 2048
// floats (the models' widths), RoPE over 9, 12 and 32 heads of 64, and one head of
// attention (64 wide) over 128, 512 and 2048 cached positions.
//
//	go test -run XXX -bench Stream -count 5 ./backends/avx512
func BenchmarkStream(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(4, 12))
	impls := []kernels.Kernels{avx2.Kernels{}, Kernels{}}
	for _, n := range []int{576, 768, 2048} {
		x, y, w, bias := randSlice(r, n), randSlice(r, n), randSlice(r, n), randSlice(r, n)
		dst := make([]float32, n)
		heads := n / 64
		cos, sin := randSlice(r, 32), randSlice(r, 32)
		xq, xk := make([]byte, dtype.RowBytes(dtype.Q8_0, n)), make([]byte, dtype.RowBytes(dtype.Q8_K, n))
		for _, k := range impls {
			q8 := k.(kernels.Q8Kernels)
			ops := []struct {
				name string
				f    func()
			}{
				{"Dot", func() { k.Dot(x, y) }},
				{"Softmax", func() { copy(dst, x); k.Softmax(dst) }},
				{"RMSNorm", func() { k.RMSNorm(dst, x, w, 1e-5) }},
				{"LayerNorm", func() { k.LayerNorm(dst, x, w, bias, 1e-5) }},
				{"GELU", func() { copy(dst, x); k.GELU(dst) }},
				{"SiLU", func() { copy(dst, x); k.SiLU(dst) }},
				{"SwiGLU", func() { copy(dst, x); k.SwiGLU(dst, y) }},
				{"ReLU", func() { copy(dst, x); k.ReLU(dst) }},
				{"Add", func() { k.Add(dst, x) }},
				{"Scale", func() { k.Scale(dst, 1.0001) }},
				{"RoPE", func() { k.RoPE(dst, heads, 64, cos, sin) }},
				{"RoPENeoX", func() { k.RoPENeoX(dst, heads, 64, cos, sin) }},
				{"QuantizeQ8", func() { q8.QuantizeQ8(x, xq) }},
				{"QuantizeQ8K", func() { q8.QuantizeQ8K(x[:n&^255], xk) }},
			}
			for _, o := range ops {
				b.Run(fmt.Sprintf("%s/n%d/%s", o.name, n, k.Name()), func(b *testing.B) {
					copy(dst, x)
					for i := 0; i < b.N; i++ {
						o.f()
					}
				})
			}
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
		for _, k := range impls {
			b.Run(fmt.Sprintf("Attention/n%d/%s", n, k.Name()), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					k.Attention(out, q, kc, vc, n, hd, 0.125, sc)
				}
			})
			b.Run(fmt.Sprintf("AttentionF16/n%d/%s", n, k.Name()), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					k.AttentionF16(out, q, kh, vh, n, hd, 0.125, sc)
				}
			})
		}
	}
}
