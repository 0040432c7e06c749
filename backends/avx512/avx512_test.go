//go:build amd64 && !purego

package avx512

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

func need(t testing.TB) {
	if !cpuid.CPU.Supports(requires...) {
		t.Skip("CPU lacks AVX-512 F/BW/VL")
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// matMulVsAVX2 runs avx2's and avx512's MatMul on the same arguments into destinations
// of T×ld elements filled beforehand with their indices (so that a write outside rows
// [r0, r1) shows) and returns the first element whose bits differ with both values,
// or -1.
func matMulVsAVX2(x []float32, T int, w *kernels.Mat, bias []float32, ld, r0, r1 int) (i int, got, want float32) {
	var a5 Kernels
	var a2 avx2.Kernels
	wantD, gotD := make([]float32, T*ld), make([]float32, T*ld)
	for i := range wantD {
		wantD[i], gotD[i] = float32(i), float32(i)
	}
	a2.MatMul(wantD, ld, x, T, w, bias, r0, r1, make(kernels.Scratch, a2.ScratchSize(T, w.Cols)))
	a5.MatMul(gotD, ld, x, T, w, bias, r0, r1, make(kernels.Scratch, a5.ScratchSize(T, w.Cols)))
	for i := range wantD {
		if math.Float32bits(wantD[i]) != math.Float32bits(gotD[i]) {
			return i, gotD[i], wantD[i]
		}
	}
	return -1, 0, 0
}

// TestMatMulEqualsAVX2 checks that the f32 products equal avx2's bit for bit, on
// ragged shapes, every T the tiles split differently, with and without bias, for the
// whole matrix and for row ranges.
func TestMatMulEqualsAVX2(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(1, 2))
	var cols []int
	for c := 1; c <= 70; c++ {
		cols = append(cols, c)
	}
	// (512 and 2048: T > 8 copies x into scratch further apart.)
	cols = append(cols, 255, 257, 512, 768, 1000, 2048, 4097)
	for _, n := range cols {
		for _, rows := range []int{1, 2, 3, 5, 7, 13, 17} {
			if n > 1000 && rows > 7 {
				continue
			}
			w := &kernels.Mat{DType: dtype.F32, Rows: rows, Cols: n, F32: randSlice(r, rows*n)}
			bias := randSlice(r, rows)
			for _, T := range []int{1, 2, 3, 5, 8, 13, 17, 64} {
				if n > 1000 && T > 17 {
					continue
				}
				x := randSlice(r, T*n)
				ld := rows + 3
				for _, b := range [][]float32{nil, bias} {
					for _, rr := range [][2]int{{0, rows}, {rows / 3, rows}, {0, (rows + 1) / 2}, {rows / 2, rows/2 + 1}} {
						if i, got, want := matMulVsAVX2(x, T, w, b, ld, rr[0], rr[1]); i >= 0 {
							t.Fatalf("cols %d rows %d T %d bias %v rows [%d,%d): dst[%d] = %v, avx2 %v",
								n, rows, T, b != nil, rr[0], rr[1], i, got, want)
						}
					}
				}
			}
		}
	}
}

// TestMatMulLongRowsEqualAVX2 checks rows longer than avx2's GEMM column segment, and
// many of them, against avx2.
func TestMatMulLongRowsEqualAVX2(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(5, 6))
	// T = 7, 8 with 4·T·cols past 2·partInputBytes go through gemmParts: parts of a
	// whole number of 16-column steps, the last one shorter, or short of 8 columns, and
	// more groups of rows than partGroups. T ≥ 9 with 4·6·cols past 2·partInputBytes go
	// through gemmBlockParts: several chunks of rows, blocks of 6 tokens and the rest.
	for _, sh := range [][2]int{{1025, 101}, {2048, 97}, {1536 + 9, 50}, {1536, 75}, {2048 + 5, 40}, {4096 + 13, 7}} {
		n, rows := sh[0], sh[1]
		w := &kernels.Mat{DType: dtype.F32, Rows: rows, Cols: n, F32: randSlice(r, rows*n)}
		bias := randSlice(r, rows)
		for _, T := range []int{2, 3, 5, 7, 8, 9, 13, 20} {
			x := randSlice(r, T*n)
			for _, rr := range [][2]int{{0, rows}, {7, rows - 3}, {1, 2}} {
				b := bias
				if T%2 == 0 {
					b = nil
				}
				if i, got, want := matMulVsAVX2(x, T, w, b, rows, rr[0], rr[1]); i >= 0 {
					t.Fatalf("cols %d rows %d T %d rows [%d,%d): dst[%d] = %v, avx2 %v", n, rows, T, rr[0], rr[1], i, got, want)
				}
			}
		}
	}
}

