package engine_test

import (
	"strings"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/engine"
)

// TestFootprintInt8 checks the integer part of a model's multiply-adds against its file:
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
		var layer, int8 int64
		for _, tt := range m.File().Tensors {
			if len(tt.Shape) == 2 && strings.HasPrefix(tt.Name, "blk.") {
				n := int64(tt.Shape[0]) * int64(tt.Shape[1])
				layer += n
				if tt.DType == dtype.Q8_0 || tt.DType == dtype.Q4_0 || tt.DType.KQuant() {
					int8 += n
				}
			}
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
	}
}
