// Package qgemmtest checks a backend's MatMulQ8 on q8_0 and q4_0 weights against
// kernels.Reference, bit for bit, on the shapes and values the int8 GEMM of package
// qgemm handles separately: rows not a multiple of the group, row ranges starting inside
// a group, block counts of every parity, token counts past a tile, extreme quants and
// scales.
package qgemmtest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// Backend is what Check needs of a backend.
type Backend interface {
	kernels.Kernels
	kernels.Q8Kernels
}

// half returns a random f16 scale: mostly normal, sometimes 0, subnormal, the largest
// finite, and with special set rarely ±Inf or NaN.
func half(r *rand.Rand, special bool) uint16 {
	switch p := r.IntN(100); {
	case p < 3:
		return 0
	case p < 6:
		return uint16(1 + r.IntN(0x3ff)) // subnormal
	case p < 8:
		return 0x7bff // 65504
	case special && p == 8:
		return 0x7c00 | uint16(r.IntN(2))<<15 // ±Inf
	case special && p == 9:
		return 0x7e00 // NaN
	}
	return uint16(r.IntN(2))<<15 | uint16(8+r.IntN(14))<<10 | uint16(r.IntN(1024))
}

// quants fills q with random quants: uniform bytes, or a block of one extreme value.
// Activations (act) are never −128: QuantizeQ8 never writes it, and the kernels of
// backends/avx2 rely on that.
func quants(r *rand.Rand, q []byte, act bool) {
	switch r.IntN(8) {
	case 0:
		for i := range q {
			q[i] = 0x80 // −128
			if act {
				q[i] = 0x81
			}
		}
	case 1:
		for i := range q {
			q[i] = 0x7f
		}
	default:
		for i := range q {
			q[i] = byte(r.IntN(256))
			if act && q[i] == 0x80 {
				q[i] = 0x81
			}
		}
	}
}

// Blocks returns n random blocks of dtype dt (q8_0 or q4_0) in their ggml layout; act
// makes them activations (no quant −128).
func Blocks(r *rand.Rand, dt dtype.DType, n int, special, act bool) []byte {
	bs := dtype.BlockQ8_0
	if dt == dtype.Q4_0 {
		bs = dtype.BlockQ4_0
	}
	b := make([]byte, n*bs)
	for i := 0; i < n; i++ {
		blk := b[i*bs : (i+1)*bs]
		binary.LittleEndian.PutUint16(blk, half(r, special))
		quants(r, blk[2:], act)
	}
	return b
}

// Check runs k's MatMulQ8 against the reference's on q8_0 and q4_0 weights for cols up
// to 4096 (every block count parity), rows 1–72 (72: pairs of groups after a range's
// first, cut group), T up to 64 (every tail of 8 and of 4
// tokens; fewer shapes with -short), several row ranges and
// bias nil or not, and fails at the first result whose bits differ (NaN matching any
// NaN) or at a write outside the rows asked for.
func Check(t *testing.T, k Backend, seed uint64) {
	t.Helper()
	check(t, k, seed, nil)
}

// CheckRepacked is Check on matrices pack packed first (a backend's Repack, or its
// GEMM's Pack): it must pack every q8_0 matrix; a q4_0 one it declines is checked as it
// is.
func CheckRepacked(t *testing.T, k Backend, pack func(*kernels.Mat) bool, seed uint64) {
	t.Helper()
	check(t, k, seed, pack)
}

