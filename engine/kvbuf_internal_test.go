package engine

import (
	"math"
	"testing"

	"github.com/lmrun/lmrun/dtype"
)

// TestToHalf: toHalf gives dtype.F32ToF16's bits on every float32 of a stride through
// all of them and on every one around the edges of its short path (the normal binary16
// exponents, the rounding carries into the exponent and into the infinity).
func TestToHalf(t *testing.T) {
	check := func(b uint32) {
		v := math.Float32frombits(b)
		if got, want := toHalf(v), dtype.F32ToF16(v); got != want {
			t.Fatalf("toHalf(%#08x) = %#04x, want %#04x", b, got, want)
		}
	}
	for b := uint64(0); b < 1<<32; b += 4093 { // a prime stride meets every low-bit pattern
		check(uint32(b))
	}
	for _, edge := range []uint32{0x38800000, 0x47800000, 0x477fe000, 0x477ff000, 0x387fe000, 0x38ffe000, 0x3f7ff000, 0x3f7ff001} {
		for d := uint32(0); d < 1<<14; d++ {
			for _, sign := range []uint32{0, 1 << 31} {
				check(sign | (edge - 1<<13 + d))
			}
		}
	}
}
