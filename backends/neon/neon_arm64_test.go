//go:build arm64 && !purego

package neon

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/cpuid/v2"
	"golang.org/x/sys/cpu"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/kernels"
)

// These tests compare each NEON kernel with the reference on every length from 0 past a
// few vector widths, at every float offset from an aligned start, and check that nothing
// is written outside the destination. backends/conformance_test.go runs the same
// backend through the shared suite; this file adds the tails, offsets, guards and
// extreme values. Under qemu-user (make test-arm64) they run the real instructions.

var ref kernels.Reference

const guard = float32(-12345.678) // sentinel around every destination

func requireASIMD(tb testing.TB) {
	if !cpuid.CPU.Supports(cpuid.ASIMD) {
		tb.Skip("CPU lacks ASIMD")
	}
}

func randVec(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

// place copies v into a fresh buffer at float offset off, surrounded by guard values, and
// returns the buffer and the slice over v's copy.
func place(v []float32, off int) (buf, s []float32) {
	buf = make([]float32, off+len(v)+8)
	for i := range buf {
		buf[i] = guard
	}
	copy(buf[off:], v)
	return buf, buf[off : off+len(v) : off+len(v)]
}

func checkGuards(t *testing.T, what string, buf []float32, off, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < off || i >= off+n) && v != guard {
			t.Fatalf("%s: wrote outside the destination at %d (off %d, n %d)", what, i, off, n)
		}
	}
}

func maxAbs(v []float32) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

// same reports whether got matches want within tol·(max|want| + 1), NaN matching NaN.
func same(got, want []float32, tol float64) (int, bool) {
	lim := tol * (maxAbs(want) + 1)
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(w) || math.IsNaN(g) {
			if math.IsNaN(w) != math.IsNaN(g) {
				return i, false
			}
			continue
		}
		if math.IsInf(w, 0) || math.IsInf(g, 0) {
			if g != w {
				return i, false
			}
			continue
		}
		if math.Abs(g-w) > lim {
			return i, false
		}
	}
	return 0, true
}

func absDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) * float64(b[i]))
	}
	return s
}

// TestDetection keeps the other tests from skipping silently: on Linux, cpuid's ASIMD
// (from AT_HWCAP, and from ID_AA64PFR0_EL1 when HWCAP_CPUID allows reading it) must agree
// with golang.org/x/sys/cpu, which reads AT_HWCAP on its own; qemu-user reports both like
// a kernel does. ASIMD is mandatory in ARMv8-A, so "neon" must then be available.
func TestDetection(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("HWCAP cross-check is Linux-only")
	}
	if got, want := cpuid.CPU.Supports(cpuid.ASIMD), cpu.ARM64.HasASIMD; got != want {
		t.Fatalf("cpuid says ASIMD=%v, x/sys/cpu (AT_HWCAP) says %v", got, want)
	}
	if !cpu.ARM64.HasASIMD {
		t.Skip("this CPU reports no ASIMD")
	}
	b, ok := backends.Lookup("neon")
	if !ok || !b.Available() {
		t.Fatalf("neon backend registered %v, available %v (missing %v)", ok, b.Available(), b.Missing())
	}
	if best := backends.Best(); best.Priority < b.Priority {
		t.Errorf("Best() = %s, below neon", best.Name)
	}
}

func TestDot(t *testing.T) {
	requireASIMD(t)
	var k Kernels
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 140; n++ {
		for off := 0; off < 4; off++ {
			_, a := place(randVec(r, n, 1), off)
			_, b := place(randVec(r, n+off, 1), 3-off)
			got, want := k.Dot(a, b), ref.Dot(a, b)
			if d := math.Abs(float64(got - want)); d > 1e-5*(absDot(a, b)+1e-30) {
				t.Fatalf("n=%d off=%d: %v, reference %v", n, off, got, want)
			}
		}
	}
}