// TestMatMulSpecialsEqualAVX2 checks Inf and NaN propagate as in avx2.
func TestMatMulSpecialsEqualAVX2(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(3, 4))
	var a5 Kernels
	var a2 avx2.Kernels
	specials := []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 0, float32(math.Copysign(0, -1)), 3e38}
	for _, n := range []int{5, 16, 23, 40} {
		rows, T := 9, 11
		wf := randSlice(r, rows*n)
		x := randSlice(r, T*n)
		for i := 0; i < 12; i++ {
			wf[r.IntN(len(wf))] = specials[r.IntN(len(specials))]
			x[r.IntN(len(x))] = specials[r.IntN(len(specials))]
		}
		w := &kernels.Mat{DType: dtype.F32, Rows: rows, Cols: n, F32: wf}
		want := make([]float32, T*rows)
		got := make([]float32, T*rows)
		a2.MatMul(want, rows, x, T, w, nil, 0, rows, make(kernels.Scratch, a2.ScratchSize(T, n)))
		a5.MatMul(got, rows, x, T, w, nil, 0, rows, nil)
		for i := range want {
			if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
				t.Fatalf("cols %d: dst[%d] = %v (%#x), avx2 %v (%#x)", n, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
		}
	}
}

// halfBits returns n random halves of dtype dt (f16 or bf16): normal values of either
// sign, with, when specials is set, about one in 16 an infinity, a NaN, a zero or a
// subnormal.
func halfBits(r *rand.Rand, dt dtype.DType, n int, specials bool) []byte {
	b := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		var h uint16
		if dt == dtype.BF16 {
			h = uint16(math.Float32bits(float32(r.NormFloat64())) >> 16)
		} else {
			h = dtype.F32ToF16(float32(r.NormFloat64()))
		}
		if specials && r.IntN(16) == 0 {
			exp := uint16(0x7c00) // f16
			if dt == dtype.BF16 {
				exp = 0x7f80
			}
			switch r.IntN(5) {
			case 0:
				h = exp // +Inf
			case 1:
				h = 0x8000 | exp // −Inf
			case 2:
				h = exp | 1 | uint16(r.IntN(2))<<9 // a NaN, signalling or quiet
			case 3:
				h = uint16(r.IntN(2)) << 15 // ±0
			default:
				h = uint16(r.IntN(2))<<15 | uint16(1+r.IntN(0x3f)) // subnormal
			}
		}
		b[2*i], b[2*i+1] = byte(h), byte(h>>8)
	}
	return b
}

