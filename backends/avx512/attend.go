//go:build amd64 && !purego

package avx512

import (
	"fmt"

	"github.com/lmrun/lmrun/kernels"
)

// AttendScores implements kernels.ScoredAttention: Attention's scores are gemmRows's
// T = 1 products, those of MatMul on f32 rows.
func (k Kernels) AttendScores(out, s, vc []float32, n, stride int, scale float32) {
	hd := len(out)
	if n <= 0 { // no positions: an empty sum, as Attention's
		clear(out)
		return
	}
	if stride < 0 || len(s) < n || len(vc) < (n-1)*stride+hd {
		panic(fmt.Sprintf("avx512: AttendScores over %d positions of stride %d, head %d: len(s)=%d len(v)=%d",
			n, stride, hd, len(s), len(vc)))
	}
	s = s[:n]
	k.Scale(s, scale)
	k.Softmax(s)
	wsum(&out[0], &vc[0], stride, &s[0], n, hd)
}

var _ kernels.ScoredAttention = Kernels{}
