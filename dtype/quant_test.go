package dtype

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// The reference implementations below are written from ggml's C code
// (ggml_compute_fp32_to_fp16's portable path, quantize_row_q8_0_ref,
// quantize_row_q4_0_ref, ggml_vec_dot_q8_0_q8_0, ggml_vec_dot_q4_0_q8_0) as directly as Go
// allows, independently of the implementations under test.

// ggmlFP16 is the portable fp32 → fp16 conversion of ggml (from the FP16 library).
func ggmlFP16(f float32) uint16 {
	scaleToInf := math.Float32frombits(0x77800000)  // 0x1.0p+112f
	scaleToZero := math.Float32frombits(0x08800000) // 0x1.0p-110f
	base := float32(float32(abs32(f)*scaleToInf) * scaleToZero)
	w := math.Float32bits(f)
	shl1 := w + w
	sign := w & 0x80000000
	bias := shl1 & 0xff000000
	if bias < 0x71000000 {
		bias = 0x71000000
	}
	base = float32(math.Float32frombits((bias>>1)+0x07800000) + base)
	bits := math.Float32bits(base)
	expBits := (bits >> 13) & 0x00007c00
	mantBits := bits & 0x00000fff
	nonsign := expBits + mantBits
	if shl1 > 0xff000000 {
		nonsign = 0x7e00
	}
	return uint16(sign>>16) | uint16(nonsign)
}

// ggmlQ8_0 is quantize_row_q8_0_ref.
func ggmlQ8_0(x []float32) []byte {
	out := make([]byte, 0, len(x)/32*34)
	for i := 0; i < len(x)/32; i++ {
		amax := float32(0)
		for j := 0; j < 32; j++ {
			v := float32(math.Abs(float64(x[i*32+j])))
			if !(amax > v) {
				amax = v
			}
		}
		d := amax / ((1 << 7) - 1)
		id := float32(0)
		if d != 0 {
			id = 1.0 / d
		}
		out = binary.LittleEndian.AppendUint16(out, ggmlFP16(d))
		for j := 0; j < 32; j++ {
			x0 := x[i*32+j] * id
			out = append(out, byte(int8(math.Round(float64(x0))))) // roundf: ties away from zero
		}
	}
	return out
}

// ggmlQ4_0 is quantize_row_q4_0_ref.
func ggmlQ4_0(x []float32) []byte {
	out := make([]byte, 0, len(x)/32*18)
	for i := 0; i < len(x)/32; i++ {
		amax, max := float32(0), float32(0)
		for j := 0; j < 32; j++ {
			v := x[i*32+j]
			if amax < float32(math.Abs(float64(v))) {
				amax = float32(math.Abs(float64(v)))
				max = v
			}
		}
		d := max / -8
		id := float32(0)
		if d != 0 {
			id = 1.0 / d
		}
		out = binary.LittleEndian.AppendUint16(out, ggmlFP16(d))
		for j := 0; j < 16; j++ {
			x0 := x[i*32+j] * id
			x1 := x[i*32+16+j] * id
			xi0 := min(15, int8(math.Trunc(float64(x0+8.5))))
			xi1 := min(15, int8(math.Trunc(float64(x1+8.5))))
			out = append(out, uint8(xi0)|uint8(xi1)<<4)
		}
	}
	return out
}

// testVectors returns rows of several distributions, each a multiple of 32 long.
func testVectors(rng *rand.Rand) map[string][]float32 {
	n := 32 * 64
	gen := func(f func(i int) float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = f(i)
		}
		return v
	}
	return map[string][]float32{
		"normal":   gen(func(int) float32 { return float32(rng.NormFloat64()) }),
		"uniform":  gen(func(int) float32 { return rng.Float32()*2 - 1 }),
		"large":    gen(func(int) float32 { return float32(rng.NormFloat64() * 3e4) }),
		"tiny":     gen(func(int) float32 { return float32(rng.NormFloat64() * 1e-6) }),
		"subnorm":  gen(func(int) float32 { return float32(rng.NormFloat64() * 1e-9) }),
		"zeros":    gen(func(int) float32 { return 0 }),
		"sparse":   gen(func(int) float32 { return pick(rng.IntN(17) == 0, float32(rng.NormFloat64()), 0) }),
		"integers": gen(func(int) float32 { return float32(rng.IntN(33) - 16) }), // many ties at .5
		"halves":   gen(func(int) float32 { return float32(rng.IntN(255)-127) / 2 }),
		// A block whose largest magnitude is negative, or positive, or both (ties).
		"negmax":  gen(func(i int) float32 { return pick(i%32 == 5, -8, float32(rng.IntN(17)-8)) }),
		"posmax":  gen(func(i int) float32 { return pick(i%32 == 31, 8, float32(rng.IntN(17)-8)) }),
		"bothmax": gen(func(i int) float32 { return pick(i%2 == 0, 3, -3) }),
		"randbits": gen(func(int) float32 {
			for {
				f := math.Float32frombits(rng.Uint32())
				if !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) && math.Abs(float64(f)) < 6e4 {
					return f
				}
			}
		}),
	}
}

func pick(c bool, a, b float32) float32 {
	if c {
		return a
	}
	return b
}

