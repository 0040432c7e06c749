package backends_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/backends"
	_ "github.com/lmrun/lmrun/backends/all"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// The conformance suite: every backend this CPU can run against kernels.Reference, on
// every length from 0 past several vector widths (so every unrolled loop, single-vector
// loop and masked tail runs), at unaligned starts, with extreme values and NaN/Inf.
//
// Tolerances, per kernel, with ε = 2^-23 (one ulp of 1):
//
//	Add, Scale, ReLU, GELUErf    bit-identical (one IEEE operation, or the reference's code)
//	MatMul on non-f32 weights    bit-identical (backends may delegate to the reference)
//	MatMul, any row split        bit-identical to the unsplit call (the engine promises
//	                             the same logits for every thread count)
//	MatMul, MatMulQ8, any T      row t bit-identical to the same row alone (T = 1): a
//	                             batched decode step gives each sequence the tokens it
//	                             would get alone
//	Dot, MatMul (f32)            |Δ| ≤ 1e-5 · (Σ|a_i·b_i| + |bias|): a reordered sum of n
//	                             products moves by a few ulps of its largest partial sums
//	Softmax                      |Δ| ≤ 16ε·p + 1e-6·max p (a vector exp ≤ 2 ulp, and the
//	                             denominator's reordered sum)
//	Attention, AttentionF16      |Δ| ≤ 1e-5 · max|v| (out is a convex combination of v)
//	RMSNorm, LayerNorm           |Δ| ≤ 4e-6 · max|out| (the reordered statistics)
//	SiLU, SwiGLU, GELU           |Δ| ≤ (8 + |a|·σ(a))·ε·|out| + 1e-36 (SwiGLU: + 1e-36·|up|)
//	                             for out = x/(1 + e^a), a = −x for SiLU, x·(k1 + k2·x²)
//	                             ≈ −2u for GELU: rounding a in float32 costs |a|·ε
//	                             relative in e^a, which the float64 reference does not
//	                             pay, and out feels it in proportion to σ(a); results
//	                             below 1e-36 may be flushed to zero. GELU adds |x|·2^-52: the reference's 1 + tanh(u)
//	                             cancels to 0 for u < -19, where the true value is below
//	                             |x|·1e-16
//	RoPE, RoPENeoX               |Δ| ≤ 3ε · (|a|+|b|)·(|cos|+|sin|) (a fused multiply-add)
//
// NaN and ±Inf are not toleranced: where the reference gives NaN the backend must too,
// and an infinity must be the same infinity.
const (
	eps      = 1.0 / (1 << 23)
	tolDot   = 1e-5
	tolAttn  = 1e-5
	tolNorm  = 4e-6
	tolSmRel = 16 * eps
	tolSmAbs = 1e-6
	tolRoPE  = 3 * eps
	tolTiny  = 1e-36
)

var ref kernels.Reference

// forEachBackend runs f for every registered backend this CPU can run, except the
// reference itself (which the suite compares against).
func forEachBackend(t *testing.T, f func(t *testing.T, k kernels.Kernels)) {
	ran := false
	for _, b := range backends.List() {
		if b.Name == "generic" {
			continue
		}
		if !b.Available() {
			t.Logf("backend %s: skipped, CPU lacks %v", b.Name, b.Missing())
			continue
		}
		ran = true
		t.Run(b.Name, func(t *testing.T) { f(t, b.New()) })
	}
	if !ran {
		t.Skip("no SIMD backend available on this CPU/build")
	}
}

// forEachWith is forEachBackend for the kernels of an optional interface I (what names
// it): f gets the backend as I too; a backend without it is skipped, saying so.
func forEachWith[I any](t *testing.T, what string, f func(t *testing.T, k kernels.Kernels, i I)) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		i, ok := k.(I)
		if !ok {
			t.Skipf("%s has no %s", k.Name(), what)
		}
		f(t, k, i)
	})
}

func randVec(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

// unaligned returns a copy of v starting one float past an aligned allocation.
func unaligned(v []float32) []float32 { return at(v, 1) }

// at returns a copy of v starting off floats into a fresh allocation (Go aligns large
// allocations to at least 8 bytes, so off = 1..7 gives every misalignment a vector
// kernel can see). Its capacity ends with v.
func at(v []float32, off int) []float32 {
	buf := make([]float32, off+len(v))
	copy(buf[off:], v)
	return buf[off : off+len(v) : off+len(v)]
}

// lengths: 0 to well past several 8- and 16-lane widths and unrolled blocks, plus a few
// larger ones.
func lengths() []int {
	var ns []int
	for n := 0; n <= 100; n++ {
		ns = append(ns, n)
	}
	return append(ns, 127, 128, 129, 255, 256, 257, 1000, 3077)
}

func absDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) * float64(b[i]))
	}
	return s
}

func maxAbs(v []float32) float64 {
	var m float64
	for _, x := range v {
		if a := math.Abs(float64(x)); a > m && !math.IsInf(a, 0) {
			m = a
		}
	}
	return m
}

// special reports whether got must equal want exactly: NaN (any payload) or an infinity.
func special(want float32) bool {
	w := float64(want)
	return math.IsNaN(w) || math.IsInf(w, 0)
}

// agree compares one element: specials exactly (NaN matches NaN), the rest within tol.
func agree(got, want float32, tol float64) bool {
	g, w := float64(got), float64(want)
	if special(want) || special(got) {
		return (math.IsNaN(g) && math.IsNaN(w)) || g == w
	}
	return math.Abs(g-w) <= tol
}

// identical is bitwise equality, NaNs matching any NaN.
func identical(got, want float32) bool {
	return got == want && math.Signbit(float64(got)) == math.Signbit(float64(want)) ||
		math.IsNaN(float64(got)) && math.IsNaN(float64(want))
}

func TestDot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(1, 1))
		for _, n := range lengths() {
			a, b := at(randVec(r, n, 1), n%8), at(randVec(r, n+3, 1), (n/8)%8) // b longer than a is allowed
			got, want := k.Dot(a, b), ref.Dot(a, b)
			if !agree(got, want, tolDot*absDot(a, b[:n])) {
				t.Fatalf("n=%d: %v, reference %v", n, got, want)
			}
		}
		// NaN anywhere, an infinity, Inf·0 and overflow, at every kind of position.
		for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100} {
			for _, p := range []int{0, n / 2, n - 1} {
				for _, c := range [][2]float32{{nan, 1}, {inf, 2}, {-inf, 2}, {inf, 0}, {3e38, 3e38}} {
					a, b := randVec(r, n, 1), randVec(r, n, 1)
					a[p], b[p] = c[0], c[1]
					got, want := k.Dot(a, b), ref.Dot(a, b)
					if !agree(got, want, tolDot*absDot(a, b)) {
						t.Fatalf("n=%d a[%d]=%v b[%d]=%v: %v, reference %v", n, p, c[0], p, c[1], got, want)
					}
				}
			}
		}
	})
}

var (
	nan = float32(math.NaN())
	inf = float32(math.Inf(1))
)

// split cuts [0, rows) into up to four ranges at random points, some possibly empty.
func split(r *rand.Rand, rows int) [][2]int {
	cuts := []int{0, rows}
	for i := r.IntN(4); i > 0; i-- {
		cuts = append(cuts, r.IntN(rows+1))
	}
	for i := range cuts { // insertion sort: a handful of cuts
		for j := i; j > 0 && cuts[j] < cuts[j-1]; j-- {
			cuts[j], cuts[j-1] = cuts[j-1], cuts[j]
		}
	}
	var rs [][2]int
	for i := 1; i < len(cuts); i++ {
		rs = append(rs, [2]int{cuts[i-1], cuts[i]})
	}
	r.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
	return rs
}

const sentinel = float32(-12345.678)

// TestScratchSize: a backend's scratch size never decreases as T or the columns grow,
// so that the size for a session's batch and widest row covers all its products (the
// products themselves run below, each with exactly the scratch it asks for).
func TestScratchSize(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		cols := []int{1, 7, 8, 31, 32, 33, 64, 288, 1056, 4096, 11008, 16392, 16400}
		for T := 1; T <= 130; T++ {
			for i, c := range cols {
				n := k.ScratchSize(T, c)
				if n < 0 || (T > 1 && n < k.ScratchSize(T-1, c)) || (i > 0 && n < k.ScratchSize(T, cols[i-1])) {
					t.Fatalf("ScratchSize(%d, %d) = %d: negative, or less than for fewer rows or columns", T, c, n)
				}
			}
		}
	})
}

