package model

import (
	"reflect"
	"testing"
)

// FuzzParse parses metadata of fuzzed values (any key may be absent: a bit of absent
// each). Whatever Parse accepts must validate and survive Metadata and Parse again
// the same; nothing may panic, and nothing is allocated in proportion to a value.
func FuzzParse(f *testing.F) {
	f.Add(int64(32), int64(64), int64(2), int64(4), int64(0), int64(0), int64(96), int64(128), int64(0), int64(0), int64(0),
		0.0, 0.0, 0.0, "", "", "", "", true, []byte{}, uint32(0b111111000000000000000))
	f.Add(int64(50), int64(16), int64(2), int64(2), int64(2), int64(8), int64(64), int64(20), int64(2), int64(0), int64(8),
		1e-5, 0.0, 1.0, "layernorm", "learned", "relu", "post", false, []byte{0, 7}, uint32(0))
	f.Add(int64(1<<40), int64(-1), int64(1<<30), int64(0), int64(3), int64(1<<62), int64(-5), int64(1<<21), int64(-2), int64(7), int64(1<<17),
		-1.0, 0.5, 1e300, "batchnorm", "alibi", "tanh", "middle", true, make([]byte, 4096), uint32(0))
	f.Fuzz(func(t *testing.T, vocab, dim, layers, heads, kvHeads, headDim, ffn, ctx, posOffset, ropeDim, embDim int64,
		eps, theta, scale float64, norm, position, act, normPos string, finalNorm bool, windows []byte, absent uint32) {
		w := make([]int64, len(windows))
		for i, b := range windows {
			w[i] = int64(b) * int64(b) * int64(b) // up to ~16M: past the context limit too
		}
		m := meta{}
		for i, kv := range []struct {
			key string
			v   any
		}{
			{KeyVocabSize, vocab}, {KeyDim, dim}, {KeyNLayers, layers}, {KeyNHeads, heads}, {KeyNKVHeads, kvHeads},
			{KeyHeadDim, headDim}, {KeyFFNDim, ffn}, {KeyContextLength, ctx}, {KeyPositionOffset, posOffset},
			{KeyRopeDim, ropeDim}, {KeyEmbeddingDim, embDim}, {KeyNormEps, eps}, {KeyRopeTheta, theta},
			{KeyAttnScale, scale}, {KeyNorm, norm}, {KeyPosition, position}, {KeyActivation, act},
			{KeyNormPosition, normPos}, {KeyFinalNorm, finalNorm}, {KeyAttnWindows, w}, {KeyArch, "x"},
		} {
			if absent&(1<<i) == 0 {
				m[kv.key] = kv.v
			}
		}
		c, err := Parse(m)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate rejects: %v", err)
		}
		// The metadata is the canonical form: it leaves out what the model does not use
		// (a position offset with RoPE, RoPE's settings with learned positions), and it
		// reads back to a config that writes the same metadata.
		m1 := c.Metadata()
		again, err := Parse(meta(m1))
		if err != nil {
			t.Fatalf("the metadata of a parsed config does not parse: %v", err)
		}
		if m2 := again.Metadata(); !reflect.DeepEqual(m1, m2) {
			t.Fatalf("round trip changed the metadata:\n%v\n%v", m1, m2)
		}
	})
}

// FuzzParseRope fuzzes RoPE's style and frequency scaling over a valid model: whatever
// Parse accepts validates, picks factors of the right length for every context, and
// survives Metadata and Parse again the same.
func FuzzParseRope(f *testing.F) {
	f.Add("neox", []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{}, int64(0), 0.0, uint8(0))
	f.Add("", []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{9, 9, 9, 9, 9, 9, 9, 9}, int64(16), 1.19, uint8(0))
	f.Add("interleaved", []byte{0, 1}, []byte{255}, int64(-3), -1.0, uint8(0xff))
	f.Fuzz(func(t *testing.T, style string, short, long []byte, orig int64, attn float64, absent uint8) {
		floats := func(b []byte) []float32 {
			v := make([]float32, len(b))
			for i, x := range b {
				v[i] = float32(x) / 16
			}
			return v
		}
		m := required()
		for i, kv := range []struct {
			key string
			v   any
		}{
			{KeyRopeStyle, style}, {KeyRopeFreqFactors, floats(short)}, {KeyRopeLongFactors, floats(long)},
			{KeyRopeOrigContext, orig}, {KeyRopeAttnFactor, attn},
		} {
			if absent&(1<<i) == 0 {
				m[kv.key] = kv.v
			}
		}
		c, err := Parse(m)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate rejects: %v", err)
		}
		for _, ctx := range []int{1, c.RopeOrigContext, c.RopeOrigContext + 1, c.ContextLength} {
			if f := c.RopeFactors(ctx); f != nil && len(f) != c.RopeDim/2 {
				t.Fatalf("context %d: %d factors for rope_dim %d", ctx, len(f), c.RopeDim)
			}
		}
		m1 := c.Metadata()
		again, err := Parse(meta(m1))
		if err != nil {
			t.Fatalf("the metadata of a parsed config does not parse: %v", err)
		}
		if m2 := again.Metadata(); !reflect.DeepEqual(m1, m2) {
			t.Fatalf("round trip changed the metadata:\n%v\n%v", m1, m2)
		}
	})
}
