//go:build amd64 && !purego

package avx512

import (
	"fmt"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

func init() {
	backends.Register(backends.Backend{
		Name:     "avx512",
		Priority: 30,
		Arch:     "amd64",
		Requires: requires,
		New:      func() kernels.Kernels { return Kernels{} },
	})
}

// Kernels implements kernels.Kernels, kernels.Q8Kernels and kernels.PeakProber: MatMul
// on float32 weights with AVX-512, everything else by the embedded avx2.Kernels.
//
// The assembly takes raw pointers, so MatMul checks its slice lengths first (a violation
// panics, as the reference's bounds checks would); past those checks no kernel reads or
// writes outside the slices it was given.
type Kernels struct{ avx2.Kernels }

var (
	_ kernels.Kernels    = Kernels{}
	_ kernels.Q8Kernels  = Kernels{}
	_ kernels.PeakProber = Kernels{}
)

// Name implements kernels.Kernels.
func (Kernels) Name() string { return "avx512" }

// ScratchSize implements kernels.Kernels: avx2's, since the f32 products here need none.
func (k Kernels) ScratchSize(T, cols int) int { return k.Kernels.ScratchSize(T, cols) }

// MatMul implements kernels.Kernels. On float32 weights it runs the 16-lane
// register-tiled micro-kernels over blocks of rows and all T tokens: 4 rows × 6 tokens
// for T = 1 and for T ≥ 9 (gemm4x6), 3 rows × 8 tokens for T = 2..8 (gemm3x8), and
// gemm1x8 for the rows left over. Each (row, token) sum is taken exactly as avx2's
// MatMul takes it, so the results are avx2's bit for bit — in particular a token's
// results do not depend on T nor on the row split. Other weight types go to avx2.
func (k Kernels) MatMul(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if w.DType != dtype.F32 {
		k.Kernels.MatMul(dst, ld, x, T, w, bias, r0, r1, scratch)
		return
	}
	if r0 >= r1 || T <= 0 {
		return
	}
	n, wf := w.Cols, w.F32
	if wf == nil {
		wf = dtype.BytesToF32(w.Data)
	}
	if r0 < 0 || r1 > w.Rows || len(wf) < w.Rows*n || ld < r1 || len(x) < T*n ||
		len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("avx512: MatMul rows [%d,%d) of %d×%d, T=%d, ld=%d: len(x)=%d len(dst)=%d len(bias)=%d",
			r0, r1, w.Rows, n, T, ld, len(x), len(dst), len(bias)))
	}
	if n == 0 { // nothing to point the kernels at: an empty sum, plus the bias
		for t := 0; t < T; t++ {
			for r := r0; r < r1; r++ {
				var s float32
				if bias != nil {
					s += bias[r]
				}
				dst[t*ld+r] = s
			}
		}
		return
	}
	gemmRows(dst[r0:], ld, x, n, T, wf[r0*n:], n, n, from(bias, r0), r1-r0)
}

// gemmRows computes dst[t*ld+r] = x_t·w_r (+ bias[r]) for r < rows and t < T, x_t =
// x[t*ldx : t*ldx+k] and w_r = w[r*ldw : r*ldw+k] (k ≥ 1). Callers have checked the
// lengths.
func gemmRows(dst []float32, ld int, x []float32, ldx, T int, w []float32, ldw, k int, bias []float32, rows int) {
	r := 0
	if T >= 2 && T <= 8 {
		if g := rows / 3; g > 0 {
			gemm3x8(&dst[0], ld, &x[0], ldx, T, &w[0], ldw, k, at(bias, 0), g)
			r = 3 * g
		}
	} else if g := rows / 4; g > 0 {
		gemm4x6(&dst[0], ld, &x[0], ldx, T, &w[0], ldw, k, at(bias, 0), g)
		r = 4 * g
	}
	if r < rows {
		gemm1x8(&dst[r], ld, &x[0], ldx, T, &w[r*ldw], ldw, k, at(bias, r), rows-r)
	}
}

// from returns v[i:], or nil for a nil slice.
func from(v []float32, i int) []float32 {
	if v == nil {
		return nil
	}
	return v[i:]
}

// at returns &v[i], or nil for a nil slice.
func at(v []float32, i int) *float32 {
	if v == nil {
		return nil
	}
	return &v[i]
}