func TestMatMul(t *testing.T) {
	requireASIMD(t)
	var k Kernels
	r := rand.New(rand.NewPCG(3, 4))
	for _, cols := range []int{1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 31, 33, 64, 67} {
		for _, rows := range []int{1, 3, 4, 5, 8, 11, 16, 19} {
			for _, T := range []int{1, 2, 3, 4, 5, 7, 8, 9} {
				w, err := kernels.NewMatF32(randVec(r, rows*cols, 1), rows, cols)
				if err != nil {
					t.Fatal(err)
				}
				_, x := place(randVec(r, T*cols, 1), 1)
				bias := randVec(r, rows, 1)
				ld := rows + 2
				for _, b := range [][]float32{nil, bias} {
					for _, rng := range [][2]int{{0, rows}, {rows / 3, rows}, {1, rows}, {0, rows - 1}} {
						r0, r1 := rng[0], rng[1]
						if r0 >= r1 {
							continue
						}
						got := make([]float32, T*ld)
						for i := range got {
							got[i] = guard
						}
						want := append([]float32(nil), got...)
						k.MatMul(got, ld, x, T, w, b, r0, r1, nil)
						ref.MatMul(want, ld, x, T, w, b, r0, r1, nil)
						for t0 := 0; t0 < T; t0++ {
							for o := 0; o < ld; o++ {
								i := t0*ld + o
								if o < r0 || o >= r1 {
									if got[i] != guard {
										t.Fatalf("T=%d %dx%d [%d,%d): wrote dst[%d,%d]", T, rows, cols, r0, r1, t0, o)
									}
									continue
								}
								tol := 1e-5 * (absDot(x[t0*cols:(t0+1)*cols], w.Row(o)) + 1)
								if d := math.Abs(float64(got[i] - want[i])); d > tol {
									t.Fatalf("T=%d %dx%d [%d,%d) bias=%v: [%d,%d] = %v, reference %v",
										T, rows, cols, r0, r1, b != nil, t0, o, got[i], want[i])
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestMatMulSplitInvariance: an output must not depend on the row range it is computed
// in (the engine's thread count decides the ranges) nor on the batch size (decode and
// prefill): bit for bit.
func TestMatMulSplitInvariance(t *testing.T) {
	requireASIMD(t)
	var k Kernels
	r := rand.New(rand.NewPCG(11, 12))
	for _, cols := range []int{5, 8, 12, 19, 64} {
		for _, rows := range []int{1, 6, 13} {
			const T = 5
			w, err := kernels.NewMatF32(randVec(r, rows*cols, 1), rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			x, bias := randVec(r, T*cols, 1), randVec(r, rows, 1)
			whole := make([]float32, T*rows)
			k.MatMul(whole, rows, x, T, w, bias, 0, rows, nil)
			for a := 0; a <= rows; a++ {
				for b := a; b <= rows; b++ {
					got := make([]float32, T*rows)
					k.MatMul(got, rows, x, T, w, bias, 0, a, nil)
					k.MatMul(got, rows, x, T, w, bias, a, b, nil)
					k.MatMul(got, rows, x, T, w, bias, b, rows, nil)
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(whole[i]) {
							t.Fatalf("%dx%d split %d,%d: [%d] = %v, unsplit %v", rows, cols, a, b, i, got[i], whole[i])
						}
					}
				}
			}
			for t0 := 0; t0 < T; t0++ {
				one := make([]float32, rows)
				k.MatMul(one, rows, x[t0*cols:(t0+1)*cols], 1, w, bias, 0, rows, nil)
				for o := range one {
					if math.Float32bits(one[o]) != math.Float32bits(whole[t0*rows+o]) {
						t.Fatalf("%dx%d: token %d alone gives [%d] = %v, in a batch of %d %v", rows, cols, t0, o, one[o], T, whole[t0*rows+o])
					}
				}
			}
		}
	}
}

func TestAttention(t *testing.T) {
	requireASIMD(t)
	var k Kernels
	r := rand.New(rand.NewPCG(5, 6))
	for hd := 1; hd <= 40; hd++ {
		for _, n := range []int{1, 2, 3, 4, 5, 8, 9, 17} {
			for _, stride := range []int{hd, hd + 1, 2*hd + 3} {
				kc := randVec(r, (n-1)*stride+hd, 1)
				vc := randVec(r, (n-1)*stride+hd, 1)
				q := randVec(r, hd, 1)
				buf, got := place(make([]float32, hd), 1)
				want := make([]float32, hd)
				k.Attention(got, q, kc, vc, n, stride, 0.3, make([]float32, n))
				ref.Attention(want, q, kc, vc, n, stride, 0.3, make([]float32, n))
				checkGuards(t, "Attention", buf, 1, hd)
				if i, ok := same(got, want, 1e-5); !ok {
					t.Fatalf("hd=%d n=%d stride=%d: out[%d] = %v, reference %v", hd, n, stride, i, got[i], want[i])
				}
			}
		}
	}
}

// elementwise lists every in-place or dst-writing kernel as f(k, dst) over n elements.
type ewOp struct {
	name string
	tol  float64
	f    func(k kernels.Kernels, dst []float32)
}

func ewOps(r *rand.Rand, n int, x []float32) []ewOp {
	y := randVec(r, n, 3)
	w, b := randVec(r, n, 1), randVec(r, n, 1)
	ops := []ewOp{
		{"Add", 1e-6, func(k kernels.Kernels, d []float32) { copy(d, x); k.Add(d, y) }},
		{"Scale", 1e-6, func(k kernels.Kernels, d []float32) { copy(d, x); k.Scale(d, 0.7) }},
		{"Softmax", 1e-6, func(k kernels.Kernels, d []float32) { copy(d, x); k.Softmax(d) }},
		{"GELU", 1e-6, func(k kernels.Kernels, d []float32) { copy(d, x); k.GELU(d) }},
		{"SiLU", 1e-6, func(k kernels.Kernels, d []float32) { copy(d, x); k.SiLU(d) }},
		{"SwiGLU", 1e-6, func(k kernels.Kernels, d []float32) { copy(d, x); k.SwiGLU(d, y) }},
		{"RMSNorm", 1e-6, func(k kernels.Kernels, d []float32) { k.RMSNorm(d, x, w, 1e-5) }},
		{"RMSNorm in place", 1e-6, func(k kernels.Kernels, d []float32) { copy(d, x); k.RMSNorm(d, d, w, 1e-5) }},
		{"LayerNorm", 1e-6, func(k kernels.Kernels, d []float32) { k.LayerNorm(d, x, w, b, 1e-5) }},
		{"LayerNorm no bias", 1e-6, func(k kernels.Kernels, d []float32) { k.LayerNorm(d, x, w, nil, 1e-5) }},
	}
	if n%2 == 0 && n > 0 {
		// Two heads of width n/2, rotated fully and in part (rope_dim < head_dim).
		hdim := n / 2
		for _, half := range []int{hdim / 2, hdim / 4} {
			cos, sin := randVec(r, half, 1), randVec(r, half, 1)
			ops = append(ops, ewOp{fmt.Sprintf("RoPE/%d", half), 1e-6, func(k kernels.Kernels, d []float32) {
				copy(d, x)
				k.RoPE(d, 2, hdim, cos, sin)
			}})
		}
	}
	return ops
}

func TestElementwise(t *testing.T) {
	requireASIMD(t)
	var k Kernels
	r := rand.New(rand.NewPCG(7, 8))
	for n := 0; n <= 70; n++ {
		x := randVec(r, n, 3)
		for _, o := range ewOps(r, n, x) {
			if n == 0 && (o.name == "RMSNorm" || o.name == "LayerNorm") {
				continue
			}
			for off := 0; off < 4; off++ {
				buf, got := place(make([]float32, n), off)
				want := make([]float32, n)
				o.f(k, got)
				o.f(ref, want)
				checkGuards(t, o.name, buf, off, n)
				if i, ok := same(got, want, o.tol); !ok {
					t.Fatalf("%s n=%d off=%d: [%d] = %v, reference %v", o.name, n, off, i, got[i], want[i])
				}
			}
		}
	}
}

// TestExtremes feeds the exp-based kernels and the reductions values at and beyond the
// edges of float32: the vector exp clamps its argument, which must stay invisible.
func TestExtremes(t *testing.T) {
	requireASIMD(t)
	var k Kernels
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	vals := []float32{0, -0.0, 1e-30, -1e-30, 1, -1, 5, -5, 10, -10, 20, -20, 40, -40, 44, -44, 87, -87,
		88, -88, 89, -89, 100, -100, 1e4, -1e4, 1e30, -1e30, math.MaxFloat32, -math.MaxFloat32}
	for _, name := range []string{"GELU", "SiLU", "SwiGLU"} {
		got, want := append([]float32(nil), vals...), append([]float32(nil), vals...)
		up := make([]float32, len(vals))
		for i := range up {
			up[i] = 1.5
		}
		switch name {
		case "GELU":
			k.GELU(got)
			ref.GELU(want)
		case "SiLU":
			k.SiLU(got)
			ref.SiLU(want)
		case "SwiGLU":
			k.SwiGLU(got, up)
			ref.SwiGLU(want, up)
		}
		for i := range vals {
			g, w := float64(got[i]), float64(want[i])
			if math.Abs(g-w) > 1e-6*math.Max(1, math.Abs(w)) {
				t.Errorf("%s(%v) = %v, reference %v", name, vals[i], g, w)
			}
		}
	}
	for _, name := range []string{"GELU", "SiLU"} {
		x := []float32{1, nan, 2, 3, nan}
		if name == "GELU" {
			k.GELU(x)
		} else {
			k.SiLU(x)
		}
		if !math.IsNaN(float64(x[1])) || !math.IsNaN(float64(x[4])) || math.IsNaN(float64(x[0])) {
			t.Errorf("%s: NaN must stay NaN and stay put: %v", name, x)
		}
	}
	x := []float32{inf, inf, inf, inf, inf}
	k.SiLU(x)
	for _, v := range x {
		if !math.IsInf(float64(v), 1) {
			t.Errorf("SiLU(+Inf) = %v", v)
		}
	}

	// Softmax at every length around the vector width with the special values in every
	// position, against the reference.
	specials := [][]float32{{nan}, {inf}, {inf, inf}, {float32(math.Inf(-1))}, {1000, -1000}, {-1e30}, {88, -88}}
	r := rand.New(rand.NewPCG(9, 10))
	for n := 1; n <= 21; n++ {
		for _, sp := range specials {
			for pos := 0; pos+len(sp) <= n; pos++ {
				x := randVec(r, n, 3)
				copy(x[pos:], sp)
				got, want := append([]float32(nil), x...), append([]float32(nil), x...)
				k.Softmax(got)
				ref.Softmax(want)
				if i, ok := same(got, want, 1e-6); !ok {
					t.Fatalf("softmax(%v) [%d] = %v, reference %v", x, i, got, want)
				}
			}
		}
		allNegInf := make([]float32, n)
		for i := range allNegInf {
			allNegInf[i] = float32(math.Inf(-1))
		}
		k.Softmax(allNegInf)
		for _, v := range allNegInf {
			if !math.IsNaN(float64(v)) {
				t.Fatalf("softmax of all -Inf (n=%d) must be NaN as in the reference: %v", n, allNegInf)
			}
		}
	}

	// The exp itself, through softmax of two entries: p0 = 1/(1+e^d), p1 = e^d·p0.
	for d := -90.0; d <= 0; d += 0.37 {
		in := float32(d)
		x := []float32{0, in}
		k.Softmax(x)
		e := math.Exp(float64(in))
		p0, p1 := 1/(1+e), e/(1+e)
		if math.Abs(float64(x[0])-p0) > 2e-7 || math.Abs(float64(x[1])-p1) > 3e-7*p1+1e-38 {
			t.Fatalf("softmax(0, %v) = %v, want %v, %v", in, x, p0, p1)
		}
	}
}

// Benchmarks: the NEON kernels against the reference on the same machine. Under
// qemu-user the numbers measure the emulator, not a CPU; run on arm64 hardware.

func benchMatMul(b *testing.B, k kernels.Kernels, T, rows, cols int) {
	r := rand.New(rand.NewPCG(1, 1))
	w, err := kernels.NewMatF32(randVec(r, rows*cols, 1), rows, cols)
	if err != nil {
		b.Fatal(err)
	}
	x := randVec(r, T*cols, 1)
	dst := make([]float32, T*rows)
	b.SetBytes(int64(4 * rows * cols))
	b.ResetTimer()
	for b.Loop() {
		k.MatMul(dst, rows, x, T, w, nil, 0, rows, nil)
	}
}

func BenchmarkMatVec(b *testing.B) {
	requireASIMD(b)
	for _, sh := range [][2]int{{288, 288}, {768, 768}, {2048, 768}} {
		for _, k := range []kernels.Kernels{Kernels{}, ref} {
			b.Run(fmt.Sprintf("%dx%d/%s", sh[0], sh[1], k.Name()), func(b *testing.B) { benchMatMul(b, k, 1, sh[0], sh[1]) })
		}
	}
}

func BenchmarkMatMulT16(b *testing.B) {
	requireASIMD(b)
	for _, k := range []kernels.Kernels{Kernels{}, ref} {
		b.Run("768x768/"+k.Name(), func(b *testing.B) { benchMatMul(b, k, 16, 768, 768) })
	}
}

func BenchmarkDot(b *testing.B) {
	requireASIMD(b)
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{64, 768, 4096} {
		x, y := randVec(r, n, 1), randVec(r, n, 1)
		for _, k := range []kernels.Kernels{Kernels{}, ref} {
			b.Run(fmt.Sprintf("%d/%s", n, k.Name()), func(b *testing.B) {
				b.SetBytes(int64(8 * n))
				var s float32
				for b.Loop() {
					s += k.Dot(x, y)
				}
				_ = s
			})
		}
	}
}