func TestMatMul(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(2, 2))
		var shapes [][3]int
		for _, cols := range []int{1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257, 768} {
			shapes = append(shapes, [3]int{1, 7, cols}, [3]int{3, 17, cols}, [3]int{5, 4, cols}, [3]int{2, 1, cols}, [3]int{9, 13, cols})
		}
		// Wide rows (past any column blocking), and the engine's batch sizes.
		for _, cols := range []int{1023, 1024, 1025, 2100, 3072} {
			shapes = append(shapes, [3]int{1, 9, cols}, [3]int{2, 5, cols}, [3]int{7, 16, cols})
		}
		shapes = append(shapes, [3]int{64, 37, 96}, [3]int{65, 20, 40}, [3]int{16, 33, 257})
		for si, sh := range shapes {
			T, rows, cols := sh[0], sh[1], sh[2]
			sc := kernels.NewScratch(k, T, cols)
			w, err := kernels.NewMatF32(at(randVec(r, rows*cols, 1), si%8), rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			x := at(randVec(r, T*cols, 1), (si+3)%8)
			bias := randVec(r, rows, 1)
			ld := rows + []int{0, 3, 16}[si%3]
			for _, b := range [][]float32{nil, bias} {
				got, want := make([]float32, T*ld), make([]float32, T*ld)
				for i := range got {
					got[i] = sentinel
				}
				ranges := split(r, rows)
				for _, rg := range ranges {
					k.MatMul(got, ld, x, T, w, b, rg[0], rg[1], sc)
				}
				ref.MatMul(want, ld, x, T, w, b, 0, rows, nil)
				for t0 := 0; t0 < T; t0++ {
					for o := 0; o < ld; o++ {
						i := t0*ld + o
						if o >= rows {
							if got[i] != sentinel {
								t.Fatalf("%v ranges %v: wrote past the rows at [%d,%d]", sh, ranges, t0, o)
							}
							continue
						}
						tol := tolDot * absDot(x[t0*cols:(t0+1)*cols], w.Row(o))
						if b != nil {
							tol += tolDot * math.Abs(float64(b[o]))
						}
						if !agree(got[i], want[i], tol) {
							t.Fatalf("%v bias=%v ranges %v: [%d,%d] = %v, reference %v", sh, b != nil, ranges, t0, o, got[i], want[i])
						}
					}
				}
			}
		}
	})
}

// TestMatMulSplitInvariance: how the rows are split into ranges never changes a result
// bit (the engine's thread pool splits them differently for every thread count, and
// promises the same logits for all).
func TestMatMulSplitInvariance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(14, 14))
		for _, sh := range [][3]int{{1, 37, 64}, {1, 23, 101}, {3, 37, 64}, {5, 21, 1030}, {64, 19, 40}} {
			T, rows, cols := sh[0], sh[1], sh[2]
			sc := kernels.NewScratch(k, T, cols)
			w, _ := kernels.NewMatF32(randVec(r, rows*cols, 1), rows, cols)
			x, bias := randVec(r, T*cols, 1), randVec(r, rows, 1)
			whole := make([]float32, T*rows)
			k.MatMul(whole, rows, x, T, w, bias, 0, rows, sc)
			for try := 0; try < 20; try++ {
				got := make([]float32, T*rows)
				ranges := split(r, rows)
				for _, rg := range ranges {
					k.MatMul(got, rows, x, T, w, bias, rg[0], rg[1], sc)
				}
				for i := range whole {
					if math.Float32bits(got[i]) != math.Float32bits(whole[i]) {
						t.Fatalf("%v split %v: [%d] = %v, unsplit %v", sh, ranges, i, got[i], whole[i])
					}
				}
			}
		}
	})
}

// TestMatMulSpecials: a NaN or Inf weight poisons its output row for every token, a NaN
// input its token for every row, exactly as in the reference.
func TestMatMulSpecials(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(9, 9))
		for _, sh := range [][3]int{{1, 9, 13}, {1, 8, 64}, {4, 7, 33}, {5, 12, 1030}} {
			T, rows, cols := sh[0], sh[1], sh[2]
			sc := kernels.NewScratch(k, T, cols)
			for _, v := range []float32{nan, inf, -inf} {
				wv, x := randVec(r, rows*cols, 1), randVec(r, T*cols, 1)
				wr, wc := r.IntN(rows), cols-1-r.IntN(min(cols, 9)) // often in a column tail
				wv[wr*cols+wc] = v
				xt, xc := r.IntN(T), r.IntN(cols)
				x[xt*cols+xc] = nan
				w, _ := kernels.NewMatF32(wv, rows, cols)
				got, want := make([]float32, T*rows), make([]float32, T*rows)
				k.MatMul(got, rows, x, T, w, nil, 0, rows, sc)
				ref.MatMul(want, rows, x, T, w, nil, 0, rows, nil)
				for i := range want {
					if special(want[i]) != special(got[i]) || (special(want[i]) && !identical(got[i], want[i])) {
						t.Fatalf("%v weight[%d,%d]=%v x[%d,%d]=NaN: [%d] = %v, reference %v", sh, wr, wc, v, xt, xc, i, got[i], want[i])
					}
				}
			}
		}
	})
}

// TestMatMulOtherDTypes: f16, bf16, q8_0, q4_0 and k-quant weights (with float32
// activations) against the reference, within tolDot · (Σ|x_i·w_i| + |bias|) as for f32, w
// the decoded weights; and, as for f32, the row ranges never change a bit. Bad shapes
// panic as in the reference.
func TestMatMulOtherDTypes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(10, 10))
		for _, dt := range []dtype.DType{dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0, dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
			colsList := []int{32, 64, 96, 288, 800, 2080}
			if dt == dtype.F16 || dt == dtype.BF16 {
				colsList = append(colsList, 1, 7, 8, 9, 15, 16, 17, 33, 100, 1025)
			}
			if dt.KQuant() {
				colsList = []int{256, 512, 768, 2304}
			}
			for ci, cols := range colsList {
				for si, sh := range [][2]int{{1, 1}, {1, 7}, {1, 13}, {2, 5}, {3, 9}, {4, 8}, {5, 3}, {7, 6}, {64, 5}} {
					T, rows := sh[0], sh[1]
					sc := kernels.NewScratch(k, T, cols)
					if T == 64 && cols > 800 {
						continue
					}
					w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: weightBytes(r, dt, rows, cols)}
					x := at(randVec(r, T*cols, 1), (ci+si)%8)
					var bias []float32
					if si%2 == 1 {
						bias = randVec(r, rows, 1)
					}
					ld := rows + si%3
					want := make([]float32, T*ld)
					ref.MatMul(want, ld, x, T, w, bias, 0, rows, nil)
					whole := make([]float32, T*ld)
					k.MatMul(whole, ld, x, T, w, bias, 0, rows, sc)
					wr := make([]float32, cols)
					for o := 0; o < rows; o++ {
						w.RowF32(o, wr)
						for t0 := 0; t0 < T; t0++ {
							tol := tolDot * absDot(x[t0*cols:(t0+1)*cols], wr)
							if bias != nil {
								tol += tolDot * math.Abs(float64(bias[o]))
							}
							if i := t0*ld + o; !agree(whole[i], want[i], tol) {
								t.Fatalf("%v T=%d %dx%d bias=%v: [%d,%d] = %v, reference %v", dt, T, rows, cols, bias != nil, t0, o, whole[i], want[i])
							}
						}
					}
					got := make([]float32, T*ld)
					ranges := split(r, rows)
					for _, rg := range ranges {
						k.MatMul(got, ld, x, T, w, bias, rg[0], rg[1], sc)
					}
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(whole[i]) {
							t.Fatalf("%v T=%d %dx%d split %v: [%d] = %v, unsplit %v", dt, T, rows, cols, ranges, i, got[i], whole[i])
						}
					}
				}
			}
		}
		// Too short a weight buffer panics, as it does in the reference.
		w := &kernels.Mat{DType: dtype.Q8_0, Rows: 4, Cols: 64, Data: make([]byte, 3*dtype.RowBytes(dtype.Q8_0, 64))}
		sc := kernels.NewScratch(k, 1, 64) // enough: only the weights are short
		if p := panics(func() { k.MatMul(make([]float32, 4), 4, make([]float32, 64), 1, w, nil, 0, 4, sc) }); p == nil {
			t.Fatal("short q8_0 weights: no panic")
		}
	})
}

