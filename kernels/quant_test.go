package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
)

// The reference implementations below are written from ggml's C code
// (ggml_compute_fp32_to_fp16's portable path, quantize_row_q8_0_ref,
// quantize_row_q4_0_ref, ggml_vec_dot_q8_0_q8_0, ggml_vec_dot_q4_0_q8_0) as directly as Go
// allows, independently of the implementations under test.

// randMat returns a rows×cols f32 matrix and the same matrix stored as dt.
func randMat(t *testing.T, rng *rand.Rand, dt dtype.DType, rows, cols int) (*Mat, *Mat) {
	t.Helper()
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	b, err := dtype.Quantize(dt, v, cols)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewMat(dt, b, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	deq, err := dtype.Dequantize(dt, b, cols)
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
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0} {
		for _, cols := range []int{32, 96, 256} {
			if dt != dtype.Q8_0 && dt != dtype.Q4_0 {
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
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0, dtype.F32, dtype.F16, dtype.BF16} {
		rows, cols, T, ld := 9, 256, 2, 9
		w, f := randMat(t, rng, dt, rows, cols)
		x := make([]float32, T*cols)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		xq := make([]byte, T*dtype.RowBytes(dtype.Q8_0, cols))
		QuantizeQ8(x, xq)
		got := make([]float32, T*ld)
		k.MatMulQ8(got, ld, xq, T, w, nil, 0, rows, nil)
		exact := make([]float32, T*ld)
		k.MatMul(exact, ld, x, T, f, nil, 0, rows, nil)
		for tt := 0; tt < T; tt++ {
			for r := 0; r < rows; r++ {
				xb := xq[tt*dtype.RowBytes(dtype.Q8_0, cols):]
				var ggml float32
				var bound float64
				for b := 0; b < cols/32; b++ {
					dx := dtype.F16ToF32(binary.LittleEndian.Uint16(xb[b*34:]))
					blkDot := float32(0)
					switch dt {
					case dtype.Q8_0:
						wb := w.Data[r*dtype.RowBytes(dt, cols)+b*34:]
						sumi := 0
						for j := 0; j < 32; j++ {
							sumi += int(int8(wb[2+j])) * int(int8(xb[b*34+2+j]))
						}
						blkDot = float32(sumi) * (dtype.F16ToF32(binary.LittleEndian.Uint16(wb)) * dx)
					case dtype.Q4_0:
						wb := w.Data[r*dtype.RowBytes(dt, cols)+b*18:]
						sumi0, sumi1 := 0, 0
						for j := 0; j < 16; j++ {
							v0 := int(wb[2+j]&0x0f) - 8
							v1 := int(wb[2+j]>>4) - 8
							sumi0 += v0 * int(int8(xb[b*34+2+j]))
							sumi1 += v1 * int(int8(xb[b*34+2+j+16]))
						}
						blkDot = float32(sumi0+sumi1) * (dtype.F16ToF32(binary.LittleEndian.Uint16(wb)) * dx)
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
						amax = max(amax, float32(math.Abs(float64(x[tt*cols+b*32+j]))))
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
	if _, err := NewMat(dtype.Q8_0, make([]byte, 34), 1, 32); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		dt         dtype.DType
		n          int
		rows, cols int
	}{
		"short":     {dtype.Q8_0, 33, 1, 32},
		"not block": {dtype.Q4_0, 18, 1, 31},
		"bad dtype": {5, 4, 1, 1},
		"zero rows": {dtype.F16, 0, 0, 4},
	} {
		if _, err := NewMat(c.dt, make([]byte, c.n), c.rows, c.cols); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := dtype.Quantize(dtype.Q4_0, make([]float32, 40), 40); err == nil {
		t.Error("Quantize q4_0 of rows of 40 accepted")
	}
	if _, err := dtype.Dequantize(dtype.Q8_0, make([]byte, 35), 32); err == nil {
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
	data, err := dtype.Quantize(dtype.Q8_0, x, 64)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMat(dtype.Q8_0, data, 4, 64)
	if err != nil || !m.Q8Sym() {
		t.Fatalf("ggml-quantized matrix: Q8Sym = %v (%v)", m != nil && m.Q8Sym(), err)
	}
	scaleLow := dtype.BlockQ8_0 * 5 // the low byte of block 5's scale
	data[scaleLow] = 0x80
	if m, _ := NewMat(dtype.Q8_0, data, 4, 64); !m.Q8Sym() {
		t.Fatal("0x80 in a scale byte cleared Q8Sym")
	}
	for _, at := range []int{2, dtype.BlockQ8_0*3 + 17, len(data) - 1} {
		d := append([]byte(nil), data...)
		d[at] = 0x80
		if m, _ := NewMat(dtype.Q8_0, d, 4, 64); m.Q8Sym() {
			t.Fatalf("quant −128 at byte %d: Q8Sym still set", at)
		}
	}
	if m, _ := NewMat(dtype.Q4_0, make([]byte, dtype.RowBytes(dtype.Q4_0, 64)), 1, 64); m.Q8Sym() {
		t.Fatal("Q8Sym set on a q4_0 matrix")
	}
}

// TestNewMatF16Finite: NewMat marks an f16 matrix finite exactly when no value is an
// infinity or a NaN, wherever it sits (including past the last whole 64-bit word).
func TestNewMatF16Finite(t *testing.T) {
	for _, sh := range [][2]int{{3, 7}, {5, 29}} {
		newMatF16Finite(t, sh[0], sh[1])
	}
}

// newMatF16Finite is TestNewMatF16Finite on a rows × cols matrix: 3 × 7 is 42 bytes (five
// words and a tail of one value), 5 × 29 is 290 (nine blocks of four words, then a word
// and a value).
func newMatF16Finite(t *testing.T, rows, cols int) {
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = float32(i%9-4) * 1e4 // up to 40000: big, finite
	}
	x[5] = 6e-8 // subnormal
	data, err := dtype.Quantize(dtype.F16, x, cols)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := NewMat(dtype.F16, data, rows, cols); err != nil || !m.F16Finite() {
		t.Fatalf("finite f16 matrix: F16Finite = %v (%v)", m != nil && m.F16Finite(), err)
	}
	for _, bad := range []uint16{0x7c00, 0xfc00, 0x7e00, 0xffff, 0x7c01} {
		for _, at := range []int{0, 3, 4, 9, 15, 16, 17, 100, 140, 143, 144, rows*cols - 1} {
			if at >= rows*cols {
				continue
			}
			d := append([]byte(nil), data...)
			binary.LittleEndian.PutUint16(d[2*at:], bad)
			if m, _ := NewMat(dtype.F16, d, rows, cols); m.F16Finite() {
				t.Fatalf("%#04x at value %d: F16Finite still set", bad, at)
			}
		}
	}
	if m, _ := NewMat(dtype.BF16, make([]byte, 2*cols), 1, cols); m.F16Finite() {
		t.Fatal("F16Finite set on a bf16 matrix")
	}
}
