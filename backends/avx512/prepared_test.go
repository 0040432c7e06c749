//go:build amd64 && !purego

package avx512

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// TestMatMulPreparedEqualsMatMul checks that a product on x laid out once by PrepareX
// — over several token ranges, each with its own scratch, as the engine's threads do —
// and then taken in row ranges by MatMulPrepared gives MatMul's bits, writes nothing
// outside its rows, and that x prepared for one matrix serves another of the same
// XLayout. Shapes cover every layout: f16 with and without non-finite halves (the two
// column orders), bf16, rows long enough to go part by part, a Cols%8 tail, f32 rows a
// multiple of 512 columns (padded) and f32 rows that take x as it is.
func TestMatMulPreparedEqualsMatMul(t *testing.T) {
	need(t)
	var k Kernels
	r := rand.New(rand.NewPCG(21, 22))
	type shape struct {
		dt       dtype.DType
		rows, n  int
		specials bool
	}
	shapes := []shape{
		{dtype.F16, 70, 768, false}, {dtype.F16, 70, 768, true}, {dtype.BF16, 70, 768, false},
		{dtype.F16, 45, 2048, false}, {dtype.BF16, 45, 3072, false}, {dtype.F16, 37, 1000, false},
		{dtype.F16, 37, 2048 + 12, true}, {dtype.F32, 50, 512, false}, {dtype.F32, 50, 2048, false},
		{dtype.F32, 50, 768, false},
	}
	for _, sh := range shapes {
		mat := func() *kernels.Mat {
			var w *kernels.Mat
			var err error
			if sh.dt == dtype.F32 {
				w, err = kernels.NewMatF32(randSlice(r, sh.rows*sh.n), sh.rows, sh.n)
			} else {
				w, err = kernels.NewMat(sh.dt, halfBits(r, sh.dt, sh.rows*sh.n, sh.specials), sh.rows, sh.n)
			}
			if err != nil {
				t.Fatal(err)
			}
			return w
		}
		w, w2 := mat(), mat()
		bias := randSlice(r, sh.rows)
		for _, T := range []int{1, 2, 3, 9, 17, 64} {
			x := randSlice(r, T*sh.n)
			l := k.XLayout(T, w)
			if l != k.XLayout(T, w2) {
				t.Fatalf("%v %d×%d T %d: layouts %#x and %#x of two like matrices", sh.dt, sh.rows, sh.n, T, l, k.XLayout(T, w2))
			}
			if (T > 1 && sh.n == 768 && sh.dt != dtype.F32 && !sh.specials) != (l != 0) && sh.n == 768 {
				t.Errorf("%v %d×%d T %d: layout %#x: mix order needs x arranged, no other product on 768 columns does", sh.dt, sh.rows, sh.n, T, l)
			}
			var xp []float32
			if l != 0 {
				xp = make([]float32, k.PreparedXSize(T, sh.n))
				for i := range xp {
					xp[i] = float32(math.NaN())
				}
				for t0 := 0; t0 < T; {
					t1 := min(T, t0+1+r.IntN(8))
					k.PrepareX(xp, x, T, w, t0, t1, make(kernels.Scratch, k.ScratchSize(T, sh.n)))
					t0 = t1
				}
			}
			ld := sh.rows + 5
			for _, m := range []*kernels.Mat{w, w2} {
				for _, b := range [][]float32{nil, bias} {
					for _, rr := range [][2]int{{0, sh.rows}, {3, sh.rows - 5}, {0, 2}, {sh.rows / 2, sh.rows/2 + 7}} {
						want, got := make([]float32, T*ld), make([]float32, T*ld)
						for i := range want {
							want[i], got[i] = float32(i), float32(i)
						}
						k.MatMul(want, ld, x, T, m, b, rr[0], rr[1], make(kernels.Scratch, k.ScratchSize(T, sh.n)))
						k.MatMulPrepared(got, ld, x, xp, T, m, b, rr[0], rr[1], make(kernels.Scratch, k.ScratchSize(T, sh.n)))
						for i := range want {
							if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
								t.Fatalf("%v %d×%d (layout %#x) T %d bias %v rows %v: dst[%d] = %v, MatMul %v",
									sh.dt, sh.rows, sh.n, l, T, b != nil, rr, i, got[i], want[i])
							}
						}
					}
				}
			}
		}
	}
}
