//go:build arm64 && !purego

package neon

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// Tests of QuantizeQ8, the activation quantizer: the assembly (quantQ8) must write the
// reference's bytes (dtype.QuantizeRowQ8_0) for every block it takes, and take every
// block but those the reference must do. The conformance suite (backends) checks the
// bytes of QuantizeQ8 as a whole.

const q8Guard = 0xa5 // sentinel byte after the blocks written

// q8Block makes 32 floats: f(j) for element j.
func q8Block(f func(j int) float32) []float32 {
	x := make([]float32, 32)
	for j := range x {
		x[j] = f(j)
	}
	return x
}

// checkQuantQ8 runs quantQ8 on the blocks of x, checks it returns want and that it wrote
// the reference's bytes for the first want blocks and nothing after them.
func checkQuantQ8(t *testing.T, what string, x []float32, want int) {
	t.Helper()
	nb := len(x) / 32
	got := bytes.Repeat([]byte{q8Guard}, nb*dtype.BlockQ8_0+8)
	exp := bytes.Repeat([]byte{q8Guard}, len(got))
	dtype.QuantizeRowQ8_0(x[:want*32], exp[:want*dtype.BlockQ8_0])
	if n := quantQ8(&got[0], &x[0], nb); n != want {
		t.Errorf("%s: quantQ8 did %d of %d blocks, want %d", what, n, nb, want)
	}
	for i := range got {
		if got[i] != exp[i] {
			t.Errorf("%s: byte %d (block %d) = %#02x, want %#02x", what, i, i/dtype.BlockQ8_0, got[i], exp[i])
			return
		}
	}
}

// TestQuantQ8Stops: quantQ8 quantizes finite blocks itself and stops exactly before a
// block the reference must do (a NaN or an infinity, or an amax whose 1/d overflows),
// writing nothing of it — so that the fast path really is the one taken.
func TestQuantQ8Stops(t *testing.T) {
	requireASIMD(t)
	const nb = 5
	x := make([]float32, nb*32)
	for i := range x {
		x[i] = float32(i%23) - 11.25
	}
	checkQuantQ8(t, "finite blocks", x, nb)
	tiny := append([]float32(nil), x...)
	for i := range 32 { // the whole block tiny: d = amax/127 is subnormal, 1/d is +Inf
		tiny[32+i] = 1e-40
	}
	checkQuantQ8(t, "1e-40", tiny, 1)
	for _, v := range []float64{math.NaN(), math.Copysign(math.NaN(), -1), math.Inf(-1), math.Inf(1)} {
		for j := range 32 { // at every position of the block
			block := j % nb
			y := append([]float32(nil), x...)
			y[block*32+j] = float32(v)
			checkQuantQ8(t, fmt.Sprintf("%v at %d of block %d", v, j, block), y, block)
		}
	}
}

// TestQuantQ8Exact: the bytes of the blocks quantQ8 takes, on the cases where rounding
// or the scale's range matter: products that are exact halves (ties away from zero), d
// halfway between two binary16 values (ties to even), d beyond binary16's range or in
// its subnormals, d subnormal in float32 with 1/d still finite, d = 0, -0, and random
// blocks across float32's range.
func TestQuantQ8Exact(t *testing.T) {
	requireASIMD(t)
	cases := map[string][]float32{
		// amax 127: d = 1, id = 1, so the quants are x rounded, every .5 a tie
		"ties": q8Block(func(j int) float32 {
			switch j {
			case 3:
				return 127
			case 9:
				return 0.49999997
			case 10:
				return -0.49999997
			}
			return float32(j%17-8) + 0.5
		}),
		// d = 1 + 2⁻¹¹ and 1 + 3·2⁻¹¹, exact, halfway between binary16 neighbours
		"f16 tie down": q8Block(func(j int) float32 { return float32(j%5-2) * 127 * (1 + 1.0/2048) / 2 }),
		"f16 tie up": q8Block(func(j int) float32 {
			if j == 30 {
				return -127 * (1 + 3.0/2048)
			}
			return float32(j) * 0.37
		}),
		"f16 overflow":  q8Block(func(j int) float32 { return float32(j-15) * 1e30 }),
		"f16 subnormal": q8Block(func(j int) float32 { return float32(j-20) * 1e-6 }),
		"f32 subnormal": q8Block(func(j int) float32 { return float32(j-20) * 5e-38 }), // d < 2⁻¹²⁶, 1/d finite
		"max":           q8Block(func(j int) float32 { return float32(math.MaxFloat32) / float32(j+1) }),
		"zero":          make([]float32, 32),
		"d underflows":  q8Block(func(j int) float32 { return float32(j%3-1) * 1e-44 }), // d = 0, id = 0
		"-0": q8Block(func(int) float32 {
			return float32(math.Copysign(0, -1))
		}),
	}
	for name, x := range cases {
		checkQuantQ8(t, name, x, 1)
	}
	r := rand.New(rand.NewPCG(41, 42))
	const nb = 64
	x := make([]float32, nb*32)
	for b := 0; b < nb; b++ {
		scale := math.Pow(10, -36+72*r.Float64())
		for j := 0; j < 32; j++ {
			x[b*32+j] = float32(r.NormFloat64() * scale)
		}
	}
	checkQuantQ8(t, "random", x, nb)
}

// TestQuantizeQ8: the whole quantizer, with the reference's blocks among the assembly's
// (several in a row, first and last), equals the reference byte for byte, writes nothing
// past the blocks, panics on a short dst and allocates nothing.
func TestQuantizeQ8(t *testing.T) {
	requireASIMD(t)
	r := rand.New(rand.NewPCG(43, 44))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	k := New()
	for _, specials := range [][]int{nil, {0}, {6}, {0, 1, 2}, {1, 3, 4}, {0, 1, 2, 3, 4, 5, 6}} {
		const nb = 7
		x := randVec(r, nb*32, 1)
		for i, b := range specials {
			switch i % 3 {
			case 0:
				x[b*32+r.IntN(32)] = nan
			case 1:
				x[b*32+r.IntN(32)] = -inf
			default:
				for j := range 32 {
					x[b*32+j] = 1e-40
				}
			}
		}
		want := bytes.Repeat([]byte{q8Guard}, nb*dtype.BlockQ8_0+3)
		got := bytes.Clone(want)
		kernels.QuantizeQ8(x, want[:nb*dtype.BlockQ8_0])
		k.QuantizeQ8(x, got[:nb*dtype.BlockQ8_0])
		if !bytes.Equal(got, want) {
			t.Errorf("reference blocks %v: bytes differ from the reference's", specials)
		}
	}
	x := randVec(r, 64, 1)
	if p := panicked(func() { k.QuantizeQ8(x, make([]byte, 2*dtype.BlockQ8_0-1)) }); p == nil {
		t.Error("short dst: no panic")
	}
	k.QuantizeQ8(nil, nil) // nothing to do
	dst := make([]byte, 2*dtype.BlockQ8_0)
	x[40] = nan // one block each way
	if n := testing.AllocsPerRun(10, func() { k.QuantizeQ8(x, dst) }); n != 0 {
		t.Errorf("%v allocations per call", n)
	}
}