// TestMatMulHalfEqualsAVX2 checks that the f16 and bf16 products equal avx2's bit for
// bit: ragged shapes (whole 32s of columns, 16 and 8 more, and a Cols%8 tail), rows
// past the mix kernels' limit, every T the tiles split differently, with and without
// bias, for row ranges; f16 with and without infinities and NaNs (avx2's two orders),
// subnormal halves, and activations with |x| ≥ 2¹⁶ (which avx2's f16 mix kernels cannot
// take and so widen the rows instead).
func TestMatMulHalfEqualsAVX2(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(7, 8))
	cols := []int{8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 40, 47, 48, 56, 63, 64, 65, 72, 88, 96, 100, 255, 256, 257, 768, 1000, 4097}
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
		for ci, n := range append(cols, 16392) {
			for _, rows := range []int{1, 3, 4, 5, 7, 13, 17, 37} {
				if n > 1000 && rows > 7 {
					continue
				}
				specials := (ci+rows)%3 == 0
				w, err := kernels.NewMat(dt, halfBits(r, dt, rows*n, specials), rows, n)
				if err != nil {
					t.Fatal(err)
				}
				bias := randSlice(r, rows)
				for _, T := range []int{1, 2, 3, 5, 8, 13, 17, 33, 64} {
					if n > 1000 && T > 17 || n > 5000 && T > 3 {
						continue
					}
					x := randSlice(r, T*n)
					if T%2 == 1 && n >= 32 {
						x[r.IntN(len(x))] = 1e5 // |x| ≥ 2¹⁶
					}
					ld := rows + 3
					for _, b := range [][]float32{nil, bias} {
						for _, rr := range [][2]int{{0, rows}, {rows / 3, rows}, {0, (rows + 1) / 2}, {rows / 2, rows/2 + 1}} {
							if i, got, want := matMulVsAVX2(x, T, w, b, ld, rr[0], rr[1]); i >= 0 {
								t.Fatalf("%v cols %d rows %d (finite %v) T %d bias %v rows [%d,%d): dst[%d] = %v (%#x), avx2 %v (%#x)",
									dt, n, rows, w.F16Finite(), T, b != nil, rr[0], rr[1], i, got, math.Float32bits(got), want, math.Float32bits(want))
							}
						}
					}
				}
			}
		}
	}
}

// TestMatMulHalfChunksEqualAVX2 checks f16 and bf16 products of T > 8 over several
// widened chunks of rows — each chunk's GEMM prefetching the next chunk's halves, or
// after the last one the rows past the range — against avx2's, bit for bit: rows of
// 768 columns (gemm4x6nf) and of 2048 or more (gemmBlockParts, gemm4x6pnf), whole
// matrices and row ranges.
func TestMatMulHalfChunksEqualAVX2(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(9, 10))
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
		for _, sh := range [][2]int{{768, 250}, {2048 + 8, 70}, {3072, 45}} {
			n, rows := sh[0], sh[1]
			w, err := kernels.NewMat(dt, halfBits(r, dt, rows*n, false), rows, n)
			if err != nil {
				t.Fatal(err)
			}
			bias := randSlice(r, rows)
			for _, T := range []int{9, 20, 40} {
				x := randSlice(r, T*n)
				for _, rr := range [][2]int{{0, rows}, {5, rows - 7}, {0, rows / 2}} {
					b := bias
					if T%2 == 0 {
						b = nil
					}
					if i, got, want := matMulVsAVX2(x, T, w, b, rows, rr[0], rr[1]); i >= 0 {
						t.Fatalf("%v cols %d rows %d T %d rows [%d,%d): dst[%d] = %v, avx2 %v", dt, n, rows, T, rr[0], rr[1], i, got, want)
					}
				}
			}
		}
	}
}

// TestMatMulHalfTokensAlone checks that a token's results in a product with T > 1 are
// the bits it gets alone (T = 1), on f16 and bf16 weights in each of their orders.
func TestMatMulHalfTokensAlone(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(9, 10))
	var k Kernels
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
		for _, specials := range []bool{false, true} {
			rows, n, T := 23, 200, 19
			w, err := kernels.NewMat(dt, halfBits(r, dt, rows*n, specials), rows, n)
			if err != nil {
				t.Fatal(err)
			}
			x := randSlice(r, T*n)
			all := make([]float32, T*rows)
			k.MatMul(all, rows, x, T, w, nil, 0, rows, kernels.NewScratch(k, T, n))
			one := make([]float32, rows)
			for t0 := 0; t0 < T; t0++ {
				k.MatMul(one, rows, x[t0*n:(t0+1)*n], 1, w, nil, 0, rows, kernels.NewScratch(k, 1, n))
				for i, v := range one {
					if g := all[t0*rows+i]; math.Float32bits(g) != math.Float32bits(v) {
						t.Fatalf("%v specials %v token %d row %d: %v in T=%d, %v alone", dt, specials, t0, i, g, T, v)
					}
				}
			}
		}
	}
}

