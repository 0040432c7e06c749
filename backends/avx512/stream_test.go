//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// raggedLengths cover the empty slice, the masked tail alone, a whole vector, the
// unrolled blocks and every tail in between.
var raggedLengths = []int{0, 1, 7, 15, 16, 17, 31, 33, 100, 1000, 4097}

// mixedSlice returns n floats at an offset of off floats into a larger slice, from
// several scales (so that exp meets both its clamps), with ±Inf, NaN and ±0 sprinkled in.
func mixedSlice(r *rand.Rand, n, off int) []float32 {
	buf := make([]float32, off+n+16)
	v := buf[off : off+n : off+n]
	for i := range v {
		s := []float64{0.1, 1, 10, 100}[r.IntN(4)]
		v[i] = float32(r.NormFloat64() * s)
		switch r.IntN(64) {
		case 0:
			v[i] = float32(math.Inf(1))
		case 1:
			v[i] = float32(math.Inf(-1))
		case 2:
			v[i] = float32(math.NaN())
		case 3:
			v[i] = float32(math.Copysign(0, -1))
		}
	}
	return v
}

// sameBits reports whether a and b are equal bit for bit (any NaN matching any NaN).
func sameBits(a, b float32) bool {
	if a != a && b != b {
		return true
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

// TestElementwiseEqualsAVX2 checks that the 16-lane elementwise kernels give avx2's bits
// (the same polynomial and instructions per element) on ragged lengths, at unaligned
// starts, and write nothing past the slices.
func TestElementwiseEqualsAVX2(t *testing.T) {
	need(t)
	var a5 Kernels
	var a2 avx2.Kernels
	r := rand.New(rand.NewPCG(5, 12))
	ops := map[string]func(k kernels.Kernels, x, y []float32){
		"Add":    func(k kernels.Kernels, x, y []float32) { k.Add(x, y) },
		"Scale":  func(k kernels.Kernels, x, _ []float32) { k.Scale(x, -1.7) },
		"SiLU":   func(k kernels.Kernels, x, _ []float32) { k.SiLU(x) },
		"SwiGLU": func(k kernels.Kernels, x, y []float32) { k.SwiGLU(x, y) },
		"GELU":   func(k kernels.Kernels, x, _ []float32) { k.GELU(x) },
		"ReLU":   func(k kernels.Kernels, x, _ []float32) { k.ReLU(x) },
	}
	for name, op := range ops {
		for _, n := range raggedLengths {
			for off := 0; off < 3; off++ {
				x, y := mixedSlice(r, n, off), mixedSlice(r, n, 2-off)
				x5, x2 := make([]float32, off+n+16)[off:], append([]float32(nil), x...)
				copy(x5, x)
				for i := n; i < n+16; i++ {
					x5[i] = -12345
				}
				op(a5, x5[:n:n], y)
				op(a2, x2, y)
				for i := 0; i < n; i++ {
					if !sameBits(x5[i], x2[i]) {
						t.Fatalf("%s n=%d off=%d: [%d] = %v (%#x), avx2 %v (%#x) from %v", name, n, off, i,
							x5[i], math.Float32bits(x5[i]), x2[i], math.Float32bits(x2[i]), x[i])
					}
				}
				for i := n; i < n+16; i++ {
					if x5[i] != -12345 {
						t.Fatalf("%s n=%d: wrote past the slice at %d", name, n, i)
					}
				}
			}
		}
	}
}

// TestRoPEEqualsAVX2 checks both rotations against avx2 bit for bit (RoPE: 8 pairs per
// ZMM against avx2's 4, the pairs left masked; RoPENeoX: the reference's operations, as
// avx2's kernel) for every count of pairs up to 32 (and some up to 128), so every tail.
func TestRoPEEqualsAVX2(t *testing.T) {
	need(t)
	var a5 Kernels
	var a2 avx2.Kernels
	r := rand.New(rand.NewPCG(6, 12))
	for _, heads := range []int{1, 3, 12} {
		for _, hd := range []int{2, 8, 10, 32, 64, 66, 80, 128, 256} {
			for half := 1; half <= hd/2; half++ {
				if hd > 80 && half%7 != 0 && half != hd/2 {
					continue
				}
				x := mixedSlice(r, heads*hd, half%5)
				cos, sin := randSlice(r, half), randSlice(r, half)
				for _, neox := range []bool{false, true} {
					x5, x2 := append([]float32(nil), x...), append([]float32(nil), x...)
					if neox {
						a5.RoPENeoX(x5, heads, hd, cos, sin)
						a2.RoPENeoX(x2, heads, hd, cos, sin)
					} else {
						a5.RoPE(x5, heads, hd, cos, sin)
						a2.RoPE(x2, heads, hd, cos, sin)
					}
					for i := range x5 {
						if !sameBits(x5[i], x2[i]) {
							t.Fatalf("neox=%v heads=%d hd=%d half=%d: [%d] = %v, avx2 %v", neox, heads, hd, half, i, x5[i], x2[i])
						}
					}
				}
			}
		}
	}
}

// TestReductionsRagged checks the 16-lane reductions against the reference within the
// contract's tolerances on the ragged lengths (the conformance suite covers more shapes
// and the special values).
func TestReductionsRagged(t *testing.T) {
	need(t)
	var a5 Kernels
	var ref kernels.Reference
	r := rand.New(rand.NewPCG(7, 12))
	for _, n := range raggedLengths {
		if n == 0 {
			continue
		}
		a, b := randSlice(r, n), randSlice(r, n)
		var abs float64
		for i := range a {
			abs += math.Abs(float64(a[i]) * float64(b[i]))
		}
		if got, want := a5.Dot(a, b), ref.Dot(a, b); math.Abs(float64(got-want)) > 1e-5*abs {
			t.Errorf("Dot n=%d: %v, reference %v", n, got, want)
		}
		s5, sr := append([]float32(nil), a...), append([]float32(nil), a...)
		a5.Softmax(s5)
		ref.Softmax(sr)
		for i := range sr {
			if math.Abs(float64(s5[i]-sr[i])) > 16.0/(1<<23)*float64(sr[i])+1e-6 {
				t.Fatalf("Softmax n=%d: [%d] = %v, reference %v", n, i, s5[i], sr[i])
			}
		}
		w, bias := randSlice(r, n), randSlice(r, n)
		for _, norm := range []string{"RMSNorm", "LayerNorm"} {
			d5, dr := make([]float32, n), make([]float32, n)
			if norm == "RMSNorm" {
				a5.RMSNorm(d5, a, w, 1e-5)
				ref.RMSNorm(dr, a, w, 1e-5)
			} else {
				a5.LayerNorm(d5, a, w, bias, 1e-5)
				ref.LayerNorm(dr, a, w, bias, 1e-5)
			}
			var m float64
			for _, v := range dr {
				m = max(m, math.Abs(float64(v)))
			}
			for i := range dr {
				if math.Abs(float64(d5[i]-dr[i])) > 4e-6*m {
					t.Fatalf("%s n=%d: [%d] = %v, reference %v", norm, n, i, d5[i], dr[i])
				}
			}
		}
	}
}

// TestQuantizeQ8EqualsReference: quantQ8's bytes are the reference's, with an infinity
// or a NaN in every lane of a block (which quantQ8 leaves to the reference), on blocks
// of every scale, after blocks it quantized itself.
func TestQuantizeQ8EqualsReference(t *testing.T) {
	need(t)
	var a5 Kernels
	r := rand.New(rand.NewPCG(8, 12))
	check := func(what string, x []float32) {
		t.Helper()
		n := dtype.RowBytes(dtype.Q8_0, len(x))
		got, want := make([]byte, n+8), make([]byte, n+8)
		kernels.QuantizeQ8(x, want[:n])
		a5.QuantizeQ8(x, got[:n])
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: byte %d (block %d) = %#02x, reference %#02x", what, i, i/dtype.BlockQ8_0, got[i], want[i])
			}
		}
	}
	for _, s := range []float64{1e-38, 1e-20, 1e-3, 1, 1e3, 1e20, 3e38} {
		x := make([]float32, 32*37)
		for i := range x {
			x[i] = float32(r.NormFloat64() * s)
		}
		check(fmt.Sprintf("scale %g", s), x)
		if s > 1e-38 && s < 1e30 { // else 1/d overflows, or x does
			if got := quantQ8(&make([]byte, 37*dtype.BlockQ8_0)[0], &x[0], 37); got != 37 {
				t.Errorf("scale %g: quantQ8 quantized %d of 37 blocks itself", s, got)
			}
		}
	}
	for lane := 0; lane < 32; lane++ {
		for _, sp := range []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())} {
			x := randSlice(r, 96)
			x[32+lane] = sp
			check(fmt.Sprintf("%v in lane %d", sp, lane), x)
		}
	}
}

