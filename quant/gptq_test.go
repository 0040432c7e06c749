package quant

import (
	"bytes"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/lmrun/lmrun/dtype"
)

// hessianError returns Σ_rows (w − q)ᵀ H (w − q) of the q4_0 bytes q.
func hessianError(t *testing.T, w []float32, q []byte, rows, cols int, h []float64) float64 {
	t.Helper()
	v, err := dtype.Dequantize(dtype.Q4_0, q, cols)
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	e := make([]float64, cols)
	for r := 0; r < rows; r++ {
		for j := range e {
			e[j] = float64(w[r*cols+j]) - float64(v[r*cols+j])
		}
		for i := range e {
			var s float64
			for j := range e {
				s += h[i*cols+j] * e[j]
			}
			total += e[i] * s
		}
	}
	return total
}

// lowRankHessian returns Σ_k x_k x_kᵀ over k random inputs plus a small diagonal, with
// correlated columns (a shared component), like the inputs of a real layer.
func lowRankHessian(rng *rand.Rand, n, k int) []float64 {
	h := make([]float64, n*n)
	x := make([]float64, n)
	scale := make([]float64, n)
	for i := range scale {
		scale[i] = 0.2 + 2*rng.Float64()
	}
	for range k {
		c := rng.NormFloat64()
		for i := range x {
			x[i] = scale[i] * (rng.NormFloat64() + c)
		}
		for i := range x {
			for j := range x {
				h[i*n+j] += x[i] * x[j]
			}
		}
	}
	for i := 0; i < n; i++ {
		h[i*n+i] += 0.01 * float64(k)
	}
	return h
}

func randomMatrix(rng *rand.Rand, rows, cols int) []float32 {
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.1)
	}
	return w
}

// TestGPTQBeatsSearch: on a random matrix and a correlated Hessian, GPTQ's output error
// Σ (w−q)ᵀH(w−q) is well below that of the per-block least-squares search.
func TestGPTQBeatsSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const rows, cols = 48, 128
	w := randomMatrix(rng, rows, cols)
	h := lowRankHessian(rng, cols, 40)
	g, err := QuantizeGPTQ(w, rows, cols, h)
	if err != nil {
		t.Fatal(err)
	}
	s, err := QuantizeSearch(dtype.Q4_0, w, cols)
	if err != nil {
		t.Fatal(err)
	}
	eg, es := hessianError(t, w, g, rows, cols, h), hessianError(t, w, s, rows, cols, h)
	t.Logf("output error: gptq %.4g, search %.4g (%.2f×)", eg, es, eg/es)
	if !(eg < 0.9*es) {
		t.Fatalf("gptq output error %.4g is not below search's %.4g", eg, es)
	}
}

// TestGPTQIdentity: with H = I nothing propagates and the bytes are QuantizeSearch's;
// so they are for a diagonal H with dead (zero) inputs.
func TestGPTQIdentity(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const rows, cols = 9, 96
	w := randomMatrix(rng, rows, cols)
	w[5] = 0
	want, err := QuantizeSearch(dtype.Q4_0, w, cols)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"identity", "diagonal with zeros"} {
		h := make([]float64, cols*cols)
		for i := 0; i < cols; i++ {
			h[i*cols+i] = 1
			if name != "identity" {
				h[i*cols+i] = float64(i % 3)
			}
		}
		got, err := QuantizeGPTQ(w, rows, cols, h)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: gptq bytes differ from QuantizeSearch's", name)
		}
	}
}

// TestGPTQFactor: U is upper triangular with UᵀU = (dampened H)⁻¹.
func TestGPTQFactor(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n = 40
	h := lowRankHessian(rng, n, 10)
	u, err := gptqFactor(h, n)
	if err != nil {
		t.Fatal(err)
	}
	var mean float64
	for i := 0; i < n; i++ {
		mean += h[i*n+i]
	}
	mean /= n
	hd := append([]float64(nil), h...)
	for i := 0; i < n; i++ {
		hd[i*n+i] += 0.01 * mean
	}
	// (UᵀU)·H_d = I.
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if j < i && u[i*n+j] != 0 {
				t.Fatalf("U[%d][%d] = %g below the diagonal", i, j, u[i*n+j])
			}
			var s float64
			for k := 0; k < n; k++ {
				var inv float64 // (UᵀU)_ik
				for m := 0; m <= min(i, k); m++ {
					inv += u[m*n+i] * u[m*n+k]
				}
				s += inv * hd[k*n+j]
			}
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(s-want) > 1e-8 {
				t.Fatalf("(UᵀU·H)[%d][%d] = %g, want %g", i, j, s, want)
			}
		}
	}
}

// TestGPTQDeterministic: the bytes do not depend on GOMAXPROCS.
func TestGPTQDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const rows, cols = 37, 64
	w := randomMatrix(rng, rows, cols)
	h := lowRankHessian(rng, cols, 20)
	a, err := QuantizeGPTQ(w, rows, cols, h)
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	b, err := QuantizeGPTQ(w, rows, cols, h)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("gptq bytes depend on GOMAXPROCS")
	}
}

func TestGPTQErrors(t *testing.T) {
	h := make([]float64, 32*32)
	for i := 0; i < 32; i++ {
		h[i*32+i] = 1
	}
	cases := []struct {
		name       string
		w          []float32
		rows, cols int
		h          []float64
	}{
		{"cols not a multiple of 32", make([]float32, 2*31), 2, 31, make([]float64, 31*31)},
		{"zero rows", nil, 0, 32, h},
		{"short weights", make([]float32, 63), 2, 32, h},
		{"short hessian", make([]float32, 64), 2, 32, h[:100]},
		{"negative diagonal", make([]float32, 64), 2, 32, append([]float64{-1}, h[1:]...)},
		{"NaN diagonal", make([]float32, 64), 2, 32, append([]float64{math.NaN()}, h[1:]...)},
	}
	for _, c := range cases {
		if _, err := QuantizeGPTQ(c.w, c.rows, c.cols, c.h); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}
