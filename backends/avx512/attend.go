//go:build amd64 && !purego

package avx512

import "github.com/lmrun/lmrun/kernels"

// AttendScores implements kernels.ScoredAttention: Attention's scores are gemmRows's T = 1 products, those of MatMul on f32 rows.
func (Kernels) AttendScores(out, s, vc []float32, n, stride int, scale float32) {
	asm.AttendScores(out, s, vc, n, stride, scale)
}

var _ kernels.ScoredAttention = Kernels{}