// TestMatMulF16Finite: f16 matrices made by kernels.NewMat (so F16Finite is set: SIMD
// backends may widen halves with integer operations) over the whole finite range —
// zeros, subnormals, ±65504 — against the reference, with activations that are ordinary,
// near the largest the integer widening takes (|x| < 2¹⁶), beyond it, infinite or NaN,
// placed in both halves of a 32-column group. Row ranges never change a bit.
func TestMatMulF16Finite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(12, 12))
		for _, cols := range []int{32, 39, 40, 56, 64, 100, 288, 1025, 16392} {
			rows := 9
			sc := kernels.NewScratch(k, 1, cols)
			if cols > 2000 {
				rows = 5
			}
			data := make([]byte, 2*rows*cols)
			for i := 0; i < rows*cols; i++ {
				h := uint16(r.IntN(1 << 16))
				switch {
				case h&0x7c00 == 0x7c00: // infinity or NaN: make it finite
					h ^= 0x4000
				case i%11 == 0:
					h &= 0x83ff // subnormal (or zero)
				case i%13 == 0:
					h = 0x7bff | h&0x8000 // ±65504
				}
				binary.LittleEndian.PutUint16(data[2*i:], h)
			}
			w, err := kernels.NewMat(dtype.F16, data, rows, cols)
			if err != nil || !w.F16Finite() {
				t.Fatalf("NewMat: %v, F16Finite %v", err, w != nil && w.F16Finite())
			}
			for xi, special := range []float32{0, 60000, -65535, 65536, -1e30, float32(math.Inf(1)), float32(math.NaN())} {
				x := randVec(r, cols, 1)
				if special != 0 {
					x[min(5, cols-1)] = special
					x[min(20, cols-1)] = -special
				}
				x = at(x, xi%8)
				want := make([]float32, rows)
				ref.MatMul(want, rows, x, 1, w, nil, 0, rows, nil)
				got := make([]float32, rows)
				k.MatMul(got, rows, x, 1, w, nil, 0, rows, sc)
				wr := make([]float32, cols)
				for o := range rows {
					w.RowF32(o, wr)
					if !agree(got[o], want[o], tolDot*absDot(x, wr)) {
						t.Fatalf("%d cols, x[5] = %v: row %d = %v, reference %v", cols, special, o, got[o], want[o])
					}
				}
				part := make([]float32, rows)
				ranges := split(r, rows)
				for _, rg := range ranges {
					k.MatMul(part, rows, x, 1, w, nil, rg[0], rg[1], sc)
				}
				for o := range rows {
					if !identical(part[o], got[o]) {
						t.Fatalf("%d cols, x[5] = %v, split %v: row %d = %v, unsplit %v", cols, special, ranges, o, part[o], got[o])
					}
				}
			}
		}
	})
}

// TestMatMulPrepared: on a backend with kernels.XPreparer, a product on x laid out once
// by PrepareX — over several token ranges, each with its own scratch, as the engine's
// threads do — and then taken in row ranges by MatMulPrepared gives MatMul's bits and
// writes nothing outside its rows, and x prepared for one matrix serves another of the
// same XLayout. The shapes take every layout the backends have: f16 with and without
// non-finite halves (two column orders), bf16, rows long enough to go part by part, a
// Cols%8 tail, f32 rows a multiple of 512 columns, and rows that take x as it is.
func TestMatMulPrepared(t *testing.T) {
	forEachWith(t, "XPreparer", func(t *testing.T, k kernels.Kernels, xp kernels.XPreparer) {
		r := rand.New(rand.NewPCG(21, 22))
		type shape struct {
			dt        dtype.DType
			rows, n   int
			nonFinite bool
		}
		shapes := []shape{
			{dtype.F16, 70, 768, false}, {dtype.F16, 70, 768, true}, {dtype.BF16, 70, 768, false},
			{dtype.F16, 45, 2048, false}, {dtype.BF16, 45, 3072, false}, {dtype.F16, 37, 1000, false},
			{dtype.F16, 37, 2048 + 12, true}, {dtype.F32, 50, 512, false}, {dtype.F32, 50, 2048, false},
			{dtype.F32, 50, 768, false},
		}
		for _, sh := range shapes {
			mat := func() *kernels.Mat {
				data := weightBytes(r, sh.dt, sh.rows, sh.n)
				if sh.nonFinite {
					binary.LittleEndian.PutUint16(data[2*r.IntN(sh.rows*sh.n):], 0x7c00)
				}
				w, err := kernels.NewMat(sh.dt, data, sh.rows, sh.n)
				if err != nil {
					t.Fatal(err)
				}
				return w
			}
			w, w2 := mat(), mat()
			bias := randVec(r, sh.rows, 1)
			for _, T := range []int{1, 2, 3, 9, 17, 64} {
				x := randVec(r, T*sh.n, 1)
				l := xp.XLayout(T, w)
				if l != xp.XLayout(T, w2) {
					t.Fatalf("%v %d×%d T %d: layouts %#x and %#x of two like matrices", sh.dt, sh.rows, sh.n, T, l, xp.XLayout(T, w2))
				}
				if sh.n == 768 && (l != 0) != (T > 1 && sh.dt != dtype.F32 && !sh.nonFinite) {
					t.Errorf("%v %d×%d T %d: layout %#x: on 768 columns only the mix orders take x arranged", sh.dt, sh.rows, sh.n, T, l)
				}
				var prep []float32
				if l != 0 {
					prep = make([]float32, xp.PreparedXSize(T, sh.n))
					for i := range prep {
						prep[i] = float32(math.NaN())
					}
					for t0 := 0; t0 < T; {
						t1 := min(T, t0+1+r.IntN(8))
						xp.PrepareX(prep, x, T, w, t0, t1, kernels.NewScratch(k, T, sh.n))
						t0 = t1
					}
				}
				ld := sh.rows + 5
				for _, m := range []*kernels.Mat{w, w2} {
					for _, b := range [][]float32{nil, bias} {
						for _, rr := range [][2]int{{0, sh.rows}, {3, sh.rows - 5}, {0, 2}, {sh.rows / 2, sh.rows/2 + 7}, {4, 36}} {
							want, got := make([]float32, T*ld), make([]float32, T*ld)
							for i := range want {
								want[i], got[i] = float32(i), float32(i)
							}
							k.MatMul(want, ld, x, T, m, b, rr[0], rr[1], kernels.NewScratch(k, T, sh.n))
							xp.MatMulPrepared(got, ld, x, prep, T, m, b, rr[0], rr[1], kernels.NewScratch(k, T, sh.n))
							for i := range want {
								if !identical(got[i], want[i]) {
									t.Fatalf("%v %d×%d (layout %#x) T %d bias %v rows %v: dst[%d] = %v, MatMul %v",
										sh.dt, sh.rows, sh.n, l, T, b != nil, rr, i, got[i], want[i])
								}
							}
						}
					}
				}
			}
		}
	})
}

// TestQuantizeQ8: a backend's activation quantizer writes kernels.QuantizeQ8's bytes
// exactly — ties (which must round away from zero), values just below a half, zero and
// subnormal blocks, scales that overflow binary16, infinities and NaNs anywhere in a
// block — and nothing past the blocks.
func TestQuantizeQ8(t *testing.T) {
	forEachWith(t, "q8-activation kernels", func(t *testing.T, k kernels.Kernels, q8 kernels.Q8Kernels) {
		r := rand.New(rand.NewPCG(13, 13))
		inf, nan := float32(math.Inf(1)), float32(math.NaN())
		var cases [][]float32
		for _, scale := range []float64{1e-3, 1, 1e3, 1e30, 1e-37, 1e-40} {
			for _, n := range []int{0, 32, 64, 96, 4128} {
				cases = append(cases, randVec(r, n, scale))
			}
		}
		ties := make([]float32, 64) // amax 127: d = 1, so x·id = x and halves are ties
		for i := range ties {
			ties[i] = float32(i%17-8) + 0.5
		}
		ties[3], ties[40] = 127, -127
		ties[5], ties[41] = 0.49999997, -0.49999997
		cases = append(cases, ties, make([]float32, 32))
		negZero := make([]float32, 32)
		for i := range negZero {
			negZero[i] = float32(math.Copysign(0, -1))
		}
		cases = append(cases, negZero)
		for _, special := range []float32{inf, -inf, nan} {
			for _, at := range []int{0, 7, 31, 32, 63, 70} {
				x := randVec(r, 96, 1)
				x[at] = special
				cases = append(cases, x)
			}
		}
		nanFirst := randVec(r, 32, 1)
		nanFirst[0], nanFirst[31] = nan, nan // C's MAX keeps a NaN only when it is last
		cases = append(cases, nanFirst)
		for ci, x := range cases {
			n := len(x) / 32 * dtype.BlockQ8_0
			want := make([]byte, n+5)
			got := make([]byte, n+5)
			for i := range got {
				got[i], want[i] = 0xa5, 0xa5
			}
			kernels.QuantizeQ8(x, want[:n])
			q8.QuantizeQ8(at(x, ci%8), got[:n])
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("case %d (%d floats): byte %d (block %d) = %#02x, reference %#02x", ci, len(x), i, i/dtype.BlockQ8_0, got[i], want[i])
				}
			}
		}
	})
}

