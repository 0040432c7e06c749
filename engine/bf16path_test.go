package engine

import (
	"math"
	"testing"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// TestBF16Activations measures, on every backend with a bf16-activation product
// (kernels.BF16Kernels; the engine takes it where FastBF16 says it is faster), the bf16 weights of a trained model (stories260K) with
// activations rounded to bfloat16 against exact f32 activations, over a 64-token text;
// and that a batched pass gives each row the bits it gets alone.
func TestBF16Activations(t *testing.T) {
	src, ids := stories260KWithStory(t)
	defer src.Close()
	path := quantizeCheckpoint(t, src, dtype.BF16)
	ran := false
	for _, b := range backends.List() {
		if !b.Available() {
			continue
		}
		bk, ok := b.New().(kernels.BF16Kernels)
		if !ok {
			continue
		}
		ran = true
		t.Run(b.Name, func(t *testing.T) {
			exact, err := Load(path, Options{Backend: b.Name, Threads: 2, F32Activations: true})
			if err != nil {
				t.Fatal(err)
			}
			defer exact.Close()
			fast, err := Load(path, Options{Backend: b.Name, Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer fast.Close()
			if (fast.bf16 != nil) != bk.FastBF16() || exact.bf16 != nil {
				t.Fatal("the bf16 path is not selected as configured")
			}
			// Where the backend finds it slower (FastBF16), the path is taken here all
			// the same: it is what the tests check.
			fast.bf16 = bk
			want, err := exact.NewSession(SessionOptions{}).ForwardAll(ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fast.NewSession(SessionOptions{}).ForwardAll(ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			var maxAbs, maxDiff float64
			agree := 0
			v := exact.Config().VocabSize
			for p := 0; p < len(ids); p++ {
				if Argmax(got[p*v:(p+1)*v]) == Argmax(want[p*v:(p+1)*v]) {
					agree++
				}
				for j := p * v; j < (p+1)*v; j++ {
					maxAbs = math.Max(maxAbs, math.Abs(float64(want[j])))
					maxDiff = math.Max(maxDiff, math.Abs(float64(want[j]-got[j])))
				}
			}
			t.Logf("bf16 activations move logits by max %.3g = %.2g of max|logit|; argmax agrees at %d/%d positions", maxDiff, maxDiff/maxAbs, agree, len(ids))
			// Stated tolerance, as for the q8 path: 3% of max|logit| and the same top token
			// at ≥ 95% of positions.
			if maxDiff > 0.03*maxAbs || agree < len(ids)*95/100 {
				t.Fatalf("bf16 path too far from exact activations")
			}
			// The last position decoded alone (T = 1) after the rest as a prompt: the
			// bits of the batched pass.
			s := fast.NewSession(SessionOptions{})
			if _, err := s.ForwardAll(ids[:len(ids)-1], nil); err != nil {
				t.Fatal(err)
			}
			last, err := s.ForwardAll(ids[len(ids)-1:], nil)
			if err != nil {
				t.Fatal(err)
			}
			for j, l := range last[:v] {
				if g := got[(len(ids)-1)*v+j]; math.Float32bits(l) != math.Float32bits(g) {
					t.Fatalf("logit %d of the last position: %v alone, %v in the batch", j, l, g)
				}
			}
		})
	}
	if !ran {
		t.Skip("no backend here has a bf16-activation product")
	}
}
