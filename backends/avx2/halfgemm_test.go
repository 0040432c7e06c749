//go:build amd64 && !purego

package avx2

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// TestMatMulHalfWidenInGEMM: on f16 and bf16 rows of whole 32-column units, a prefill
// widens each chunk of rows in the GEMM of the chunk before (gemmRowsCv), in the order
// of the matrix (plain f16 with an infinity, f16 mix, bf16 mix); every token's results
// are still the bits it gets alone (T = 1), for row ranges that take one chunk, several,
// and a part of one, with and without bias, on rows shorter and longer than a segment
// (there, and on rows of 32 columns, with the inputs split for gemm4s on whole blocks of
// four rows); with either gemmSeg.
func TestMatMulHalfWidenInGEMM(t *testing.T) {
	withGemmSegs(t, testMatMulHalfWidenInGEMM)
}

func testMatMulHalfWidenInGEMM(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, c := range []struct {
		dt   dtype.DType
		inf  bool
		cols int
	}{{dtype.F16, false, 32}, {dtype.BF16, false, 32}, {dtype.F16, false, 96}, {dtype.F16, true, 96}, {dtype.BF16, false, 96}, {dtype.F16, false, 768},
		{dtype.BF16, false, 768}, {dtype.F16, true, 1024}, {dtype.F16, false, 2048}, {dtype.BF16, false, 2080}} {
		rows, n := 75, c.cols
		data := make([]byte, 2*rows*n)
		for i := 0; i < rows*n; i++ {
			v := float32(r.NormFloat64())
			h := uint16(math.Float32bits(v) >> 16)
			if c.dt == dtype.F16 {
				h = dtype.F32ToF16(v)
			}
			binary.LittleEndian.PutUint16(data[2*i:], h)
		}
		if c.inf {
			binary.LittleEndian.PutUint16(data[2*(rows*n/2):], 0x7c00)
		}
		w, err := kernels.NewMat(c.dt, data, rows, n)
		if err != nil {
			t.Fatal(err)
		}
		if want := c.dt == dtype.F16 && !c.inf; w.F16Finite() != want {
			t.Fatalf("%v inf=%v: F16Finite = %v", c.dt, c.inf, !want)
		}
		checkTokensAlone(t, r, w, [][2]int{{0, rows}, {5, 70}, {3, 20}, {4, 72}}, fmt.Sprintf("%v inf=%v cols=%d", c.dt, c.inf, n))
	}
}

// checkTokensAlone checks that MatMul on w gives each of 40 random tokens, in products
// of T = 2, 3, 7 and 40 of them over the row ranges rgs, with and without bias, the
// bits it gets alone (T = 1); what names the case in failures.
func checkTokensAlone(t *testing.T, r *rand.Rand, w *kernels.Mat, rgs [][2]int, what string) {
	t.Helper()
	k := Kernels{}
	rows, n := w.Rows, w.Cols
	const nx = 40
	x, bias := randSlice(r, nx*n), randSlice(r, rows)
	sc := kernels.NewScratch(k, nx, n)
	for _, b := range [][]float32{nil, bias} {
		alone := make([]float32, nx*rows)
		for t0 := 0; t0 < nx; t0++ {
			k.MatMul(alone[t0*rows:], rows, x[t0*n:], 1, w, b, 0, rows, sc)
		}
		for _, T := range []int{2, 3, 7, nx} {
			for _, rg := range rgs {
				got := make([]float32, T*rows)
				k.MatMul(got, rows, x, T, w, b, rg[0], rg[1], sc)
				for tt := 0; tt < T; tt++ {
					for o := rg[0]; o < rg[1]; o++ {
						if g, a := got[tt*rows+o], alone[tt*rows+o]; math.Float32bits(g) != math.Float32bits(a) {
							t.Fatalf("%s bias=%v T=%d rows %v: token %d row %d = %v, alone %v", what, b != nil, T, rg, tt, o, g, a)
						}
					}
				}
			}
		}
	}
}