// TestQuantizeQ8K: a backend's q8_k quantizer writes kernels.QuantizeQ8K's bytes exactly
// — scales from tiny to huge, ties of the round-to-even (which must stay even), zero
// blocks, infinities and NaNs — and nothing past the super-blocks.
func TestQuantizeQ8K(t *testing.T) {
	forEachWith(t, "q8-activation kernels", func(t *testing.T, k kernels.Kernels, q8 kernels.Q8Kernels) {
		r := rand.New(rand.NewPCG(16, 16))
		var cases [][]float32
		for _, scale := range []float64{1e-3, 1, 1e3, 1e30, 1e-37, 1e-40} {
			for _, n := range []int{0, 256, 512, 4096} {
				cases = append(cases, randVec(r, n, scale))
			}
		}
		ties := make([]float32, 512) // max −127: iscale = 1, so halves are ties
		for i := range ties {
			ties[i] = float32(i%33-16) + 0.5
		}
		ties[3], ties[300] = -127, 127
		cases = append(cases, ties, make([]float32, 256))
		// The largest magnitude twice with opposite signs: the first one's sign counts
		// (in one vector of 8, and in vectors apart).
		for _, at := range [][2]int{{17, 18}, {18, 17}, {40, 200}, {200, 40}} {
			x := randVec(r, 256, 1)
			x[at[0]], x[at[1]] = 9, -9
			cases = append(cases, x)
		}
		for _, special := range []float32{inf, -inf, nan} {
			for _, at := range []int{0, 7, 255, 256, 300} {
				x := randVec(r, 512, 1)
				x[at] = special
				cases = append(cases, x)
			}
		}
		for ci, x := range cases {
			n := len(x) / 256 * dtype.BlockQ8_K
			want := make([]byte, n+5)
			got := make([]byte, n+5)
			for i := range got {
				got[i], want[i] = 0xa5, 0xa5
			}
			kernels.QuantizeQ8K(x, want[:n])
			q8.QuantizeQ8K(at(x, ci%8), got[:n])
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("case %d (%d floats): byte %d (super-block %d) = %#02x, reference %#02x", ci, len(x), i, i/dtype.BlockQ8_K, got[i], want[i])
				}
			}
		}
	})
}

// panics runs f and returns what it panicked with, or nil.
func panics(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// exactQ8 lists the backends whose MatMulQ8 on q8_0, q4_0 and k-quant weights is the
// reference's bit for bit (same block sums, same float32 operations in the same order).
var exactQ8 = map[string]bool{"avx2": true, "avx512": true, "neon": true}

// TestMatMulQ8: backends that implement kernels.Q8Kernels against the reference's
// MatMulQ8 on activations from kernels.QuantizeActivations (q8_0 blocks, or q8_k for the
// k-quants), for every weight dtype. The block sums are exact integers in both, so only
// the float32 accumulation of the scaled block sums may differ: |Δ| ≤ tolDot ·
// (Σ_j |w_j·xq_j| + |bias|), w and xq the decoded weights and activations; the
// backends in exactQ8 must give the reference's bits. Row ranges never change a bit.
func TestMatMulQ8(t *testing.T) {
	forEachWith(t, "q8-activation kernels", func(t *testing.T, k kernels.Kernels, q8 kernels.Q8Kernels) {
		r := rand.New(rand.NewPCG(11, 11))
		for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0, dtype.Q4_K, dtype.Q5_K, dtype.Q6_K, dtype.F16, dtype.BF16, dtype.F32} {
			// Backends that promise the reference's result bit for bit on block-quantized
			// weights (every one so far) are held to it.
			exact := (dt == dtype.Q8_0 || dt == dtype.Q4_0 || dt.KQuant()) && exactQ8[k.Name()]
			colsList := []int{32, 64, 96, 288, 800, 2080, 5632}
			if dt.KQuant() {
				colsList = []int{256, 512, 768, 2304, 5632}
			}
			for _, cols := range colsList {
				for si, sh := range [][2]int{{1, 1}, {1, 4}, {1, 13}, {1, 37}, {2, 5}, {3, 9}, {4, 8}, {5, 3}, {7, 6}, {64, 5}} {
					T, rows := sh[0], sh[1]
					sc := kernels.NewScratch(k, T, cols)
					if T*cols > 64*800 {
						continue
					}
					data := weightBytes(r, dt, rows, cols)
					if dt == dtype.Q8_0 {
						if si%2 == 0 { // as ggml writes them: no quant of −128
							for i := range data {
								if i%dtype.BlockQ8_0 >= 2 && data[i] == 0x80 {
									data[i] = 0x81
								}
							}
						} else { // at least one
							data[r.IntN(len(data)/dtype.BlockQ8_0)*dtype.BlockQ8_0+2+r.IntN(32)] = 0x80
						}
					}
					w, err := kernels.NewMat(dt, data, rows, cols)
					if err != nil {
						t.Fatal(err)
					}
					if dt == dtype.Q8_0 && w.Q8Sym() != (si%2 == 0) {
						t.Fatalf("Q8Sym = %v for %d×%d random q8_0 weights (case %d)", w.Q8Sym(), rows, cols, si)
					}
					x := randVec(r, T*cols, 1)
					if si%4 == 3 { // one large activation per token: small blocks elsewhere
						for t0 := 0; t0 < T; t0++ {
							x[t0*cols+r.IntN(cols)] = 50
						}
					}
					adt := kernels.ActivationDType(dt)
					rb := dtype.RowBytes(adt, cols)
					xq := make([]byte, T*rb)
					xd := make([]float32, T*cols)
					for t0 := 0; t0 < T; t0++ {
						kernels.QuantizeActivations(ref, dt, x[t0*cols:(t0+1)*cols], xq[t0*rb:(t0+1)*rb])
						dtype.DequantizeRow(adt, xq[t0*rb:(t0+1)*rb], xd[t0*cols:(t0+1)*cols])
					}
					var bias []float32
					if si%2 == 1 {
						bias = randVec(r, rows, 1)
					}
					ld := rows + si%3
					want, whole := make([]float32, T*ld), make([]float32, T*ld)
					for i := range whole {
						whole[i] = sentinel
					}
					ref.MatMulQ8(want, ld, xq, T, w, bias, 0, rows, nil)
					q8.MatMulQ8(whole, ld, xq, T, w, bias, 0, rows, sc)
					wr := make([]float32, cols)
					for o := 0; o < ld; o++ {
						if o < rows {
							w.RowF32(o, wr)
						}
						for t0 := 0; t0 < T; t0++ {
							i := t0*ld + o
							if o >= rows {
								if whole[i] != sentinel {
									t.Fatalf("%v T=%d %dx%d: wrote past the rows at [%d,%d]", dt, T, rows, cols, t0, o)
								}
								continue
							}
							tol := tolDot * absDot(xd[t0*cols:(t0+1)*cols], wr)
							if bias != nil {
								tol += tolDot * math.Abs(float64(bias[o]))
							}
							if !agree(whole[i], want[i], tol) || (exact && !identical(whole[i], want[i])) {
								t.Fatalf("%v T=%d %dx%d bias=%v: [%d,%d] = %v, reference %v", dt, T, rows, cols, bias != nil, t0, o, whole[i], want[i])
							}
						}
					}
					got := make([]float32, T*ld)
					for i := range got {
						got[i] = sentinel
					}
					ranges := split(r, rows)
					for _, rg := range ranges {
						q8.MatMulQ8(got, ld, xq, T, w, bias, rg[0], rg[1], sc)
					}
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(whole[i]) {
							t.Fatalf("%v T=%d %dx%d split %v: [%d] = %v, unsplit %v", dt, T, rows, cols, ranges, i, got[i], whole[i])
						}
					}
				}
			}
		}
		// Short buffers panic instead of reading past them.
		w := &kernels.Mat{DType: dtype.Q4_0, Rows: 4, Cols: 64, Data: make([]byte, 3*dtype.RowBytes(dtype.Q4_0, 64))}
		xq := make([]byte, dtype.RowBytes(dtype.Q8_0, 64))
		sc := kernels.NewScratch(k, 1, 64)
		if p := panics(func() { q8.MatMulQ8(make([]float32, 4), 4, xq, 1, w, nil, 0, 4, sc) }); p == nil {
			t.Fatal("short q4_0 weights: no panic")
		}
		w = &kernels.Mat{DType: dtype.Q8_0, Rows: 4, Cols: 64, Data: make([]byte, 4*dtype.RowBytes(dtype.Q8_0, 64))}
		if p := panics(func() { q8.MatMulQ8(make([]float32, 4), 4, xq[:40:40], 1, w, nil, 0, 4, sc) }); p == nil {
			t.Fatal("short activations: no panic")
		}
	})
}

