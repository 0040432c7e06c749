package bench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/model"
)

// TestWriteRandomQuantGGUF writes a random-weight Llama GGUF whose matrices are random
// quantized blocks — what a model benchmark of k-quant weights needs, since lmrun has no
// k-quant quantizer. It runs only when LMRUN_RANDOM_GGUF names the output file:
//
//	LMRUN_RANDOM_GGUF=m.gguf LMRUN_RANDOM_SHAPE=1b LMRUN_RANDOM_MIX=q4_k_m \
//	    go test ./bench -run TestWriteRandomQuantGGUF
//	lmrun convert m.gguf -o m.lmc && lmrun bench model -m m.lmc
//
// LMRUN_RANDOM_SHAPE is a synth preset (default stories110m) or "1b" (TinyLlama 1.1B's
// shape: dim 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632, vocab 32000).
// LMRUN_RANDOM_MIX is q4_k_m (as llama-quantize's Q4_K_M: Q6_K for token_embd and for
// attn_v and ffn_down of every other layer, Q4_K elsewhere), or one type for every
// matrix: q4_k, q5_k, q6_k, q8_0, q4_0. The blocks are random bytes with small f16
// scales, so the speed is real and the text is noise.
func TestWriteRandomQuantGGUF(t *testing.T) {
	out := os.Getenv("LMRUN_RANDOM_GGUF")
	if out == "" {
		t.Skip("LMRUN_RANDOM_GGUF is not set")
	}
	shape, mix := os.Getenv("LMRUN_RANDOM_SHAPE"), os.Getenv("LMRUN_RANDOM_MIX")
	if shape == "" {
		shape = "stories110m"
	}
	if mix == "" {
		mix = "q4_k_m"
	}
	var cfg model.Config
	if shape == "1b" {
		p, err := synth.Lookup("stories110m")
		if err != nil {
			t.Fatal(err)
		}
		cfg = p.Config
		cfg.Dim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.HeadDim = 2048, 22, 32, 4, 64
		cfg.RopeDim, cfg.FFNDim, cfg.VocabSize, cfg.ContextLength = 64, 5632, 32000, 2048
		cfg.AttnWindows = make([]int, cfg.NLayers)
	} else {
		p, err := synth.Lookup(shape)
		if err != nil {
			t.Fatal(err)
		}
		cfg = p.Config
	}
	ck, err := synth.Build(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	typeOf := func(name string) dtype.DType {
		if mix != "q4_k_m" {
			dt, err := dtype.Parse(mix)
			if err != nil {
				t.Fatal(err)
			}
			return dt
		}
		var layer int
		if _, err := fmt.Sscanf(name, "blk.%d.", &layer); err == nil &&
			(strings.Contains(name, "attn_v") || strings.Contains(name, "ffn_down")) && layer%2 == 0 {
			return dtype.Q6_K
		}
		if name == "token_embd.weight" || name == "output.weight" {
			return dtype.Q6_K
		}
		return dtype.Q4_K
	}
	r := rand.New(rand.NewPCG(7, 7))
	for i, s := range ck.Tensors {
		if len(s.Shape) != 2 || s.Name == "position_embd.weight" {
			continue
		}
		dt := typeOf(s.Name)
		n := s.Shape[0] * s.Shape[1]
		var b []byte
		switch {
		case dt.KQuant():
			b = RandomKQuant(r, dt, n)
		case dt == dtype.Q8_0 || dt == dtype.Q4_0:
			b = randomBlocks(r, dt, n)
		default:
			t.Fatalf("mix %s: %s is not a quantized type", mix, dt)
		}
		ck.Tensors[i] = format.Bytes(s.Name, dt, s.Shape, b)
	}
	if err := gguf.ExportFile(ck, out, nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %s, %s, %.1f MiB", out, shape, mix, float64(st.Size())/(1<<20))
}

// randomBlocks returns n elements of random q8_0 or q4_0 blocks with small f16 scales.
func randomBlocks(r *rand.Rand, dt dtype.DType, n int) []byte {
	_, bs := dt.Block()
	b := make([]byte, n/dtype.QBlock*bs)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	for o := 0; o < len(b); o += bs {
		binary.LittleEndian.PutUint16(b[o:], 8<<10|uint16(r.IntN(1024)))
	}
	return b
}
