package quant

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/lmrun/lmrun/dtype"
)

// QuantizeGPTQ quantizes the matrix w (rows × cols, row-major; cols a multiple of 32) to
// q4_0 blocks (ggml's layout, as QuantizeSearch writes it) with GPTQ (Frantar et al.,
// 2022): it minimises the error of the product rather than of the weights,
// Σ_rows (w − q)ᵀ H (w − q), where h (cols × cols, row-major, symmetric positive
// semi-definite) is the Hessian of the matrix's inputs, H = Σ x xᵀ over calibration
// inputs x (its scale does not matter).
//
// The method: H is dampened (a column whose diagonal is 0 — an input that is always 0 —
// gets H_ii = 1, then every H_ii gains 1% of the mean diagonal; if H is still not
// positive definite the damping grows tenfold, up to twice), U is the upper Cholesky
// factor of H⁻¹ (H⁻¹ = UᵀU), and each row is quantized column by column: at the start of
// each 32-column block the block's scale is chosen by QuantizeRowQ4_0Search's exact
// least-squares search on the block's current weights (the original weights plus the
// error compensation of earlier columns); column j is then rounded with that scale
// (the search's own levels for a weight that compensation did not change), and its error
// (w_j − q_j)/U_jj, times row j of U, is subtracted from the later columns of the row.
// Everything is computed in float64.
//
// With H = I, U is diagonal: nothing is propagated and the result is QuantizeSearch's,
// byte for byte. Rows are independent and quantized in parallel (up to GOMAXPROCS
// goroutines); the bytes do not depend on the split. Cost: O(cols³) for the
// factorisation plus O(rows·cols²) for the rows.
func QuantizeGPTQ(w []float32, rows, cols int, h []float64) ([]byte, error) {
	if rows <= 0 || cols <= 0 || cols%dtype.QBlock != 0 {
		return nil, fmt.Errorf("gptq: q4_0 needs rows of a multiple of %d elements, have %d × %d", dtype.QBlock, rows, cols)
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("gptq: %d weights for a %d × %d matrix", len(w), rows, cols)
	}
	if len(h) != cols*cols {
		return nil, fmt.Errorf("gptq: Hessian of %d values for %d columns (want %d)", len(h), cols, cols*cols)
	}
	u, err := gptqFactor(h, cols)
	if err != nil {
		return nil, err
	}
	rb := cols / dtype.QBlock * dtype.BlockQ4_0
	dst := make([]byte, rows*rb)
	workers := max(1, min(runtime.GOMAXPROCS(0), rows))
	var wg sync.WaitGroup
	for g := range workers {
		lo, hi := rows*g/workers, rows*(g+1)/workers
		wg.Go(func() {
			row := make([]float64, cols)
			var s q4searcher
			for r := lo; r < hi; r++ {
				for j, v := range w[r*cols : (r+1)*cols] {
					row[j] = float64(v)
				}
				gptqRow(&s, row, u, cols, dst[r*rb:(r+1)*rb])
			}
		})
	}
	wg.Wait()
	return dst, nil
}

// errNotPD is returned by cholesky for a matrix that is not positive definite.
var errNotPD = errors.New("not positive definite")

