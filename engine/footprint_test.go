package engine_test

import (
	"strings"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/engine"
)

// TestFootprintInt8 checks a model's multiply-adds per token (Footprint) and over a
// prompt (PromptMACs), and their integer part, against its file:
// the matrices stored as q8_0, q4_0 or a k-quant, here mixed with f32 ones and a q6_k
// classifier, and none of them with f32 activations.
func TestFootprintInt8(t *testing.T) {
	kcfg := preset(t, "tiny")
	kcfg.Dim, kcfg.NLayers, kcfg.NHeads, kcfg.NKVHeads, kcfg.HeadDim = 256, 2, 4, 2, 64
	kcfg.RopeDim, kcfg.FFNDim, kcfg.VocabSize, kcfg.AttnWindows = 64, 512, 260, []int{0, 0}
	types := map[string]dtype.DType{"attn_q": dtype.F32, "attn_k": dtype.Q8_0, "attn_v": dtype.F16,
		"attn_output": dtype.Q4_K, "ffn_gate": dtype.Q4_0, "ffn_up": dtype.F32, "ffn_down": dtype.Q6_K}
	ck := kquantModel(t, kcfg, func(name string) dtype.DType {
		for k, dt := range types {
			if strings.Contains(name, k) {
				return dt
			}
		}
		return dtype.Q6_K // token_embd, the tied classifier
	})
	for _, f32Act := range []bool{false, true} {
		m := writeAndLoad(t, ck, engine.Options{Threads: 1, F32Activations: f32Act})
		// layer, int8: every layer's; tail, tail8: the last layer's output projection
		// and feed-forward products, which a prompt runs on its last token alone.
		var layer, int8, tail, tail8 int64
		for _, tt := range m.File().Tensors {
			if len(tt.Shape) == 2 && strings.HasPrefix(tt.Name, "blk.") {
				n := int64(tt.Shape[0]) * int64(tt.Shape[1])
				q := tt.DType == dtype.Q8_0 || tt.DType == dtype.Q4_0 || tt.DType.KQuant()
				layer += n
				if q {
					int8 += n
				}
				if strings.HasPrefix(tt.Name, "blk.1.attn_output") || strings.HasPrefix(tt.Name, "blk.1.ffn_") {
					tail += n
					if q {
						tail8 += n
					}
				}
			}
		}
		if tail == 0 || tail8 == 0 || tail8 == tail {
			t.Fatalf("the last layer's tail: %d multiply-adds, %d of them int8", tail, tail8)
		}
		fp := m.Footprint()
		wantCls := fp.ClassifierMACs
		if f32Act {
			int8, wantCls = 0, 0
		}
		if fp.LayerMACs != layer || fp.Int8LayerMACs != int8 || fp.Int8ClassifierMACs != wantCls ||
			fp.ClassifierMACs != int64(kcfg.VocabSize*kcfg.Dim) || (!f32Act && (int8 == 0 || int8 == layer)) {
			t.Errorf("f32 activations %v: Footprint %+v, want %d layer MACs, %d of them int8, classifier int8 %d",
				f32Act, fp, layer, int8, wantCls)
		}
		if f32Act {
			tail8 = 0
		}
		for _, T := range []int64{1, 2, 17} {
			macs, i8 := m.PromptMACs(int(T))
			wantMACs := T*(layer-tail) + tail + fp.ClassifierMACs
			wantI8 := T*(int8-tail8) + tail8 + wantCls
			if macs != wantMACs || i8 != wantI8 {
				t.Errorf("f32 activations %v: PromptMACs(%d) = %d, %d int8; want %d, %d int8", f32Act, T, macs, i8, wantMACs, wantI8)
			}
		}
		if macs, i8 := m.PromptMACs(0); macs != 0 || i8 != 0 {
			t.Errorf("PromptMACs(0) = %d, %d", macs, i8)
		}
	}
}
