package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/format"
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
		q8 := make([]byte, RowBytes(format.Q8_0, len(x)))
		QuantizeRowQ8_0(x, q8)
		if want := ggmlQ8_0(x); string(q8) != string(want) {
			t.Errorf("%s: q8_0 differs from ggml's reference at byte %d", name, firstDiff(q8, want))
		}
		act := make([]byte, len(q8))
		QuantizeQ8(x, act)
		if string(act) != string(q8) {
			t.Errorf("%s: QuantizeQ8 differs from QuantizeRowQ8_0", name)
		}
		q4 := make([]byte, RowBytes(format.Q4_0, len(x)))
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
		for _, dt := range []format.DType{format.F16, format.BF16, format.Q8_0, format.Q4_0} {
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
				case format.Q8_0:
					d := float64(amax / 127)
					d16 := float64(F16ToF32(F32ToF16(float32(d))))
					bound = d/2 + 127*math.Abs(d-d16)
				case format.Q4_0:
					d := float64(m / -8)
					d16 := float64(F16ToF32(F32ToF16(float32(d))))
					bound = math.Abs(d) + 8*math.Abs(d-d16)
				}
				for j := blk * 32; j < blk*32+32; j++ {
					e := math.Abs(float64(x[j]) - float64(y[j]))
					lim := bound*(1+1e-6) + 1e-30
					switch dt {
					case format.F16:
						if abs32(x[j]) >= 65520 {
							if !math.IsInf(float64(y[j]), 0) {
								t.Fatalf("%s f16: %g became %g, want an infinity", name, x[j], y[j])
							}
							continue
						}
						lim = math.Max(math.Abs(float64(x[j]))*math.Ldexp(1, -11), math.Ldexp(1, -25))
					case format.BF16:
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

// randMat returns a rows×cols f32 matrix and the same matrix stored as dt.
func randMat(t *testing.T, rng *rand.Rand, dt format.DType, rows, cols int) (*Mat, *Mat) {
	t.Helper()
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	b, err := Quantize(dt, v, cols)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewMat(dt, b, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	deq, err := Dequantize(dt, b, cols)
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewMatF32(deq, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	return w, f
}

func TestMatMulDTypes(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var k Reference
	for _, dt := range []format.DType{format.F32, format.F16, format.BF16, format.Q8_0, format.Q4_0} {
		for _, cols := range []int{32, 96, 256} {
			if dt != format.Q8_0 && dt != format.Q4_0 {
				cols += 3 // exercise dot's tail where the dtype allows it
			}
			rows, T, ld := 13, 3, 17
			w, f := randMat(t, rng, dt, rows, cols)
			x := make([]float32, T*cols)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			bias := make([]float32, rows)
			for i := range bias {
				bias[i] = float32(i) - 6
			}
			got := make([]float32, T*ld)
			want := make([]float32, T*ld)
			k.MatMul(got, ld, x, T, w, bias, 2, 11, nil)
			k.MatMul(want, ld, x, T, f, bias, 2, 11, nil)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s cols %d: dst[%d] = %v, dequantized f32 matmul gives %v", dt, cols, i, got[i], want[i])
				}
			}
			row := make([]float32, cols)
			for r := 0; r < rows; r++ {
				w.RowF32(r, row)
				for i, v := range row {
					if v != f.F32[r*cols+i] {
						t.Fatalf("%s: RowF32(%d)[%d] = %v, want %v", dt, r, i, v, f.F32[r*cols+i])
					}
				}
			}
		}
	}
}

// TestMatMulQ8 checks the integer path against a direct transcription of ggml's block dot
// products (exact) and against the f32 product (within the bound MatMulQ8 documents).
func TestMatMulQ8(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var k Reference
	for _, dt := range []format.DType{format.Q8_0, format.Q4_0, format.F32, format.F16, format.BF16} {
		rows, cols, T, ld := 9, 256, 2, 9
		w, f := randMat(t, rng, dt, rows, cols)
		x := make([]float32, T*cols)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		xq := make([]byte, T*RowBytes(format.Q8_0, cols))
		QuantizeQ8(x, xq)
		got := make([]float32, T*ld)
		k.MatMulQ8(got, ld, xq, T, w, nil, 0, rows, nil)
		exact := make([]float32, T*ld)
		k.MatMul(exact, ld, x, T, f, nil, 0, rows, nil)
		for tt := 0; tt < T; tt++ {
			for r := 0; r < rows; r++ {
				xb := xq[tt*RowBytes(format.Q8_0, cols):]
				var ggml float32
				var bound float64
				for b := 0; b < cols/32; b++ {
					dx := F16ToF32(binary.LittleEndian.Uint16(xb[b*34:]))
					blkDot := float32(0)
					switch dt {
					case format.Q8_0:
						wb := w.Data[r*RowBytes(dt, cols)+b*34:]
						sumi := 0
						for j := 0; j < 32; j++ {
							sumi += int(int8(wb[2+j])) * int(int8(xb[b*34+2+j]))
						}
						blkDot = float32(sumi) * (F16ToF32(binary.LittleEndian.Uint16(wb)) * dx)
					case format.Q4_0:
						wb := w.Data[r*RowBytes(dt, cols)+b*18:]
						sumi0, sumi1 := 0, 0
						for j := 0; j < 16; j++ {
							v0 := int(wb[2+j]&0x0f) - 8
							v1 := int(wb[2+j]>>4) - 8
							sumi0 += v0 * int(int8(xb[b*34+2+j]))
							sumi1 += v1 * int(int8(xb[b*34+2+j+16]))
						}
						blkDot = float32(sumi0+sumi1) * (F16ToF32(binary.LittleEndian.Uint16(wb)) * dx)
					default:
						var s float32
						for j := 0; j < 32; j++ {
							// float32(·) rounds the product: without it the compiler
							// may fuse the multiply-add (arm64), as the reference does not.
							s += float32(f.F32[r*cols+b*32+j] * float32(int8(xb[b*34+2+j])))
						}
						blkDot = s * dx
					}
					ggml += float32(blkDot)
					var amax float32
					var wsum float64
					for j := 0; j < 32; j++ {
						amax = max(amax, abs32(x[tt*cols+b*32+j]))
						wsum += math.Abs(float64(f.F32[r*cols+b*32+j]))
					}
					bound += 0.57 * float64(amax/127) * wsum
				}
				g := got[tt*ld+r]
				if g != ggml {
					t.Errorf("%s: [%d,%d] = %v, ggml's formula gives %v", dt, tt, r, g, ggml)
				}
				if e := math.Abs(float64(g - exact[tt*ld+r])); e > bound+1e-4 {
					t.Errorf("%s: [%d,%d] = %v, f32 %v: error %g > bound %g", dt, tt, r, g, exact[tt*ld+r], e, bound)
				}
			}
		}
	}
}

func TestNewMat(t *testing.T) {
	if _, err := NewMat(format.Q8_0, make([]byte, 34), 1, 32); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		dt         format.DType
		n          int
		rows, cols int
	}{
		"short":     {format.Q8_0, 33, 1, 32},
		"not block": {format.Q4_0, 18, 1, 31},
		"bad dtype": {5, 4, 1, 1},
		"zero rows": {format.F16, 0, 0, 4},
	} {
		if _, err := NewMat(c.dt, make([]byte, c.n), c.rows, c.cols); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Quantize(format.Q4_0, make([]float32, 40), 40); err == nil {
		t.Error("Quantize q4_0 of rows of 40 accepted")
	}
	if _, err := Dequantize(format.Q8_0, make([]byte, 35), 32); err == nil {
		t.Error("Dequantize of a partial block accepted")
	}
}

// TestNewMatQ8Sym: NewMat marks a q8_0 matrix symmetric exactly when no quant is −128;
// a 0x80 byte in a block's f16 scale does not count.
func TestNewMatQ8Sym(t *testing.T) {
	x := make([]float32, 4*64)
	for i := range x {
		x[i] = float32(i%17) - 8
	}
	data, err := Quantize(format.Q8_0, x, 64)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMat(format.Q8_0, data, 4, 64)
	if err != nil || !m.Q8Sym {
		t.Fatalf("ggml-quantized matrix: Q8Sym = %v (%v)", m != nil && m.Q8Sym, err)
	}
	scaleLow := BlockQ8_0 * 5 // the low byte of block 5's scale
	data[scaleLow] = 0x80
	if m, _ := NewMat(format.Q8_0, data, 4, 64); !m.Q8Sym {
		t.Fatal("0x80 in a scale byte cleared Q8Sym")
	}
	for _, at := range []int{2, BlockQ8_0*3 + 17, len(data) - 1} {
		d := append([]byte(nil), data...)
		d[at] = 0x80
		if m, _ := NewMat(format.Q8_0, d, 4, 64); m.Q8Sym {
			t.Fatalf("quant −128 at byte %d: Q8Sym still set", at)
		}
	}
	if m, _ := NewMat(format.Q4_0, make([]byte, RowBytes(format.Q4_0, 64)), 1, 64); m.Q8Sym {
		t.Fatal("Q8Sym set on a q4_0 matrix")
	}
}

// TestNewMatF16Finite: NewMat marks an f16 matrix finite exactly when no value is an
// infinity or a NaN, wherever it sits (including past the last whole 64-bit word).
func TestNewMatF16Finite(t *testing.T) {
	const rows, cols = 3, 7 // 42 bytes: five words and a tail of one value
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = float32(i%9-4) * 1e4 // up to 40000: big, finite
	}
	x[5] = 6e-8 // subnormal
	data, err := Quantize(format.F16, x, cols)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := NewMat(format.F16, data, rows, cols); err != nil || !m.F16Finite {
		t.Fatalf("finite f16 matrix: F16Finite = %v (%v)", m != nil && m.F16Finite, err)
	}
	for _, bad := range []uint16{0x7c00, 0xfc00, 0x7e00, 0xffff, 0x7c01} {
		for _, at := range []int{0, 3, 4, 9, rows*cols - 1} {
			d := append([]byte(nil), data...)
			binary.LittleEndian.PutUint16(d[2*at:], bad)
			if m, _ := NewMat(format.F16, d, rows, cols); m.F16Finite {
				t.Fatalf("%#04x at value %d: F16Finite still set", bad, at)
			}
		}
	}
	if m, _ := NewMat(format.BF16, make([]byte, 2*cols), 1, cols); m.F16Finite {
		t.Fatal("F16Finite set on a bf16 matrix")
	}
}