// TestMatMulHalfAllocatesNothing: the f16 and bf16 products allocate nothing, T = 1 and
// T > 1, given a scratch of ScratchSize floats.
func TestMatMulHalfAllocatesNothing(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(1, 1))
	const rows = 37
	var k Kernels
	for _, cols := range []int{288, 4128} {
		for _, T := range []int{1, 37} {
			x := randSlice(r, T*cols)
			dst := make([]float32, T*rows)
			sc := kernels.NewScratch(k, T, cols)
			for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
				w, err := kernels.NewMat(dt, halfBits(r, dt, rows*cols, false), rows, cols)
				if err != nil {
					t.Fatal(err)
				}
				if n := testing.AllocsPerRun(5, func() { k.MatMul(dst, rows, x, T, w, nil, 3, rows, sc) }); n != 0 {
					t.Errorf("%v, T=%d, %d columns: %v allocations per product", dt, T, cols, n)
				}
			}
		}
	}
}

// TestMatMulAllocatesNothing checks the f32 products allocate nothing, in particular
// gemmParts' accumulators (T = 8 on long rows) stay on the stack.
func TestMatMulAllocatesNothing(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(7, 8))
	var a5 Kernels
	for _, sh := range [][3]int{{1536, 75, 8}, {576, 30, 8}, {2048, 20, 1}, {1536, 40, 13}} {
		n, rows, T := sh[0], sh[1], sh[2]
		w := &kernels.Mat{DType: dtype.F32, Rows: rows, Cols: n, F32: randSlice(r, rows*n)}
		x, dst := randSlice(r, T*n), make([]float32, T*rows)
		sc := make(kernels.Scratch, a5.ScratchSize(T, n))
		if a := testing.AllocsPerRun(5, func() { a5.MatMul(dst, rows, x, T, w, nil, 0, rows, sc) }); a != 0 {
			t.Errorf("cols %d rows %d T %d: %v allocations per MatMul", n, rows, T, a)
		}
	}
}

// TestArrangeXEqualsAVX2: arrangeX lays out x in each order exactly as
// avx2.ArrangeHalfX does (the f16 mix order with arrangeZHM), without touching dst
// past len(x).
func TestArrangeXEqualsAVX2(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(7, 7))
	for _, o := range []avx2.HalfOrder{avx2.HalfPlain, avx2.HalfMixH, avx2.HalfMixBF} {
		for n := 8; n <= 264; n += 8 {
			x := randSlice(r, n)
			want := make([]float32, n+1)
			got := make([]float32, n+1)
			want[n], got[n] = 7, 7
			avx2.ArrangeHalfX(o, want[:n], x)
			arrangeX(o, got[:n], x)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("order %v n %d: dst[%d] = %v, avx2 %v", o, n, i, got[i], want[i])
				}
			}
		}
	}
}

// TestHalfXRowHoldsParts checks that halfXRow leaves room for x laid out part by part
// (partsX) for every row length gemmBlockParts takes, and for the padded row.
func TestHalfXRowHoldsParts(t *testing.T) {
	for cols := 8; cols <= 40000; cols++ {
		n8 := cols &^ 7
		np, pw := blockParts(n8)
		if np*pw < n8 || (np-1)*pw >= n8 || pw%16 != 0 {
			t.Fatalf("cols %d: %d parts of %d columns", n8, np, pw)
		}
		if need := max(np*pw, cols+halfPad); need > halfXRow(cols) {
			t.Fatalf("cols %d: a token needs %d floats, halfXRow gives %d", cols, need, halfXRow(cols))
		}
	}
}