// weightBytes makes a rows×cols matrix of dtype dt with finite values: half floats with a
// modest exponent, bfloat16 from float32, and Q8_0/Q4_0 blocks of 32 (an f16 scale, then
// 32 int8 or 16 bytes of nibbles).
func weightBytes(r *rand.Rand, dt dtype.DType, rows, cols int) []byte {
	half := func() uint16 { return uint16(r.IntN(2))<<15 | uint16(10+r.IntN(8))<<10 | uint16(r.IntN(1024)) }
	var b []byte
	for i := 0; i < rows*cols; {
		switch dt {
		case dtype.F32:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(r.NormFloat64())))
			i++
		case dtype.F16:
			b = binary.LittleEndian.AppendUint16(b, half())
			i++
		case dtype.BF16:
			b = binary.LittleEndian.AppendUint16(b, uint16(math.Float32bits(float32(r.NormFloat64()))>>16))
			i++
		case dtype.Q8_0, dtype.Q4_0:
			b = binary.LittleEndian.AppendUint16(b, half())
			n := 32
			if dt == dtype.Q4_0 {
				n = 16
			}
			for j := 0; j < n; j++ {
				b = append(b, byte(r.IntN(256)))
			}
			i += 32
		case dtype.Q4_K, dtype.Q5_K, dtype.Q6_K:
			b = append(b, kquantBlock(r, dt)...)
			i += dtype.QKBlock
		}
	}
	return b
}

// kquantBlock returns one random k-quant super-block of dtype dt: random bytes (so every
// scale, min and quant occurs) with f16 scales of a modest exponent, d and dmin of q4_k
// and q5_k positive as ggml's quantizers write them. One block in 16 has the extreme
// scales and quants instead: every 6-bit scale and min 63 (q6_k: int8 scales −128) and
// every quant at its largest.
func kquantBlock(r *rand.Rand, dt dtype.DType) []byte {
	half := func() uint16 { return uint16(10+r.IntN(8))<<10 | uint16(r.IntN(1024)) }
	_, bs := dt.Block()
	blk := make([]byte, bs)
	for j := range blk {
		blk[j] = byte(r.IntN(256))
	}
	extreme := r.IntN(16) == 0
	if dt == dtype.Q6_K {
		if extreme {
			for j := 0; j < 192; j++ {
				blk[j] = 0xff
			}
			for j := 192; j < 208; j++ {
				blk[j] = 0x80
			}
		}
		binary.LittleEndian.PutUint16(blk[208:], half()|uint16(r.IntN(2))<<15)
		return blk
	}
	if extreme {
		for j := 4; j < bs; j++ {
			blk[j] = 0xff
		}
	}
	binary.LittleEndian.PutUint16(blk, half())
	binary.LittleEndian.PutUint16(blk[2:], half())
	return blk
}

func TestAttention(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(3, 3))
		// 213 = 128 + 64 + 16 + 5: every column chunk of the 16-lane wsum and its tail.
		for _, hd := range []int{1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 80, 96, 127, 128, 129, 213} {
			for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 33, 100, 257} {
				for _, stride := range []int{hd, hd*3 + 1} {
					for _, scale := range []float32{0.3, 4} { // 4: a peaked softmax
						kc, vc := at(randVec(r, n*stride, 1), n%8), at(randVec(r, n*stride, 1), hd%8)
						q := at(randVec(r, hd, 1), (n+hd)%8)
						got, want := make([]float32, hd+8), make([]float32, hd)
						for i := range got {
							got[i] = sentinel
						}
						k.Attention(got, q, kc, vc, n, stride, scale, make([]float32, n))
						ref.Attention(want, q, kc, vc, n, stride, scale, make([]float32, n))
						tol := tolAttn * maxAbs(vc)
						for i := range want {
							if !agree(got[i], want[i], tol) {
								t.Fatalf("hd=%d n=%d stride=%d scale=%v: out[%d] = %v, reference %v", hd, n, stride, scale, i, got[i], want[i])
							}
						}
						for i := hd; i < len(got); i++ {
							if got[i] != sentinel {
								t.Fatalf("hd=%d n=%d: wrote past out at %d", hd, n, i)
							}
						}
					}
				}
			}
		}
	})
}

// TestAttendScores: on a backend with kernels.ScoredAttention, the scores of a block of
// queries taken by one MatMul over the key rows, finished by AttendScores, give each
// query exactly Attention's bits — whatever the block's size, the rows taken, and where
// in the key rows a query's band starts.
func TestAttendScores(t *testing.T) {
	forEachWith(t, "ScoredAttention", func(t *testing.T, k kernels.Kernels, sa kernels.ScoredAttention) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, hd := range []int{8, 16, 17, 64, 80, 128} {
			for _, n := range []int{1, 5, 16, 33, 100} {
				for _, T := range []int{1, 2, 7, 16} {
					keys, vals := randVec(r, (n+T)*hd, 1), randVec(r, (n+T)*hd, 1)
					q := randVec(r, T*hd, 1)
					w, err := kernels.NewMatF32(keys, n+T, hd)
					if err != nil {
						t.Fatal(err)
					}
					nu := n + T
					scores := make([]float32, T*nu)
					k.MatMul(scores, nu, q, T, w, nil, 0, nu, kernels.NewScratch(k, T, hd))
					for i := 0; i < T; i++ {
						// Query i attends to keys [i, i+n): its band starts i rows in.
						want, got := make([]float32, hd), make([]float32, hd+4)
						for j := range got {
							got[j] = sentinel
						}
						qi := q[i*hd : (i+1)*hd]
						k.Attention(want, qi, keys[i*hd:], vals[i*hd:], n, hd, 0.125, make([]float32, n))
						sa.AttendScores(got[:hd], scores[i*nu+i:i*nu+i+n], vals[i*hd:], n, hd, 0.125)
						for j := range want {
							if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
								t.Fatalf("hd=%d n=%d T=%d query %d: out[%d] = %v, Attention %v", hd, n, T, i, j, got[j], want[j])
							}
						}
						for j := hd; j < len(got); j++ {
							if got[j] != sentinel {
								t.Fatalf("hd=%d n=%d: wrote past out at %d", hd, n, j)
							}
						}
					}
				}
			}
		}
	})
}

// TestAttentionSpecials: a NaN key makes every score, so every output, NaN; a NaN value
// element poisons its output column only.
func TestAttentionSpecials(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(11, 11))
		for _, hd := range []int{8, 13, 64, 67} {
			for _, n := range []int{1, 5, 33} {
				for _, poison := range []string{"k", "v"} {
					kc, vc, q := randVec(r, n*hd, 1), randVec(r, n*hd, 1), randVec(r, hd, 1)
					j, i := r.IntN(n), r.IntN(hd)
					if poison == "k" {
						kc[j*hd+i] = nan
					} else {
						vc[j*hd+i] = nan
					}
					got, want := make([]float32, hd), make([]float32, hd)
					k.Attention(got, q, kc, vc, n, hd, 0.125, make([]float32, n))
					ref.Attention(want, q, kc, vc, n, hd, 0.125, make([]float32, n))
					for c := range want {
						if !agree(got[c], want[c], tolAttn*maxAbs(vc)) {
							t.Fatalf("hd=%d n=%d NaN in %s[%d][%d]: out[%d] = %v, reference %v", hd, n, poison, j, i, c, got[c], want[c])
						}
					}
				}
			}
		}
	})
}

