package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
)

// TestAttentionF16 checks the f16-cache attention against Attention on the same cache
// converted to float32: the maths is the same, so the results must be bit-identical.
func TestAttentionF16(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var ref Reference
	for _, hd := range []int{1, 7, 64} {
		for _, n := range []int{1, 5, 40} {
			stride := 2*hd + 3
			k16, v16 := make([]uint16, n*stride), make([]uint16, n*stride)
			k32, v32 := make([]float32, n*stride), make([]float32, n*stride)
			for i := range k16 {
				k16[i], v16[i] = dtype.F32ToF16(float32(r.NormFloat64())), dtype.F32ToF16(float32(r.NormFloat64()))
				k32[i], v32[i] = dtype.F16ToF32(k16[i]), dtype.F16ToF32(v16[i])
			}
			q := make([]float32, hd)
			for i := range q {
				q[i] = float32(r.NormFloat64())
			}
			got, want := make([]float32, hd), make([]float32, hd)
			ref.AttentionF16(got, q, k16, v16, n, stride, 0.3, make([]float32, n))
			ref.Attention(want, q, k32, v32, n, stride, 0.3, make([]float32, n))
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("hd=%d n=%d: out[%d] = %v, f32 cache gives %v", hd, n, i, got[i], want[i])
				}
			}
		}
	}
}
