//go:build amd64 && !purego

package avx2

import "github.com/lmrun/lmrun/kernels"

// AttendScores implements kernels.ScoredAttention: Attention's scores are mv's, MatMul's T = 1 product on f32 rows.
func (Kernels) AttendScores(out, s, vc []float32, n, stride int, scale float32) {
	asm.AttendScores(out, s, vc, n, stride, scale)
}

var _ kernels.ScoredAttention = Kernels{}