func TestF16(t *testing.T) {
	// Every f16 converts exactly and back.
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			if F32ToF16(f)&0x7c00 != 0x7c00 || F32ToF16(f)&0x3ff == 0 {
				t.Fatalf("NaN %#04x became %#04x", h, F32ToF16(f))
			}
			continue
		}
		if got := F32ToF16(f); got != uint16(h) {
			t.Fatalf("%#04x → %v → %#04x", h, f, got)
		}
	}
	check := func(f float32) {
		t.Helper()
		if got, want := F32ToF16(f), ggmlFP16(f); got != want {
			t.Fatalf("F32ToF16(%g = %#08x) = %#04x, ggml gives %#04x", f, math.Float32bits(f), got, want)
		}
	}
	// Every midpoint between neighbouring f16 values (the ties), and its neighbours.
	for h := uint16(0); h < 0x7c00; h++ {
		a, b := float64(F16ToF32(h)), float64(F16ToF32(h+1))
		mid := float32((a + b) / 2)
		for _, s := range []float32{1, -1} {
			m := mid * s
			check(m)
			check(math.Nextafter32(m, 0))
			check(math.Nextafter32(m, float32(math.Inf(1))*s))
		}
	}
	for _, f := range []float32{0, float32(math.Copysign(0, -1)), 65504, 65519.99, 65520, 1e10, -1e10, float32(math.Inf(1)), float32(math.Inf(-1)), 1e-8, 2.98e-8, 2.99e-8, -5.96e-8, math.SmallestNonzeroFloat32, float32(math.NaN())} {
		check(f)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		check(math.Float32frombits(rng.Uint32()))
	}
}

func TestBF16(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := BF16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			if !math.IsNaN(float64(BF16ToF32(F32ToBF16(f)))) {
				t.Fatalf("NaN %#04x lost", h)
			}
			continue
		}
		if got := F32ToBF16(f); got != uint16(h) {
			t.Fatalf("%#04x → %v → %#04x", h, f, got)
		}
	}
	// Nearest, ties to even, judged in float64 (an infinity counts as 2^128).
	val := func(h uint16) float64 {
		f := float64(BF16ToF32(h))
		if math.IsInf(f, 0) {
			return math.Copysign(math.Ldexp(1, 128), f)
		}
		return f
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1 << 20 {
		f := math.Float32frombits(rng.Uint32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		lo := uint16(math.Float32bits(f) >> 16)
		want := lo
		dl, dh := math.Abs(float64(f)-val(lo)), math.Abs(float64(f)-val(lo+1))
		if dh < dl || (dh == dl && lo&1 == 1) {
			want = lo + 1
		}
		if got := F32ToBF16(f); got != want {
			t.Fatalf("F32ToBF16(%#08x) = %#04x, want %#04x", math.Float32bits(f), got, want)
		}
	}
}

func TestQuantizeMatchesGGML(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for name, x := range testVectors(rng) {
		q8 := make([]byte, RowBytes(Q8_0, len(x)))
		QuantizeRowQ8_0(x, q8)
		if want := ggmlQ8_0(x); string(q8) != string(want) {
			t.Errorf("%s: q8_0 differs from ggml's reference at byte %d", name, firstDiff(q8, want))
		}
		q4 := make([]byte, RowBytes(Q4_0, len(x)))
		QuantizeRowQ4_0(x, q4)
		if want := ggmlQ4_0(x); string(q4) != string(want) {
			t.Errorf("%s: q4_0 differs from ggml's reference at byte %d", name, firstDiff(q4, want))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// TestQuantizeError checks the round-trip error of every element against its block's
// bound: q8_0 |Δ| ≤ d/2 + 127·|d − d16|, q4_0 |Δ| ≤ |d| + 8·|d − d16| (|d| on the clamped
// side, where x·id = 8 becomes 7), f16 and bf16 half a unit in the last place.
func TestQuantizeError(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for name, x := range testVectors(rng) {
		for _, dt := range []DType{F16, BF16, Q8_0, Q4_0} {
			b, err := Quantize(dt, x, 64)
			if err != nil {
				t.Fatal(err)
			}
			y, err := Dequantize(dt, b, 64)
			if err != nil {
				t.Fatal(err)
			}
			for blk := 0; blk < len(x)/32; blk++ {
				var amax, m float32
				for _, v := range x[blk*32 : blk*32+32] {
					if abs32(v) > amax {
						amax, m = abs32(v), v
					}
				}
				var bound float64
				switch dt {
				case Q8_0:
					d := float64(amax / 127)
					d16 := float64(F16ToF32(F32ToF16(float32(d))))
					bound = d/2 + 127*math.Abs(d-d16)
				case Q4_0:
					d := float64(m / -8)
					d16 := float64(F16ToF32(F32ToF16(float32(d))))
					bound = math.Abs(d) + 8*math.Abs(d-d16)
				}
				for j := blk * 32; j < blk*32+32; j++ {
					e := math.Abs(float64(x[j]) - float64(y[j]))
					lim := bound*(1+1e-6) + 1e-30
					switch dt {
					case F16:
						if abs32(x[j]) >= 65520 {
							if !math.IsInf(float64(y[j]), 0) {
								t.Fatalf("%s f16: %g became %g, want an infinity", name, x[j], y[j])
							}
							continue
						}
						lim = math.Max(math.Abs(float64(x[j]))*math.Ldexp(1, -11), math.Ldexp(1, -25))
					case BF16:
						lim = math.Max(math.Abs(float64(x[j]))*math.Ldexp(1, -8), math.Ldexp(1, -134))
					}
					if e > lim {
						t.Fatalf("%s %s: element %d: %g became %g (error %g > %g)", name, dt, j, x[j], y[j], e, lim)
					}
				}
			}
		}
	}
}
