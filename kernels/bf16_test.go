package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
)

// TestRoundBF16 checks RoundBF16 against dtype.F32ToBF16, specials included.
func TestRoundBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := []float32{0, float32(math.Copysign(0, -1)), 1, 1 + 0x1p-8, 1 + 0x1p-7 + 0x1p-8, float32(math.Inf(-1)), float32(math.NaN()), 0x1p-130, 3.4e38}
	for i := 0; i < 1000; i++ {
		x = append(x, math.Float32frombits(r.Uint32()))
	}
	got := make([]uint16, len(x))
	RoundBF16(x, got)
	for i, v := range x {
		if want := dtype.F32ToBF16(v); got[i] != want {
			t.Fatalf("RoundBF16(%#x) = %#x, want %#x", math.Float32bits(v), got[i], want)
		}
	}
	if got[3] != 0x3f80 || got[4] != 0x3f82 { // ties to even: 1+2⁻⁸ down, 1+2⁻⁷+2⁻⁸ up
		t.Fatalf("ties: %#x %#x", got[3], got[4])
	}
}

// TestMatMulBF16 checks the specification against float64 sums of the same (exact)
// products, with bias, for row ranges, and that a short slice panics.
func TestMatMulBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	rows, cols, T, ld := 5, 37, 3, 7
	data := make([]byte, 2*rows*cols)
	for i := 0; i < rows*cols; i++ {
		binary.LittleEndian.PutUint16(data[2*i:], dtype.F32ToBF16(float32(r.NormFloat64())))
	}
	w, err := NewMat(dtype.BF16, data, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, T*cols)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	xb := make([]uint16, len(x))
	RoundBF16(x, xb)
	bias := []float32{1, -2, 0.5, 3, -1}
	dst := make([]float32, T*ld)
	MatMulBF16(dst, ld, xb, T, w, bias, 1, rows)
	for t0 := 0; t0 < T; t0++ {
		for o := 0; o < ld; o++ {
			g := dst[t0*ld+o]
			if o < 1 || o >= rows {
				if g != 0 {
					t.Fatalf("[%d,%d] = %v outside the rows", t0, o, g)
				}
				continue
			}
			var s, a float64
			for i := 0; i < cols; i++ {
				p := float64(dtype.BF16ToF32(binary.LittleEndian.Uint16(data[2*(o*cols+i):]))) * float64(dtype.BF16ToF32(xb[t0*cols+i]))
				s += p
				a += math.Abs(p)
			}
			s += float64(bias[o])
			if math.Abs(float64(g)-s) > 1e-6*(a+math.Abs(float64(bias[o]))) {
				t.Fatalf("[%d,%d] = %v, want %v", t0, o, g, s)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("short activations: no panic")
		}
	}()
	MatMulBF16(dst, ld, xb[:T*cols-1], T, w, nil, 0, rows)
}