// TestAttentionF16: attention over a binary16 cache, against the reference's, on the
// same shapes as TestAttention plus NaN and ±Inf halves.
func TestAttentionF16(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(15, 15))
		half := func(v []float32) []uint16 {
			h := make([]uint16, len(v))
			for i, x := range v {
				h[i] = dtype.F32ToF16(x)
			}
			return h
		}
		// 216 = 128 + 64 + 16 + 8: every column chunk of the 16-lane wsumH and its tail.
		for _, hd := range []int{1, 7, 8, 9, 16, 24, 64, 65, 80, 128, 216} {
			for _, n := range []int{1, 2, 3, 4, 5, 7, 9, 33, 257} {
				for _, stride := range []int{hd, hd*3 + 8} {
					kf, vf := randVec(r, n*stride, 1), randVec(r, n*stride, 1)
					if n == 5 {
						kf[r.IntN(len(kf))] = nan // every score NaN: all NaN
						vf[r.IntN(len(vf))] = inf
					}
					kc, vc := half(kf), half(vf)
					q := at(randVec(r, hd, 1), n%8)
					got, want := make([]float32, hd+8), make([]float32, hd)
					for i := range got {
						got[i] = sentinel
					}
					k.AttentionF16(got, q, kc, vc, n, stride, 0.3, make([]float32, n))
					ref.AttentionF16(want, q, kc, vc, n, stride, 0.3, make([]float32, n))
					tol := tolAttn * maxAbs(vf)
					for i := range want {
						if !agree(got[i], want[i], tol) {
							t.Fatalf("hd=%d n=%d stride=%d: out[%d] = %v, reference %v", hd, n, stride, i, got[i], want[i])
						}
					}
					for i := hd; i < len(got); i++ {
						if got[i] != sentinel {
							t.Fatalf("hd=%d n=%d: wrote past out at %d", hd, n, i)
						}
					}
				}
			}
		}
	})
}

// elementwise kernels: each op fills dst (len n) from the shared inputs.
type ewOp struct {
	name string
	run  func(k kernels.Kernels, dst []float32, in ewIn)
	// tol returns the allowed |got-want| at element i (want is the reference's output).
	tol func(in ewIn, want []float32, i int) float64
}

type ewIn struct{ x, y, w, b, cos, sin []float32 }

var (
	geluK1 = -2 * math.Sqrt(2/math.Pi)
	geluK2 = geluK1 * 0.044715
)

// actTol is the activations' error model, for out = x/(1 + e^a): (8 + |a|·σ(a))·ε
// relative. Rounding a costs |a|·ε relative in e^a, and out's relative sensitivity to
// e^a is σ(a) = e^a/(1 + e^a): full where x ≪ 0, nil where x ≫ 0 (out = x).
func actTol(a float64, want float32) float64 {
	sigma := 1 / (1 + math.Exp(-a))
	return (8+math.Abs(a)*sigma)*eps*math.Abs(float64(want)) + tolTiny
}

func exact(ewIn, []float32, int) float64 { return 0 }

var ewOps = []ewOp{
	{"Add", func(k kernels.Kernels, d []float32, in ewIn) { copy(d, in.x); k.Add(d, in.y) }, exact},
	{"Scale", func(k kernels.Kernels, d []float32, in ewIn) { copy(d, in.x); k.Scale(d, 0.7) }, exact},
	{"ReLU", func(k kernels.Kernels, d []float32, in ewIn) { copy(d, in.x); k.ReLU(d) }, exact},
	{"GELUErf", func(k kernels.Kernels, d []float32, in ewIn) { copy(d, in.x); k.GELUErf(d) }, exact},
	{"Softmax", func(k kernels.Kernels, d []float32, in ewIn) { copy(d, in.x); k.Softmax(d) },
		func(_ ewIn, want []float32, i int) float64 {
			return tolSmRel*float64(want[i]) + tolSmAbs*maxAbs(want)
		}},
	{"GELU", func(k kernels.Kernels, d []float32, in ewIn) { copy(d, in.x); k.GELU(d) },
		func(in ewIn, want []float32, i int) float64 {
			x := float64(in.x[i])
			return actTol(x*(geluK1+geluK2*x*x), want[i]) + math.Abs(x)*0x1p-52
		}},
	{"SiLU", func(k kernels.Kernels, d []float32, in ewIn) { copy(d, in.x); k.SiLU(d) },
		func(in ewIn, want []float32, i int) float64 { return actTol(float64(in.x[i]), want[i]) }},
	{"SwiGLU", func(k kernels.Kernels, d []float32, in ewIn) { copy(d, in.x); k.SwiGLU(d, in.y) },
		func(in ewIn, want []float32, i int) float64 {
			return actTol(float64(in.x[i]), want[i]) + tolTiny*math.Abs(float64(in.y[i]))
		}},
	{"RMSNorm", func(k kernels.Kernels, d []float32, in ewIn) { k.RMSNorm(d, in.x, in.w, 1e-5) },
		func(_ ewIn, want []float32, _ int) float64 { return tolNorm * maxAbs(want) }},
	{"LayerNorm", func(k kernels.Kernels, d []float32, in ewIn) { k.LayerNorm(d, in.x, in.w, in.b, 1e-5) },
		func(_ ewIn, want []float32, _ int) float64 { return tolNorm * maxAbs(want) }},
	{"LayerNormNoBias", func(k kernels.Kernels, d []float32, in ewIn) { k.LayerNorm(d, in.x, in.w, nil, 1e-5) },
		func(_ ewIn, want []float32, _ int) float64 { return tolNorm * maxAbs(want) }},
	// Two heads of width n/2, rotating len(cos) ≤ n/4 pairs of each: the rest must stay.
	{"RoPE", func(k kernels.Kernels, d []float32, in ewIn) {
		copy(d, in.x)
		if len(d)%2 == 0 && len(d) > 0 {
			k.RoPE(d, 2, len(d)/2, in.cos, in.sin)
		}
	}, func(in ewIn, _ []float32, i int) float64 {
		h := len(in.x) / 2
		if len(in.x)%2 != 0 || (i%h)/2 >= len(in.cos) {
			return 0
		}
		p, j := (i%h)/2, i-(i%h)%2 // the pair and its first element, within the head
		a, b := float64(in.x[j]), float64(in.x[j+1])
		c, s := float64(in.cos[p]), float64(in.sin[p])
		return tolRoPE * (math.Abs(a*c) + math.Abs(b*s) + math.Abs(a*s) + math.Abs(b*c))
	}},
}

func checkEW(t *testing.T, k kernels.Kernels, o ewOp, in ewIn, what string) {
	t.Helper()
	n := len(in.x)
	want := make([]float32, n)
	o.run(ref, want, in)
	// The destination sits at an odd offset, between sentinels.
	buf := make([]float32, n+10)
	for i := range buf {
		buf[i] = sentinel
	}
	got := buf[3 : 3+n : 3+n]
	o.run(k, got, in)
	for i := range want {
		tol := o.tol(in, want, i)
		ok := agree(got[i], want[i], tol)
		if tol == 0 {
			ok = identical(got[i], want[i])
		}
		if !ok {
			t.Fatalf("%s %s n=%d: [%d] = %v, reference %v (x=%v, tolerance %.3g)", o.name, what, n, i, got[i], want[i], in.x[i], tol)
		}
	}
	for i, v := range buf {
		if (i < 3 || i >= 3+n) && v != sentinel {
			t.Fatalf("%s %s n=%d: wrote outside the destination at %d", o.name, what, n, i-3)
		}
	}
}

func TestElementwise(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(4, 4))
		for _, n := range lengths() {
			for _, scale := range []float64{3, 30} {
				off := n % 8
				in := ewIn{
					x: at(randVec(r, n, scale), off), y: at(randVec(r, n, 3), (off+1)%8),
					w: at(randVec(r, n, 1), (off+2)%8), b: at(randVec(r, n, 1), (off+5)%8),
					cos: at(randVec(r, n/4, 1), (off+3)%8), sin: at(randVec(r, n/4, 1), (off+6)%8),
				}
				for _, o := range ewOps {
					checkEW(t, k, o, in, fmt.Sprintf("scale=%v", scale))
				}
			}
		}
	})
}

