//go:build amd64 && !purego

package avx512

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// bf16Mat returns rows×cols bf16 weights rounded from v.
func bf16Mat(t testing.TB, v []float32, rows, cols int) *kernels.Mat {
	h := toBF16(v)
	w, err := kernels.NewMat(dtype.BF16, unsafe.Slice((*byte)(unsafe.Pointer(&h[0])), 2*len(h)), rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestMatMulBF16 checks MatMulBF16 against the package kernels' specification within
// the contract's bound (random values: no denormals, so a float32 reordering of the sum
// alone: 1e-5·Σ|w·x|, NaN and infinities where it has them), and that every token's
// results are the bits it gets alone (T = 1) and do not depend on the row range — over
// ragged shapes (whole 32s of columns, a masked tail, odd columns), every T the tiles
// split differently, with and without bias.
func TestMatMulBF16(t *testing.T) {
	needBF16(t)
	r := rand.New(rand.NewPCG(12, 13))
	var k Kernels
	var cols []int
	for c := 1; c <= 70; c++ {
		cols = append(cols, c)
	}
	cols = append(cols, 255, 257, 768, 1000, 4097)
	for ci, n := range cols {
		for _, rows := range []int{1, 3, 4, 5, 7, 13, 17} {
			if n > 1000 && rows > 5 {
				continue
			}
			wv := randSlice(r, rows*n)
			if ci%5 == 0 { // specials
				for i := 0; i < 3; i++ {
					wv[r.IntN(len(wv))] = []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}[r.IntN(3)]
				}
			}
			w := bf16Mat(t, wv, rows, n)
			bias := randSlice(r, rows)
			for _, T := range []int{1, 2, 5, 6, 7, 13, 64} {
				if n > 1000 && T > 7 {
					continue
				}
				xb := toBF16(randSlice(r, T*n))
				ld := rows + 2
				for _, b := range [][]float32{nil, bias} {
					want := make([]float32, T*ld)
					got := make([]float32, T*ld)
					kernels.MatMulBF16(want, ld, xb, T, w, b, 0, rows)
					k.MatMulBF16(got, ld, xb, T, w, b, 0, rows, nil)
					for t0 := 0; t0 < T; t0++ {
						for o := 0; o < rows; o++ {
							var a float64
							for i := 0; i < n; i++ {
								a += math.Abs(float64(dtype.BF16ToF32(uint16(w.Data[2*(o*n+i)])|uint16(w.Data[2*(o*n+i)+1])<<8)) * float64(dtype.BF16ToF32(xb[t0*n+i])))
							}
							if b != nil {
								a += math.Abs(float64(b[o]))
							}
							g, v := float64(got[t0*ld+o]), float64(want[t0*ld+o])
							if math.IsNaN(g) != math.IsNaN(v) || !math.IsNaN(v) && (math.IsInf(v, 0) && g != v || math.Abs(g-v) > 1e-5*a) {
								t.Fatalf("cols %d rows %d T %d bias %v: [%d,%d] = %v, want %v (Σ|w·x| %v)", n, rows, T, b != nil, t0, o, g, v, a)
							}
						}
					}
					// Each token alone, and row ranges: the same bits.
					one := make([]float32, ld)
					for t0 := 0; t0 < T; t0++ {
						k.MatMulBF16(one, ld, xb[t0*n:(t0+1)*n], 1, w, b, 0, rows, nil)
						for o := 0; o < rows; o++ {
							if math.Float32bits(one[o]) != math.Float32bits(got[t0*ld+o]) {
								t.Fatalf("cols %d rows %d T %d: token %d row %d alone %v, in the batch %v", n, rows, T, t0, o, one[o], got[t0*ld+o])
							}
						}
					}
					split := make([]float32, T*ld)
					for a := 0; a < rows; {
						e := min(rows, a+1+r.IntN(6))
						k.MatMulBF16(split, ld, xb, T, w, b, a, e, nil)
						a = e
					}
					for i := range split {
						if math.Float32bits(split[i]) != math.Float32bits(got[i]) {
							t.Fatalf("cols %d rows %d T %d: dst[%d] = %v by row ranges, %v whole", n, rows, T, i, split[i], got[i])
						}
					}
				}
			}
		}
	}
}

// TestMatMulBF16Denormals checks the flushes the contract allows stay within its bound:
// denormal weights and activations count as zero.
func TestMatMulBF16Denormals(t *testing.T) {
	needBF16(t)
	r := rand.New(rand.NewPCG(14, 15))
	var k Kernels
	rows, n, T := 5, 100, 3
	wv := randSlice(r, rows*n)
	for i := range wv {
		if i%3 == 0 {
			wv[i] = float32(r.NormFloat64()) * 0x1p-130 // denormal in bfloat16
		}
	}
	w := bf16Mat(t, wv, rows, n)
	xv := randSlice(r, T*n)
	for i := range xv {
		if i%5 == 0 {
			xv[i] *= 0x1p-128
		}
	}
	xb := toBF16(xv)
	want := make([]float32, T*rows)
	got := make([]float32, T*rows)
	kernels.MatMulBF16(want, rows, xb, T, w, nil, 0, rows)
	k.MatMulBF16(got, rows, xb, T, w, nil, 0, rows, nil)
	for t0 := 0; t0 < T; t0++ {
		for o := 0; o < rows; o++ {
			var a, flushed float64
			for i := 0; i < n; i++ {
				wi := float64(dtype.BF16ToF32(uint16(w.Data[2*(o*n+i)]) | uint16(w.Data[2*(o*n+i)+1])<<8))
				xi := float64(dtype.BF16ToF32(xb[t0*n+i]))
				a += math.Abs(wi * xi)
				if math.Abs(wi) < 0x1p-126 || math.Abs(xi) < 0x1p-126 {
					flushed += math.Abs(wi * xi)
				}
			}
			if g, v := float64(got[t0*rows+o]), float64(want[t0*rows+o]); math.Abs(g-v) > 1e-5*a+flushed+float64(n)*0x1p-126 {
				t.Fatalf("[%d,%d] = %v, want %v", t0, o, g, v)
			}
		}
	}
}

// TestMatMulBF16WithoutBF16 checks the path of CPUs without AVX512_BF16 (activations
// widened for matMulHalf): avx2's f32-activation product of the widened activations, bit
// for bit, and the same bits for a token alone.
func TestMatMulBF16WithoutBF16(t *testing.T) {
	need(t)
	defer func(v bool) { hasBF16 = v }(hasBF16)
	hasBF16 = false
	r := rand.New(rand.NewPCG(16, 17))
	var k Kernels
	for _, n := range []int{3, 8, 45, 300} {
		rows, T := 11, 7
		w := bf16Mat(t, randSlice(r, rows*n), rows, n)
		xb := toBF16(randSlice(r, T*n))
		xf := make([]float32, len(xb))
		for i, h := range xb {
			xf[i] = dtype.BF16ToF32(h)
		}
		bias := randSlice(r, rows)
		got, want := make([]float32, T*rows), make([]float32, T*rows)
		k.MatMulBF16(got, rows, xb, T, w, bias, 0, rows, kernels.NewScratch(k, T, n))
		if n >= 8 {
			k.MatMul(want, rows, xf, T, w, bias, 0, rows, kernels.NewScratch(k, T, n))
		} else {
			kernels.MatMulBF16(want, rows, xb, T, w, bias, 0, rows)
		}
		one := make([]float32, rows)
		for t0 := 0; t0 < T; t0++ {
			k.MatMulBF16(one, rows, xb[t0*n:(t0+1)*n], 1, w, bias, 0, rows, kernels.NewScratch(k, 1, n))
			for o := 0; o < rows; o++ {
				i := t0*rows + o
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(one[o]) != math.Float32bits(got[i]) {
					t.Fatalf("cols %d: [%d,%d] = %v, MatMul %v, alone %v", n, t0, o, got[i], want[i], one[o])
				}
			}
		}
	}
}

// TestMatMulBF16AllocatesNothing: MatMulBF16 allocates nothing, T = 1 and T > 1, with
// and without AVX512_BF16.
func TestMatMulBF16AllocatesNothing(t *testing.T) {
	need(t)
	defer func(v bool) { hasBF16 = v }(hasBF16)
	r := rand.New(rand.NewPCG(18, 19))
	var k Kernels
	rows, cols := 37, 288
	w := bf16Mat(t, randSlice(r, rows*cols), rows, cols)
	for _, bf := range []bool{hasBF16, false} {
		hasBF16 = bf
		for _, T := range []int{1, 37} {
			xb := toBF16(randSlice(r, T*cols))
			dst := make([]float32, T*rows)
			sc := kernels.NewScratch(k, T, cols)
			if n := testing.AllocsPerRun(5, func() { k.MatMulBF16(dst, rows, xb, T, w, nil, 3, rows, sc) }); n != 0 {
				t.Errorf("AVX512_BF16 %v, T=%d: %v allocations per product", bf, T, n)
			}
		}
	}
}
