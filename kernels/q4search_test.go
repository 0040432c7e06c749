package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/format"
)

// TestQ4Search: the searched q4_0 decodes with the standard q4_0 decoder, is never worse
// than ggml's reference quantizer on a block (up to rounding), and is clearly better on
// average.
func TestQ4Search(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	const n = 32 * 512
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
		if i%97 == 0 {
			x[i] *= 6 // outliers, as real weights have
		}
	}
	for i := 0; i < 32; i++ {
		x[i] = 0 // an all-zero block
	}
	ref := make([]byte, n/32*BlockQ4_0)
	opt := make([]byte, n/32*BlockQ4_0)
	QuantizeRowQ4_0(x, ref)
	QuantizeRowQ4_0Search(x, opt)
	dr, do := make([]float32, n), make([]float32, n)
	DequantizeRow(format.Q4_0, ref, dr)
	DequantizeRow(format.Q4_0, opt, do)
	var er, eo float64
	for b := 0; b < n/32; b++ {
		var br, bo float64
		for j := b * 32; j < (b+1)*32; j++ {
			br += math.Pow(float64(x[j]-dr[j]), 2)
			bo += math.Pow(float64(x[j]-do[j]), 2)
		}
		if bo > br*1.001+1e-9 {
			t.Fatalf("block %d: searched error %g > reference %g", b, bo, br)
		}
		er, eo = er+br, eo+bo
	}
	if eo > 0.95*er {
		t.Fatalf("searched q4_0 error %g is not clearly below the reference's %g", eo, er)
	}
	t.Logf("squared error: reference %.4g, searched %.4g (%.0f%%)", er, eo, 100*eo/er)
	for _, v := range do[:32] {
		if v != 0 {
			t.Fatal("zero block not decoded as zeros")
		}
	}
	a, _ := QuantizeSearch(format.Q4_0, x, 64)
	b, _ := QuantizeSearch(format.Q4_0, x, 64)
	if string(a) != string(b) || string(a) != string(opt) {
		t.Fatal("not deterministic")
	}
	if _, err := QuantizeSearch(format.Q4_0, x[:33], 33); err == nil {
		t.Fatal("rows of 33 accepted")
	}
}
