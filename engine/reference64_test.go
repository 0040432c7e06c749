package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
)

// ref64 is an independent float64 implementation of the forward pass, written from the
// model definitions rather than from the engine: no KV cache, full causal attention over
// the whole sequence, every sum in float64. It checks the engine on any model and any
// token sequence, beyond the fixed reference files. ctx is the context of the session
// compared with it, which picks LongRoPE's factors.
func ref64(t *testing.T, f *format.File, c model.Config, tokens []int, ctx int) [][]float64 {
	t.Helper()
	get := func(name string) []float64 {
		tt := f.Tensor(name)
		if tt == nil {
			return nil
		}
		v, err := dtype.Dequantize(tt.DType, tt.Data, tt.Shape[len(tt.Shape)-1])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	must := func(name string) []float64 {
		v := get(name)
		if v == nil {
			t.Fatalf("ref64: missing %s", name)
		}
		return v
	}
	// y[o] = Σ_i W[o][i] x[i] + b[o]
	linear := func(w, b, x []float64, out int) []float64 {
		in := len(x)
		y := make([]float64, out)
		for o := range y {
			var s float64
			for i := 0; i < in; i++ {
				s += w[o*in+i] * x[i]
			}
			if b != nil {
				s += b[o]
			}
			y[o] = s
		}
		return y
	}
	normf := func(x []float64, prefix string) []float64 {
		w, b := must(prefix+".weight"), get(prefix+".bias")
		n := float64(len(x))
		y := make([]float64, len(x))
		if c.Norm == model.RMSNorm {
			var ss float64
			for _, v := range x {
				ss += v * v
			}
			inv := 1 / math.Sqrt(ss/n+float64(c.NormEps))
			for i, v := range x {
				y[i] = v * inv * w[i]
			}
			return y
		}
		var mean, vr float64
		for _, v := range x {
			mean += v
		}
		mean /= n
		for _, v := range x {
			vr += (v - mean) * (v - mean)
		}
		inv := 1 / math.Sqrt(vr/n+float64(c.NormEps))
		for i, v := range x {
			y[i] = (v-mean)*inv*w[i] + func() float64 {
				if b == nil {
					return 0
				}
				return b[i]
			}()
		}
		return y
	}
	// RoPE as the model definitions state it: inv_freq_i = theta^(−2i/d) divided by the
	// scaling factor of pair i (Llama 3, linear, LongRoPE: the long factors once the
	// context exceeds the original one), cos and sin times the attention factor, and the
	// rotation either of adjacent pairs (Meta) or Hugging Face's
	// x·cos + rotate_half(x)·sin over the first d dimensions.
	factors := c.RopeFreqFactors
	if c.RopeLongFactors != nil && ctx > c.RopeOrigContext {
		factors = c.RopeLongFactors
	}
	mscale := c.RopeAttnFactor
	if mscale == 0 {
		mscale = 1
	}
	rope := func(x []float64, heads, pos int) {
		d := c.RopeDim
		cos, sin := make([]float64, d/2), make([]float64, d/2)
		for i := range cos {
			invFreq := 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(d))
			if factors != nil {
				invFreq /= float64(factors[i])
			}
			cos[i] = math.Cos(float64(pos)*invFreq) * mscale
			sin[i] = math.Sin(float64(pos)*invFreq) * mscale
		}
		for h := 0; h < heads; h++ {
			hx := x[h*c.HeadDim : h*c.HeadDim+d]
			if c.RopeStyle == model.NeoX {
				rot := make([]float64, d) // rotate_half: (−x2, x1)
				for i := 0; i < d/2; i++ {
					rot[i], rot[i+d/2] = -hx[i+d/2], hx[i]
				}
				for i := range hx {
					hx[i] = hx[i]*cos[i%(d/2)] + rot[i]*sin[i%(d/2)]
				}
				continue
			}
			for i := 0; i < d/2; i++ {
				a, b := hx[2*i], hx[2*i+1]
				hx[2*i] = a*cos[i] - b*sin[i]
				hx[2*i+1] = a*sin[i] + b*cos[i]
			}
		}
	}
	T, dim, ed := len(tokens), c.Dim, c.EmbeddingDim()
	emb := must("token_embd.weight")
	xs := make([][]float64, T)
	for p, id := range tokens {
		xs[p] = append([]float64(nil), emb[id*ed:(id+1)*ed]...)
		if c.Projected() {
			xs[p] = linear(must("proj_in.weight"), nil, xs[p], dim)
		}
		if c.Position == model.Learned {
			pe := must("position_embd.weight")
			for i := range xs[p] {
				xs[p][i] += pe[(p+c.PositionOffset)*dim+i]
			}
		}
	}
	group := c.NHeads / c.NKVHeads
	for l := 0; l < c.NLayers; l++ {
		pf := fmt.Sprintf("blk.%d.", l)
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for p := range xs {
			in := xs[p]
			if !c.PostNorm {
				in = normf(xs[p], pf+"attn_norm")
			}
			qs[p] = linear(must(pf+"attn_q.weight"), get(pf+"attn_q.bias"), in, c.QDim())
			ks[p] = linear(must(pf+"attn_k.weight"), get(pf+"attn_k.bias"), in, c.KVDim())
			vs[p] = linear(must(pf+"attn_v.weight"), get(pf+"attn_v.bias"), in, c.KVDim())
			if c.Position == model.RoPE {
				rope(qs[p], c.NHeads, p)
				rope(ks[p], c.NKVHeads, p)
			}
		}
		for p := range xs {
			att := make([]float64, c.QDim())
			for h := 0; h < c.NHeads; h++ {
				kh := h / group
				var sc []float64
				var js []int
				for j := 0; j <= p; j++ {
					if w := c.AttnWindows[l]; w > 0 && p-j >= w {
						continue
					}
					var s float64
					for i := 0; i < c.HeadDim; i++ {
						s += qs[p][h*c.HeadDim+i] * ks[j][kh*c.HeadDim+i]
					}
					sc = append(sc, s*float64(c.AttnScale))
					js = append(js, j)
				}
				mx := math.Inf(-1)
				for _, s := range sc {
					mx = math.Max(mx, s)
				}
				var sum float64
				for i := range sc {
					sc[i] = math.Exp(sc[i] - mx)
					sum += sc[i]
				}
				for n, j := range js {
					for i := 0; i < c.HeadDim; i++ {
						att[h*c.HeadDim+i] += sc[n] / sum * vs[j][kh*c.HeadDim+i]
					}
				}
			}
			o := linear(must(pf+"attn_output.weight"), get(pf+"attn_output.bias"), att, dim)
			for i := range o {
				xs[p][i] += o[i]
			}
			if c.PostNorm {
				xs[p] = normf(xs[p], pf+"attn_norm")
			}
		}
		for p := range xs {
			in := xs[p]
			if !c.PostNorm {
				in = normf(xs[p], pf+"ffn_norm")
			}
			h := linear(must(pf+"ffn_up.weight"), get(pf+"ffn_up.bias"), in, c.FFNDim)
			switch c.Activation {
			case model.SwiGLU:
				g := linear(must(pf+"ffn_gate.weight"), get(pf+"ffn_gate.bias"), in, c.FFNDim)
				for i := range h {
					h[i] *= g[i] / (1 + math.Exp(-g[i]))
				}
			case model.GELUTanh:
				for i, v := range h {
					h[i] = 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
				}
			case model.GELU:
				for i, v := range h {
					h[i] = 0.5 * v * (1 + math.Erf(v/math.Sqrt2))
				}
			case model.ReLU:
				for i, v := range h {
					h[i] = math.Max(v, 0)
				}
			}
			o := linear(must(pf+"ffn_down.weight"), get(pf+"ffn_down.bias"), h, dim)
			for i := range o {
				xs[p][i] += o[i]
			}
			if c.PostNorm {
				xs[p] = normf(xs[p], pf+"ffn_norm")
			}
		}
	}
	cls := get("output.weight")
	if cls == nil {
		cls = emb
	}
	out := make([][]float64, T)
	for p := range xs {
		x := xs[p]
		if !c.NoFinalNorm {
			x = normf(x, "output_norm")
		}
		if c.Projected() {
			x = linear(must("proj_out.weight"), nil, x, ed)
		}
		out[p] = linear(cls, nil, x, c.VocabSize)
	}
	return out
}