// TestQuantizeQ8KEqualsReference: quantQ8K's bytes are the reference's on super-blocks
// of every scale, which it quantizes all itself, and with an infinity or a NaN in every
// lane of a super-block (which it leaves to the reference).
func TestQuantizeQ8KEqualsReference(t *testing.T) {
	need(t)
	var a5 Kernels
	r := rand.New(rand.NewPCG(10, 12))
	check := func(what string, x []float32) {
		t.Helper()
		n := dtype.RowBytes(dtype.Q8_K, len(x))
		got, want := make([]byte, n+8), make([]byte, n+8)
		kernels.QuantizeQ8K(x, want[:n])
		a5.QuantizeQ8K(x, got[:n])
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: byte %d (super-block %d) = %#02x, reference %#02x", what, i, i/dtype.BlockQ8_K, got[i], want[i])
			}
		}
	}
	for _, s := range []float64{1e-38, 1e-20, 1e-3, 1, 1e3, 1e20, 3e38} {
		x := make([]float32, 256*9)
		for i := range x {
			x[i] = float32(r.NormFloat64() * s)
		}
		x[300] = float32(r.NormFloat64() * s * 40) // the max at some lane of the scan
		check(fmt.Sprintf("scale %g", s), x)
		if s > 1e-38 && s < 1e30 { // else 1/d overflows, or x does
			if got := quantQ8K(&make([]byte, 9*dtype.BlockQ8_K)[0], &x[0], 9); got != 9 {
				t.Errorf("scale %g: quantQ8K quantized %d of 9 super-blocks itself", s, got)
			}
		}
	}
	for lane := 0; lane < 256; lane += 7 {
		for _, sp := range []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())} {
			x := randSlice(r, 768)
			x[256+lane] = sp
			check(fmt.Sprintf("%v in lane %d", sp, lane), x)
		}
	}
}