// gptqFactor returns the upper Cholesky factor U of the dampened H⁻¹ (H⁻¹ = UᵀU),
// n × n row-major. With J the reversal permutation, J·H·J = L·Lᵀ (L lower) gives
// H = R·Rᵀ with R = J·L·J upper, so H⁻¹ = R⁻ᵀ·R⁻¹ and U = R⁻¹ = J·L⁻¹·J: one Cholesky
// factorisation and one triangular inverse, no explicit H⁻¹.
func gptqFactor(h []float64, n int) ([]float64, error) {
	a := make([]float64, n*n)
	var mean float64
	for i := 0; i < n; i++ {
		if d := h[i*n+i]; !(d >= 0) || math.IsInf(d, 0) {
			return nil, fmt.Errorf("gptq: Hessian diagonal %d is %g", i, d)
		}
		for j := 0; j < n; j++ {
			a[(n-1-i)*n+(n-1-j)] = h[i*n+j]
		}
	}
	for i := 0; i < n; i++ {
		if a[i*n+i] == 0 {
			a[i*n+i] = 1 // a dead input: its column is quantized as is
		}
		mean += a[i*n+i]
	}
	mean /= float64(n)
	l := make([]float64, n*n)
	var err error
	for _, damp := range []float64{0.01, 0.1, 1} {
		copy(l, a)
		for i := 0; i < n; i++ {
			l[i*n+i] += damp * mean
		}
		if err = cholesky(l, n); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("gptq: Hessian %w even after damping", err)
	}
	li := lowerInverse(l, n)
	u := l // reuse: U = J·L⁻¹·J
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			u[i*n+j] = li[(n-1-i)*n+(n-1-j)]
		}
	}
	return u, nil
}

// cholesky overwrites the lower triangle of a (n × n, row-major, symmetric) with L,
// a = L·Lᵀ, and zeroes the strict upper triangle.
func cholesky(a []float64, n int) error {
	for i := 0; i < n; i++ {
		ri := a[i*n : i*n+n]
		for j := 0; j <= i; j++ {
			rj := a[j*n : j*n+j]
			s := ri[j]
			for k, v := range rj {
				s -= ri[k] * v
			}
			if i == j {
				if !(s > 0) || math.IsInf(s, 0) {
					return errNotPD
				}
				ri[i] = math.Sqrt(s)
			} else {
				ri[j] = s / a[j*n+j]
			}
		}
		for j := i + 1; j < n; j++ {
			ri[j] = 0
		}
	}
	return nil
}

// lowerInverse returns L⁻¹ of a lower triangular L (n × n, row-major), row by row:
// row i of X = L⁻¹ is (e_i − Σ_{k<i} L_ik·row k of X) / L_ii.
func lowerInverse(l []float64, n int) []float64 {
	x := make([]float64, n*n)
	for i := 0; i < n; i++ {
		xi := x[i*n : i*n+i+1]
		for k := 0; k < i; k++ {
			if c := l[i*n+k]; c != 0 {
				for j, v := range x[k*n : k*n+k+1] {
					xi[j] -= c * v
				}
			}
		}
		xi[i] += 1
		inv := 1 / l[i*n+i]
		for j := range xi {
			xi[j] *= inv
		}
	}
	return x
}

// gptqRow quantizes one row w (len n, updated in place) into dst with the factor u.
func gptqRow(s *q4searcher, w, u []float64, n int, dst []byte) {
	var xb [dtype.QBlock]float32
	var start [dtype.QBlock]float64
	for b := 0; b < n/dtype.QBlock; b++ {
		o := b * dtype.QBlock
		for j := range xb {
			start[j] = w[o+j]
			xb[j] = float32(w[o+j])
		}
		blk := dst[b*dtype.BlockQ4_0 : (b+1)*dtype.BlockQ4_0]
		s.block(xb[:], blk)
		d := float64(dtype.F16ToF32(uint16(blk[0]) | uint16(blk[1])<<8))
		for jj := 0; jj < dtype.QBlock; jj++ {
			j := o + jj
			sh, at := uint(4*(jj/16)), 2+jj%16
			q := float64(int(blk[at]>>sh&15) - 8)
			if w[j] != start[jj] && d != 0 && !math.IsInf(d, 0) {
				// Compensation moved the weight since the block's levels were chosen.
				q = min(max(roundHalfAway(w[j]/d), -8), 7)
				blk[at] = blk[at]&^(15<<sh) | byte(q+8)<<sh
			}
			e := (w[j] - d*q) / u[j*n+j]
			if e == 0 || math.IsNaN(e) || math.IsInf(e, 0) {
				continue
			}
			for k, c := range u[j*n+j+1 : (j+1)*n] {
				w[j+1+k] -= e * c
			}
		}
	}
}