// extremes are the values every element-wise kernel must handle like the reference.
var extremes = []float32{nan, inf, -inf, 0, float32(math.Copysign(0, -1)), math.MaxFloat32, -math.MaxFloat32,
	math.SmallestNonzeroFloat32, 1e-30, -1e-30, 1e30, -1e30, 100, -100, 89, -89, 88.7, -88.7, 87.5, -87.5, 86, -86,
	20, -20, 10, -10, 5, -5, 1, -1, 0.5, -0.5, 1e-4, -1e-4}

// TestElementwiseExtremes puts each extreme value at the start, the middle and the tail
// of vectors of several lengths (so both whole-vector and masked-tail lanes see it).
func TestElementwiseExtremes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(5, 5))
		for _, n := range []int{1, 4, 7, 8, 9, 16, 17, 36, 70} {
			for _, v := range extremes {
				for _, p := range []int{0, n / 2, n - 1} {
					in := ewIn{x: randVec(r, n, 2), y: randVec(r, n, 2), w: randVec(r, n, 1), b: randVec(r, n, 1),
						cos: randVec(r, n/4, 1), sin: randVec(r, n/4, 1)}
					in.x[p] = v
					for _, o := range ewOps {
						checkEW(t, k, o, in, fmt.Sprintf("x[%d]=%v", p, v))
					}
				}
			}
		}
	})
}

// TestActivationAccuracy sweeps the activations densely over [-30, 30], checks them
// against the reference and logs the largest relative errors against the exact values
// (float64, rounded once), for the backend and for the reference.
func TestActivationAccuracy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		var x []float32
		for v := -30.0; v <= 30; v += 1.0 / 128 {
			x = append(x, float32(v))
		}
		r := rand.New(rand.NewPCG(6, 6))
		in := ewIn{x: x, y: randVec(r, len(x), 2)}
		silu := func(v float64) float64 { return v / (1 + math.Exp(-v)) }
		exact := map[string]func(i int) float64{
			"GELU": func(i int) float64 {
				v := float64(x[i])
				return v / (1 + math.Exp(v*(geluK1+geluK2*v*v)))
			},
			"SiLU":   func(i int) float64 { return silu(float64(x[i])) },
			"SwiGLU": func(i int) float64 { return silu(float64(x[i])) * float64(in.y[i]) },
		}
		for _, o := range ewOps {
			f := exact[o.name]
			if f == nil {
				continue
			}
			checkEW(t, k, o, in, "sweep")
			want, got := make([]float32, len(x)), make([]float32, len(x))
			o.run(ref, want, in)
			o.run(k, got, in)
			worst := func(v []float32) (ulps float64, at float32) {
				for i := range v {
					e := f(i)
					if math.Abs(e) > 1e-30 {
						if u := math.Abs(float64(v[i])-float64(float32(e))) / math.Abs(e) / eps; u > ulps {
							ulps, at = u, x[i]
						}
					}
				}
				return ulps, at
			}
			bu, bx := worst(got)
			ru, rx := worst(want)
			t.Logf("%s: max relative error %.1f ulp at x=%v (reference: %.1f ulp at x=%v)", o.name, bu, bx, ru, rx)
		}
	})
}

// TestReferenceSoftmaxEdges states the reference's behaviour on extreme inputs, which
// every backend must then match (TestSoftmaxEdges).
func TestReferenceSoftmaxEdges(t *testing.T) {
	x := []float32{1000, 999, -1000}
	ref.Softmax(x)
	if math.Abs(float64(x[0])-0.7310586) > 1e-6 || x[2] != 0 {
		t.Fatalf("large logits: %v", x)
	}
	x = []float32{1, nan, 2}
	ref.Softmax(x)
	for _, v := range x {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("NaN input must give NaN everywhere, got %v", x)
		}
	}
	x = []float32{inf, 0, inf}
	ref.Softmax(x)
	if x[0] != 0.5 || x[1] != 0 || x[2] != 0.5 {
		t.Fatalf("+Inf inputs share the mass: %v", x)
	}
	x = []float32{-inf, -inf}
	ref.Softmax(x)
	if !math.IsNaN(float64(x[0])) || !math.IsNaN(float64(x[1])) {
		t.Fatalf("all -Inf gives NaN (−Inf − −Inf): %v", x)
	}
	x = []float32{-inf, 0, -inf}
	ref.Softmax(x)
	if x[0] != 0 || x[1] != 1 || x[2] != 0 {
		t.Fatalf("-Inf entries get exactly 0: %v", x)
	}
}

func TestSoftmaxEdges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		cases := [][]float32{{1000, 999, -1000}, {1, nan, 2}, {inf, 0, inf}, {-1e30, -1e30}, {-inf, -inf}, {-inf, 0, -inf}, {5}, {-inf}, {inf}, {nan}}
		r := rand.New(rand.NewPCG(7, 7))
		// Each special value at the start, middle and end of vectors of several lengths,
		// alone, twice, and with -Inf entries.
		for _, n := range []int{2, 7, 8, 9, 16, 17, 33, 100} {
			for _, v := range []float32{nan, inf, -inf} {
				for _, p := range []int{0, n / 2, n - 1} {
					x := randVec(r, n, 3)
					x[p] = v
					cases = append(cases, x)
					y := append([]float32(nil), x...)
					y[(p+n/3+1)%n] = v
					cases = append(cases, y)
					z := append([]float32(nil), x...)
					z[(p+1)%n] = -inf
					cases = append(cases, z)
				}
			}
			x := make([]float32, n)
			for i := range x {
				x[i] = -inf
			}
			cases = append(cases, x)
			y := randVec(r, n, 1)
			y[n-1] = -95 // e^(x-max) is below float32's normal range
			cases = append(cases, y)
		}
		for _, in := range cases {
			got, want := append([]float32(nil), in...), append([]float32(nil), in...)
			k.Softmax(got)
			ref.Softmax(want)
			for i := range want {
				exactly := special(in[i]) || want[i] == 0 && in[i] < -1e30
				ok := agree(got[i], want[i], tolSmRel*float64(want[i])+tolSmAbs)
				if exactly {
					ok = identical(got[i], want[i])
				}
				if !ok {
					t.Fatalf("softmax(%v) = %v, reference %v", in, got, want)
				}
			}
		}
	})
}

func TestNormsSpecials(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(8, 8))
		for _, n := range []int{1, 5, 8, 13, 64, 100} {
			for _, scale := range []float64{1e-3, 1, 1e3, 1e15} {
				in := ewIn{x: randVec(r, n, scale), w: randVec(r, n, 1), b: randVec(r, n, 1)}
				for _, o := range ewOps {
					if o.name != "RMSNorm" && o.name != "LayerNorm" && o.name != "LayerNormNoBias" {
						continue
					}
					checkEW(t, k, o, in, fmt.Sprintf("scale=%v", scale))
				}
			}
		}
	})
}

func TestRoPE(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(12, 12))
		for _, heads := range []int{1, 2, 3, 12} {
			for _, hd := range []int{2, 4, 6, 8, 10, 16, 18, 32, 64, 66, 128} {
				for _, half := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, hd / 2} {
					if half > hd/2 {
						continue
					}
					x := at(randVec(r, heads*hd, 2), half%8)
					cos, sin := at(randVec(r, half, 1), hd%8), at(randVec(r, half, 1), heads%8)
					got, want := append([]float32(nil), x...), append([]float32(nil), x...)
					k.RoPE(got, heads, hd, cos, sin)
					ref.RoPE(want, heads, hd, cos, sin)
					for i := range want {
						p, j := (i%hd)/2, i-(i%hd)%2
						tol := 0.0
						if p < half {
							a, b := float64(x[j]), float64(x[j+1])
							tol = tolRoPE * (math.Abs(a*float64(cos[p])) + math.Abs(b*float64(sin[p])) + math.Abs(a*float64(sin[p])) + math.Abs(b*float64(cos[p])))
						}
						if tol == 0 && !identical(got[i], want[i]) || !agree(got[i], want[i], tol) {
							t.Fatalf("heads=%d hd=%d half=%d: [%d] = %v, reference %v", heads, hd, half, i, got[i], want[i])
						}
					}
				}
			}
		}
	})
}

