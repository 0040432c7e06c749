package backends_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/backends"
	_ "github.com/lmrun/lmrun/backends/all"
	"github.com/lmrun/lmrun/kernels"
)

// Tolerances are relative to the scale of the result: a kernel may reorder a sum of n
// float32 products, which moves it by a few ulps of the largest partial sum.
const (
	tolDot = 1e-5 // of Σ|a_i·b_i|
	tolEW  = 1e-6 // element-wise kernels, of max|x|
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

func randVec(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

// unaligned returns a copy of v starting one float past an aligned allocation.
func unaligned(v []float32) []float32 {
	buf := make([]float32, len(v)+1)
	copy(buf[1:], v)
	return buf[1:]
}

func absDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) * float64(b[i]))
	}
	return s
}

func TestDot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(1, 1))
		for n := 0; n <= 300; n++ {
			a, b := unaligned(randVec(r, n, 1)), randVec(r, n+3, 1) // b longer than a is allowed
			got, want := k.Dot(a, b), ref.Dot(a, b)
			if d := math.Abs(float64(got - want)); d > tolDot*(absDot(a, b)+1e-30) {
				t.Fatalf("n=%d: %v, reference %v", n, got, want)
			}
		}
	})
}

func TestMatMul(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(2, 2))
		for _, sh := range [][3]int{{1, 1, 1}, {1, 7, 13}, {3, 17, 33}, {5, 64, 64}, {2, 100, 257}, {9, 48, 768}} {
			T, rows, cols := sh[0], sh[1], sh[2]
			w, err := kernels.NewMatF32(randVec(r, rows*cols, 1), rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			x := unaligned(randVec(r, T*cols, 1))
			bias := randVec(r, rows, 1)
			ld := rows + 3
			for _, b := range [][]float32{nil, bias} {
				got, want := make([]float32, T*ld), make([]float32, T*ld)
				// Two row ranges, as the thread pool would split them.
				mid := rows / 3
				k.MatMul(got, ld, x, T, w, b, 0, mid)
				k.MatMul(got, ld, x, T, w, b, mid, rows)
				ref.MatMul(want, ld, x, T, w, b, 0, rows)
				for t0 := 0; t0 < T; t0++ {
					for o := 0; o < ld; o++ {
						i := t0*ld + o
						if o >= rows {
							if got[i] != 0 {
								t.Fatalf("%v: wrote past the rows at [%d,%d]", sh, t0, o)
							}
							continue
						}
						tol := tolDot * (absDot(x[t0*cols:(t0+1)*cols], w.Row(o)) + 1)
						if d := math.Abs(float64(got[i] - want[i])); d > tol {
							t.Fatalf("%v bias=%v: [%d,%d] = %v, reference %v", sh, b != nil, t0, o, got[i], want[i])
						}
					}
				}
			}
		}
	})
}

func TestAttention(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(3, 3))
		for _, hd := range []int{1, 8, 13, 64, 128} {
			for _, n := range []int{1, 2, 7, 33, 100} {
				stride := hd*3 + 1
				kc, vc := randVec(r, n*stride, 1), randVec(r, n*stride, 1)
				q := randVec(r, hd, 1)
				got, want := make([]float32, hd), make([]float32, hd)
				k.Attention(got, q, kc, vc, n, stride, 0.3, make([]float32, n))
				ref.Attention(want, q, kc, vc, n, stride, 0.3, make([]float32, n))
				for i := range want {
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-5 {
						t.Fatalf("hd=%d n=%d: out[%d] = %v, reference %v", hd, n, i, got[i], want[i])
					}
				}
			}
		}
	})
}

func TestElementwise(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(4, 4))
		check := func(name string, n int, got, want []float32) {
			t.Helper()
			var m float64
			for _, v := range want {
				m = math.Max(m, math.Abs(float64(v)))
			}
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > tolEW*(m+1) {
					t.Fatalf("%s n=%d: [%d] = %v, reference %v", name, n, i, got[i], want[i])
				}
			}
		}
		for n := 0; n <= 70; n++ {
			x, y := randVec(r, n, 3), randVec(r, n, 3)
			w, b := randVec(r, n, 1), randVec(r, n, 1)
			type op struct {
				name string
				f    func(k kernels.Kernels, dst []float32)
			}
			ops := []op{
				{"Add", func(k kernels.Kernels, d []float32) { copy(d, x); k.Add(d, y) }},
				{"Scale", func(k kernels.Kernels, d []float32) { copy(d, x); k.Scale(d, 0.7) }},
				{"Softmax", func(k kernels.Kernels, d []float32) { copy(d, x); k.Softmax(d) }},
				{"GELU", func(k kernels.Kernels, d []float32) { copy(d, x); k.GELU(d) }},
				{"GELUErf", func(k kernels.Kernels, d []float32) { copy(d, x); k.GELUErf(d) }},
				{"SiLU", func(k kernels.Kernels, d []float32) { copy(d, x); k.SiLU(d) }},
				{"ReLU", func(k kernels.Kernels, d []float32) { copy(d, x); k.ReLU(d) }},
				{"SwiGLU", func(k kernels.Kernels, d []float32) { copy(d, x); k.SwiGLU(d, y) }},
			}
			if n > 0 {
				ops = append(ops,
					op{"RMSNorm", func(k kernels.Kernels, d []float32) { k.RMSNorm(d, x, w, 1e-5) }},
					op{"LayerNorm", func(k kernels.Kernels, d []float32) { k.LayerNorm(d, x, w, b, 1e-5) }})
			}
			if n%2 == 0 && n > 0 {
				cos, sin := randVec(r, n/4, 1), randVec(r, n/4, 1)
				ops = append(ops, op{"RoPE", func(k kernels.Kernels, d []float32) { copy(d, x); k.RoPE(d, 2, n/2, cos, sin) }})
			}
			for _, o := range ops {
				got, want := unaligned(make([]float32, n)), make([]float32, n)
				o.f(k, got)
				o.f(ref, want)
				check(o.name, n, got, want)
			}
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
	x = []float32{1, float32(math.NaN()), 2}
	ref.Softmax(x)
	for _, v := range x {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("NaN input must give NaN everywhere, got %v", x)
		}
	}
	x = []float32{float32(math.Inf(1)), 0, float32(math.Inf(1))}
	ref.Softmax(x)
	if x[0] != 0.5 || x[1] != 0 || x[2] != 0.5 {
		t.Fatalf("+Inf inputs share the mass: %v", x)
	}
}

func TestSoftmaxEdges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		for _, in := range [][]float32{{1000, 999, -1000}, {1, float32(math.NaN()), 2}, {float32(math.Inf(1)), 0, float32(math.Inf(1))}, {-1e30, -1e30}} {
			got, want := append([]float32(nil), in...), append([]float32(nil), in...)
			k.Softmax(got)
			ref.Softmax(want)
			for i := range want {
				same := got[i] == want[i] || (math.IsNaN(float64(got[i])) && math.IsNaN(float64(want[i])))
				if !same && math.Abs(float64(got[i]-want[i])) > 1e-6 {
					t.Fatalf("softmax(%v) = %v, reference %v", in, got, want)
				}
			}
		}
	})
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