// TestStreamKernelsAllocateNothing: every kernel outside the products runs without
// allocating.
func TestStreamKernelsAllocateNothing(t *testing.T) {
	need(t)
	var k Kernels
	r := rand.New(rand.NewPCG(9, 12))
	const n, hd, pos = 1000, 64, 77
	x, y, w, b := randSlice(r, n), randSlice(r, n), randSlice(r, n), randSlice(r, n)
	dst := make([]float32, n)
	cos, sin := randSlice(r, hd/2), randSlice(r, hd/2)
	q, kc, vc, out, sc := randSlice(r, hd), randSlice(r, pos*hd), randSlice(r, pos*hd), make([]float32, hd), make([]float32, pos)
	kh, vh := make([]uint16, pos*hd), make([]uint16, pos*hd)
	for i := range kh {
		kh[i], vh[i] = dtype.F32ToF16(kc[i]), dtype.F32ToF16(vc[i])
	}
	xq, xk := make([]byte, dtype.RowBytes(dtype.Q8_0, 992)), make([]byte, dtype.RowBytes(dtype.Q8_K, 768))
	kernels := map[string]func(){
		"Dot":          func() { k.Dot(x, y) },
		"Softmax":      func() { k.Softmax(dst) },
		"Attention":    func() { k.Attention(out, q, kc, vc, pos, hd, 0.125, sc) },
		"AttentionF16": func() { k.AttentionF16(out, q, kh, vh, pos, hd, 0.125, sc) },
		"RMSNorm":      func() { k.RMSNorm(dst, x, w, 1e-5) },
		"LayerNorm":    func() { k.LayerNorm(dst, x, w, b, 1e-5) },
		"GELU":         func() { k.GELU(dst) },
		"SiLU":         func() { k.SiLU(dst) },
		"SwiGLU":       func() { k.SwiGLU(dst, y) },
		"ReLU":         func() { k.ReLU(dst) },
		"RoPE":         func() { k.RoPE(dst[:8*hd], 8, hd, cos, sin) },
		"RoPENeoX":     func() { k.RoPENeoX(dst[:8*hd], 8, hd, cos, sin) },
		"Add":          func() { k.Add(dst, x) },
		"Scale":        func() { k.Scale(dst, 0.999) },
		"QuantizeQ8":   func() { k.QuantizeQ8(x[:992], xq) },
		"QuantizeQ8K":  func() { k.QuantizeQ8K(x[:768], xk) },
	}
	for name, f := range kernels {
		copy(dst, x)
		if a := testing.AllocsPerRun(5, f); a != 0 {
			t.Errorf("%s: %v allocations per call", name, a)
		}
	}
}

// TestStreamKernelsRequire: the kernels outside the products need nothing past the
// backend's requires (AVX-512 F, BW and VL, and avx2's AVX2, FMA3 and F16C) — avo lists
// each function's extensions in a "Requires:" line — so that no CPU the backend is
// selected on lacks an instruction they use (DQ's VANDPS on ZMM, say).
func TestStreamKernelsRequire(t *testing.T) {
	src, err := os.ReadFile("kernels_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"AVX": true, "AVX2": true, "FMA3": true, "F16C": true, "SSE": true, "SSE2": true,
		"SSE3": true, "SSE4.1": true, "CMOV": true, "AVX512F": true, "AVX512BW": true, "AVX512VL": true}
	stream := map[string]bool{}
	for _, f := range []string{"dot", "wsum", "wsumH", "sum", "sumsq", "sumsqdev", "maxNaN", "expSub", "add", "scale",
		"rmsOut", "lnOut", "lnOutBias", "relu", "gelu", "silu", "swiglu", "ropeNeoX", "rope", "quantQ8", "quantQ8K"} {
		stream[f] = true
	}
	re := regexp.MustCompile(`(?m)^// func (\w+)\(.*\n(?:// Requires: (.*)\n)?`)
	seen := 0
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		if !stream[m[1]] {
			continue
		}
		seen++
		for _, ext := range strings.Split(m[2], ", ") {
			if ext != "" && !allowed[ext] {
				t.Errorf("%s requires %s", m[1], ext)
			}
		}
	}
	if seen != len(stream) {
		t.Errorf("found %d of the %d kernels in kernels_amd64.s", seen, len(stream))
	}
}