func check(t *testing.T, k Backend, seed uint64, pack func(*kernels.Mat) bool) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	var ref kernels.Reference
	nbs, rowsList, Ts := []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 24, 33, 64, 128}, []int{1, 7, 15, 16, 17, 33, 40, 72},
		[]int{1, 2, 3, 5, 8, 9, 10, 11, 12, 14, 15, 17, 64}
	if testing.Short() { // -short (and the race detector's run): a tenth of the products
		nbs, rowsList, Ts = []int{1, 2, 3, 17, 128}, []int{1, 7, 17, 33}, []int{1, 2, 3, 5, 9, 10, 11, 12}
	}
	// q8_0 twice: as Blocks makes it, and without quants −128 (kernels.Mat.Q8Sym, which
	// some kernels take their own way).
	for _, c := range []struct {
		dt  dtype.DType
		sym bool
	}{{dtype.Q8_0, false}, {dtype.Q8_0, true}, {dtype.Q4_0, false}} {
		dt := c.dt
		for _, nb := range nbs {
			n := nb * dtype.QBlock
			for _, rows := range rowsList {
				special := r.IntN(4) == 0
				data := Blocks(r, dt, rows*nb, special, false)
				if c.sym {
					for i := 0; i < rows*nb; i++ {
						for j := 2; j < dtype.BlockQ8_0; j++ {
							if q := &data[i*dtype.BlockQ8_0+j]; *q == 0x80 {
								*q = 0x81
							}
						}
					}
				}
				w, err := kernels.NewMat(dt, data, rows, n)
				if err != nil {
					t.Fatal(err)
				}
				if c.sym && !w.Q8Sym() {
					t.Fatalf("%d×%d q8_0 without −128 not Q8Sym", rows, n)
				}
				if pack != nil && (!pack(w) || w.Packed == nil) && dt == dtype.Q8_0 {
					t.Fatalf("%s: %v %d×%d not repacked", k.Name(), dt, rows, n)
				}
				repack := w.Packed != nil
				bias := make([]float32, rows)
				for i := range bias {
					bias[i] = float32(r.NormFloat64())
				}
				for _, T := range Ts {
					if T*n*rows > 1<<20 {
						continue
					}
					xq := Blocks(r, dtype.Q8_0, T*nb, special, true)
					ld := rows + 3
					sc := kernels.NewScratch(k, T, n)
					for _, rr := range [][2]int{{0, rows}, {rows / 3, rows}, {min(5, rows-1), min(rows, 21)}, {rows / 2, rows/2 + 1}, {1, max(1, rows-1)}} {
						for _, b := range [][]float32{nil, bias} {
							want := make([]float32, T*ld)
							got := make([]float32, T*ld)
							for i := range want {
								want[i] = float32(-i)
								got[i] = float32(-i)
							}
							ref.MatMulQ8(want, ld, xq, T, w, b, rr[0], rr[1], nil)
							k.MatMulQ8(got, ld, xq, T, w, b, rr[0], rr[1], sc)
							for i := range want {
								if !same(want[i], got[i]) {
									t.Fatalf("%s repacked=%v %v (sym %v) %d×%d T=%d rows [%d,%d) bias=%v: dst[%d] (token %d, row %d) = %v (%#x), reference %v (%#x)",
										k.Name(), repack, dt, c.sym, rows, n, T, rr[0], rr[1], b != nil, i, i/ld, i%ld,
										got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
								}
							}
						}
					}
				}
			}
		}
	}
}

// same reports whether a and b have the same bits or are both NaN: which NaN comes out
// of a sum of Inf and NaN terms depends on the operand order Go's compiler picks for the
// reference's commutative float32 operations, which no kernel can promise to follow.
func same(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b
}

// CheckAllocs checks that k's MatMulQ8 on q8_0 and q4_0 weights allocates nothing, T = 13
// tokens of a row range starting mid-group, and again, T = 1 and 13, once pack (the
// driver's Pack) has packed the matrix; k's own Repack must take q8_0 and decline q4_0.
func CheckAllocs(t *testing.T, k interface {
	Backend
	kernels.Repacker
}, pack func(*kernels.Mat) bool) {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 5))
	const rows, cols, T = 37, 256, 13
	nb := cols / dtype.QBlock
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		w, err := kernels.NewMat(dt, Blocks(r, dt, rows*nb, false, false), rows, cols)
		if err != nil {
			t.Fatal(err)
		}
		xq := Blocks(r, dtype.Q8_0, T*nb, false, true)
		dst, bias := make([]float32, T*rows), make([]float32, rows)
		sc := kernels.NewScratch(k, T, cols)
		if n := testing.AllocsPerRun(10, func() { k.MatMulQ8(dst, rows, xq, T, w, bias, 3, rows, sc) }); n != 0 {
			t.Errorf("%v: MatMulQ8 allocates %v times per call", dt, n)
		}
		if k.Repack(w) != (dt == dtype.Q8_0) || !pack(w) {
			t.Fatalf("%v: not repacked", dt)
		}
		for _, T := range []int{1, T} {
			if n := testing.AllocsPerRun(10, func() { k.MatMulQ8(dst, rows, xq, T, w, bias, 3, rows, sc) }); n != 0 {
				t.Errorf("%v repacked, T=%d: MatMulQ8 allocates %v times per call", dt, T, n)
			}
		}
	}
}