// TestRoPENeoX: the rotate-half pairing (i, i+half) of the first 2·half dimensions of
// each head, the rest left as they are, on every head count, width and rotated part.
func TestRoPENeoX(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(14, 14))
		for _, heads := range []int{1, 2, 3, 12} {
			for _, hd := range []int{2, 4, 6, 8, 10, 16, 18, 32, 64, 66, 96, 128} {
				for _, half := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 24, hd / 2} {
					if half > hd/2 {
						continue
					}
					x := at(randVec(r, heads*hd, 2), half%8)
					cos, sin := at(randVec(r, half, 1), hd%8), at(randVec(r, half, 1), heads%8)
					got, want := append([]float32(nil), x...), append([]float32(nil), x...)
					k.RoPENeoX(got, heads, hd, cos, sin)
					ref.RoPENeoX(want, heads, hd, cos, sin)
					for i := range want {
						d := i % hd
						tol := 0.0
						if d < 2*half {
							p := d % half
							j := i - d + p // the pair's first element
							a, b := float64(x[j]), float64(x[j+half])
							c, s := float64(cos[p]), float64(sin[p])
							tol = tolRoPE * (math.Abs(a*c) + math.Abs(b*s) + math.Abs(a*s) + math.Abs(b*c))
						}
						if tol == 0 && !identical(got[i], want[i]) || !agree(got[i], want[i], tol) {
							t.Fatalf("heads=%d hd=%d half=%d: [%d] = %v, reference %v", heads, hd, half, i, got[i], want[i])
						}
					}
				}
			}
		}
	})
}

// TestRoPENeoXReference checks the reference itself against the rotation written out in
// float64: each pair (i, i+half) turned by its angle, the dimensions past 2·half kept.
func TestRoPENeoXReference(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 15))
	for _, hd := range []int{2, 6, 64, 96} {
		for _, half := range []int{1, hd / 4, hd / 2} {
			if half == 0 {
				continue
			}
			const heads = 3
			x := randVec(r, heads*hd, 2)
			ang := randVec(r, half, 3)
			cos, sin := make([]float32, half), make([]float32, half)
			for i, a := range ang {
				cos[i], sin[i] = float32(math.Cos(float64(a))), float32(math.Sin(float64(a)))
			}
			got := append([]float32(nil), x...)
			ref.RoPENeoX(got, heads, hd, cos, sin)
			for h := 0; h < heads; h++ {
				for d := 0; d < hd; d++ {
					i := h*hd + d
					want := float64(x[i])
					if d < 2*half {
						p := d % half
						a, b := float64(x[h*hd+p]), float64(x[h*hd+p+half])
						c, s := float64(cos[p]), float64(sin[p])
						if d < half {
							want = a*c - b*s
						} else {
							want = a*s + b*c
						}
					}
					if math.Abs(float64(got[i])-want) > 1e-6*(1+math.Abs(want)) {
						t.Fatalf("hd=%d half=%d: [%d] = %v, want %v", hd, half, i, got[i], want)
					}
				}
			}
		}
	}
}

func TestSelection(t *testing.T) {
	t.Setenv(backends.EnvVar, "generic")
	b, err := backends.Resolve("")
	if err != nil || b.Name != "generic" {
		t.Fatalf("LMRUN_BACKEND=generic gave %v, %v", b.Name, err)
	}
	if _, err := backends.Resolve("no-such-backend"); err == nil {
		t.Fatal("unknown backend accepted")
	}
	for _, b := range backends.List() {
		_, err := backends.Resolve(b.Name)
		if b.Available() != (err == nil) {
			t.Errorf("backend %s: available %v but Resolve said %v", b.Name, b.Available(), err)
		}
	}
	t.Setenv(backends.EnvVar, "")
	if best, _ := backends.Resolve(""); best.Name != backends.Best().Name || !best.Available() {
		t.Fatalf("default selection %s", best.Name)
	}
}

// TestMatMulBatchInvariance: row t of a product of T rows of x is bit for bit the product
// of that row alone (T = 1), for every weight dtype, ragged shapes, with and without
// bias, whatever the row ranges — MatMul, and MatMulQ8 on the activations quantized as
// the engine quantizes them. Continuous batching runs the next token of N sequences as
// one product; a sequence must decode the same whether it shares the step or not. The
// reference is held to it too.
func TestMatMulBatchInvariance(t *testing.T) {
	t.Run("generic", func(t *testing.T) { batchInvariance(t, ref) })
	forEachBackend(t, batchInvariance)
}

// batchInvariance is TestMatMulBatchInvariance for one backend.
func batchInvariance(t *testing.T, k kernels.Kernels) {
	r := rand.New(rand.NewPCG(15, 15))
	const nx = 17 // tokens of x; each product takes T consecutive ones
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0, dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		colsList := []int{3, 8, 17, 40, 56, 100, 264, 520, 1000, 1020, 2100}
		switch {
		case dt.KQuant():
			colsList = []int{256, 512, 768, 1280}
		case dt == dtype.Q8_0 || dt == dtype.Q4_0:
			colsList = []int{32, 96, 288, 1024, 2080}
		}
		for ci, cols := range colsList {
			rows := []int{13, 23, 6, 37}[ci%4]
			w, err := kernels.NewMat(dt, weightBytes(r, dt, rows, cols), rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			x := randVec(r, nx*cols, 1)
			if cols >= 40 {
				// One token past what an integer widening of f16 takes (|x| ≥ 2¹⁶).
				x[2*cols+cols/2] = 70000
			}
			bias := randVec(r, rows, 1)
			for _, b := range [][]float32{nil, bias} {
				what := fmt.Sprintf("MatMul %v %dx%d bias=%v", dt, rows, cols, b != nil)
				checkBatchInvariance(t, k, r, nx, rows, cols, what, func(dst []float32, ld, t0, T, r0, r1 int, sc kernels.Scratch) {
					k.MatMul(dst, ld, x[t0*cols:], T, w, b, r0, r1, sc)
				})
			}
			q8, ok := k.(kernels.Q8Kernels)
			if !ok || dt == dtype.F32 || dt == dtype.F16 || dt == dtype.BF16 {
				continue
			}
			rb := dtype.RowBytes(kernels.ActivationDType(dt), cols)
			xq := make([]byte, nx*rb)
			for t0 := 0; t0 < nx; t0++ {
				kernels.QuantizeActivations(q8, dt, x[t0*cols:(t0+1)*cols], xq[t0*rb:(t0+1)*rb])
			}
			for _, b := range [][]float32{nil, bias} {
				what := fmt.Sprintf("MatMulQ8 %v %dx%d bias=%v", dt, rows, cols, b != nil)
				checkBatchInvariance(t, k, r, nx, rows, cols, what, func(dst []float32, ld, t0, T, r0, r1 int, sc kernels.Scratch) {
					q8.MatMulQ8(dst, ld, xq[t0*rb:], T, w, b, r0, r1, sc)
				})
			}
		}
	}
}

// checkBatchInvariance runs mm — a product of tokens t0 ≤ t < t0+T of nx into dst —
// for every token alone, then for T in 2, 3, 4, 5, 7, 8 and 17 consecutive tokens
// (split into random row ranges), and reports the first result, if any, that does not
// have the bits of the same token's result alone.
func checkBatchInvariance(t *testing.T, k kernels.Kernels, r *rand.Rand, nx, rows, cols int, what string,
	mm func(dst []float32, ld, t0, T, r0, r1 int, sc kernels.Scratch)) {
	t.Helper()
	sc := kernels.NewScratch(k, nx, cols)
	alone := make([]float32, nx*rows)
	for t0 := 0; t0 < nx; t0++ {
		mm(alone[t0*rows:], rows, t0, 1, 0, rows, sc)
	}
	for _, T := range []int{2, 3, 4, 5, 7, 8, 17} {
		t0 := r.IntN(nx - T + 1)
		ld := rows + r.IntN(3)
		got := make([]float32, T*ld)
		ranges := split(r, rows)
		for _, rg := range ranges {
			mm(got, ld, t0, T, rg[0], rg[1], sc)
		}
		for tt := 0; tt < T; tt++ {
			for o := 0; o < rows; o++ {
				g, a := got[tt*ld+o], alone[(t0+tt)*rows+o]
				if math.Float32bits(g) != math.Float32bits(a) {
					t.Errorf("%s T=%d ranges %v: token %d row %d = %v, alone %v", what, T, ranges, t0+tt, o, g, a)
					return
				}
			}
		}
	}
}
