package backends_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// TestMatMulBF16: backends that implement kernels.BF16Kernels against kernels.MatMulBF16
// on activations from kernels.RoundBF16, within the contract's bound: the products are
// exact, so only the float32 sums differ, |Δ| ≤ tolDot · (Σ_i |w_i·x_i| + |bias|) (the
// values here are far from denormal), NaN and infinities exactly where the reference
// has them; row t alone (T = 1) and row ranges give the same bits; nothing is written
// past the rows asked for.
func TestMatMulBF16(t *testing.T) {
	forEachWith(t, "bf16-activation kernels", func(t *testing.T, k kernels.Kernels, bk kernels.BF16Kernels) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, cols := range []int{1, 7, 31, 32, 33, 64, 100, 288, 800, 2080} {
			for si, sh := range [][2]int{{1, 1}, {1, 13}, {2, 5}, {3, 9}, {6, 8}, {7, 6}, {13, 21}, {64, 5}} {
				T, rows := sh[0], sh[1]
				if T*cols > 64*800 {
					continue
				}
				wv := randVec(r, rows*cols, 1)
				if si%3 == 2 {
					wv[r.IntN(len(wv))] = float32(math.Inf(1 - 2*r.IntN(2)))
					wv[r.IntN(len(wv))] = float32(math.NaN())
				}
				wh := make([]uint16, len(wv))
				kernels.RoundBF16(wv, wh)
				data := make([]byte, 2*len(wh))
				for i, h := range wh {
					data[2*i], data[2*i+1] = byte(h), byte(h>>8)
				}
				w, err := kernels.NewMat(dtype.BF16, data, rows, cols)
				if err != nil {
					t.Fatal(err)
				}
				xb := make([]uint16, T*cols)
				kernels.RoundBF16(randVec(r, T*cols, 2), xb)
				var bias []float32
				if si%2 == 1 {
					bias = randVec(r, rows, 1)
				}
				ld := rows + si%3
				sc := kernels.NewScratch(k, T, cols)
				want, whole := make([]float32, T*ld), make([]float32, T*ld)
				for i := range whole {
					whole[i] = sentinel
				}
				kernels.MatMulBF16(want, ld, xb, T, w, bias, 0, rows)
				bk.MatMulBF16(whole, ld, xb, T, w, bias, 0, rows, sc)
				wr, xr := make([]float32, cols), make([]float32, cols)
				for o := 0; o < ld; o++ {
					if o < rows {
						w.RowF32(o, wr)
					}
					for t0 := 0; t0 < T; t0++ {
						i := t0*ld + o
						if o >= rows {
							if whole[i] != sentinel {
								t.Fatalf("T=%d %dx%d: wrote past the rows at [%d,%d]", T, rows, cols, t0, o)
							}
							continue
						}
						for j := range xr {
							xr[j] = dtype.BF16ToF32(xb[t0*cols+j])
						}
						tol := tolDot * absDot(xr, wr)
						if bias != nil {
							tol += tolDot * math.Abs(float64(bias[o]))
						}
						if !agree(whole[i], want[i], tol) {
							t.Fatalf("T=%d %dx%d bias=%v: [%d,%d] = %v, reference %v", T, rows, cols, bias != nil, t0, o, whole[i], want[i])
						}
					}
				}
				got := make([]float32, T*ld)
				ranges := split(r, rows)
				for _, rg := range ranges {
					bk.MatMulBF16(got, ld, xb, T, w, bias, rg[0], rg[1], sc)
				}
				one := make([]float32, ld)
				for t0 := 0; t0 < T; t0++ {
					bk.MatMulBF16(one, ld, xb[t0*cols:(t0+1)*cols], 1, w, bias, 0, rows, kernels.NewScratch(k, 1, cols))
					for o := 0; o < rows; o++ {
						i := t0*ld + o
						if math.Float32bits(got[i]) != math.Float32bits(whole[i]) || math.Float32bits(one[o]) != math.Float32bits(whole[i]) {
							t.Fatalf("T=%d %dx%d: [%d,%d] = %v whole, %v split %v, %v alone", T, rows, cols, t0, o, whole[i], got[i], ranges, one[o])
						}
					}
				}
			}
		}
	})
}

// TestRoundBF16: a backend's RoundBF16 writes the package's bits, for every length up to
// past a few vector widths (so the masked tails run), at unaligned starts, on random
// bits (NaNs, infinities, denormals, ties included) and on values that round up past
// the largest finite bfloat16.
func TestRoundBF16(t *testing.T) {
	forEachWith(t, "bf16-activation kernels", func(t *testing.T, k kernels.Kernels, bk kernels.BF16Kernels) {
		r := rand.New(rand.NewPCG(23, 24))
		specials := []uint32{0x7f800000, 0xff800000, 0x7f800001, 0xffc00000, 0x7fffffff, 0x7f7fffff, 0xff7fffff,
			0x3f808000, 0x3f818000, 0x00008000, 0x80018000, 0, 0x80000000, 0x7f7f8000}
		for n := 0; n <= 80; n++ {
			for off := 0; off < 3; off++ {
				x := make([]float32, off+n)
				for i := range x {
					if r.IntN(4) == 0 {
						x[i] = math.Float32frombits(specials[r.IntN(len(specials))])
					} else {
						x[i] = math.Float32frombits(r.Uint32())
					}
				}
				want := make([]uint16, n+1)
				got := make([]uint16, n+1)
				got[n], want[n] = 0xbeef, 0xbeef
				kernels.RoundBF16(x[off:], want)
				bk.RoundBF16(x[off:], got)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("n=%d off=%d: [%d] of %#08x = %#04x, want %#04x", n, off, i, math.Float32bits(x[off+min(i, n-1)]), got[i], want[i])
					}
				}
			}
		}
	})
}