// checkAgainstRef64 runs n random tokens through m (prefill in batches of batch) and
// compares every position's logits with ref64: max|Δ| ≤ 2e-5·max|logit|.
func checkAgainstRef64(t *testing.T, m *Model, n int, r *rand.Rand, batch int) {
	t.Helper()
	ids := make([]int, n)
	for i := range ids {
		ids[i] = r.IntN(m.cfg.VocabSize)
	}
	s := m.NewSession(SessionOptions{Batch: batch})
	got, err := s.ForwardAll(ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	compareRef64(t, got, ref64(t, m.File(), m.cfg, ids, s.Context()), m.cfg.VocabSize)
}

// compareRef64 checks logits (one row of vocab per position) against ref64's:
// max|Δ| ≤ 2e-5·max|logit|.
func compareRef64(t *testing.T, got []float32, want [][]float64, vocab int) {
	t.Helper()
	var maxAbs, maxDiff float64
	for p := range want {
		for j, w := range want[p] {
			maxAbs = math.Max(maxAbs, math.Abs(w))
			maxDiff = math.Max(maxDiff, math.Abs(w-float64(got[p*vocab+j])))
		}
	}
	if maxDiff > 2e-5*maxAbs {
		t.Fatalf("max|Δ| = %.3g, %.3g of max|logit| %.3g (tolerance 2e-5)", maxDiff, maxDiff/maxAbs, maxAbs)
	}
	t.Logf("max|Δ|/max|logit| = %.2g", maxDiff/maxAbs)
}
