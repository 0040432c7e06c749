package engine_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/kernels"
	"github.com/lmrun/lmrun/model"
)

// firstDiff returns "" when a and b hold the same bits, else the first difference.
func firstDiff(a, b []float32) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d values against %d", len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return fmt.Sprintf("value %d is %v against %v", i, a[i], b[i])
		}
	}
	return ""
}

// TestRepackMatchesUnpacked: a q8_0 or q4_0 model loaded with Options.Repack gives bit
// for bit the logits it gives without — a prompt in one pass and in chunks, decoding
// token by token, and eight sequences decoded in a Batch — on every backend this CPU
// runs, with rows not a multiple of the GEMM's groups (vocab 260, FFN 160) and row
// ranges split between two threads. Backends with a Repacker report the bytes packed
// (of the q8_0 matrices: the amd64 backends decline q4_0).
func TestRepackMatchesUnpacked(t *testing.T) {
	llama := preset(t, "tiny")
	llama.Dim, llama.NLayers, llama.NHeads, llama.NKVHeads, llama.HeadDim = 64, 2, 4, 2, 16
	llama.RopeDim, llama.FFNDim, llama.VocabSize, llama.AttnWindows = 16, 160, 260, []int{0, 0}
	gpt2 := preset(t, "tiny-gpt2")
	gpt2.Dim, gpt2.NHeads, gpt2.HeadDim, gpt2.FFNDim, gpt2.VocabSize = 32, 2, 16, 128, 260
	gpt2.NKVHeads, gpt2.AttnWindows, gpt2.EmbedDim = 2, []int{0, 8}, 64
	for _, b := range backends.List() {
		t.Run(b.Name, func(t *testing.T) {
			if !b.Available() {
				t.Skipf("this CPU cannot run %s: it lacks %s", b.Name, strings.Join(b.Missing(), ", "))
			}
			_, packs := b.New().(kernels.Repacker)
			for name, c := range map[string]model.Config{"llama": llama, "gpt2": gpt2} {
				ck0, err := synth.Build(c, 7)
				if err != nil {
					t.Fatal(err)
				}
				for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
					ck, err := convert.WithDType(ck0, dt)
					if err != nil {
						t.Fatal(err)
					}
					what := fmt.Sprintf("%s %v", name, dt)
					plain := writeAndLoad(t, ck, engine.Options{Backend: b.Name, Threads: 2})
					packed := writeAndLoad(t, ck, engine.Options{Backend: b.Name, Threads: 2, Repack: true})
					// A q4_0 model keeps some matrices q8_0 (which the backends pack).
					got := packed.RepackedBytes()
					if !packs && got != 0 || packs && dt == dtype.Q8_0 && got == 0 || plain.RepackedBytes() != 0 {
						t.Fatalf("%s: %d bytes repacked (%d without Repack), backend repacks: %v", what, got, plain.RepackedBytes(), packs)
					}
					if f0, f1 := plain.Footprint(), packed.Footprint(); (got > 0) != (f1.StreamedBytes > f0.StreamedBytes) {
						t.Errorf("%s: a token streams %d bytes repacked, %d without", what, f1.StreamedBytes, f0.StreamedBytes)
					}
					vocab := plain.Config().VocabSize
					ids := randomTokens(40, vocab, 3)
					for _, chunk := range []int{40, 7} {
						var logits [2][]float32
						for i, m := range []*engine.Model{plain, packed} {
							s := m.NewSession(engine.SessionOptions{Batch: chunk})
							for off := 0; off < len(ids); off += chunk {
								l, err := s.ForwardAll(ids[off:min(off+chunk, len(ids))], nil)
								if err != nil {
									t.Fatal(err)
								}
								logits[i] = append(logits[i], l...)
							}
							// Decode: greedy, one token a pass.
							for k := 0; k < 8; k++ {
								if _, err := s.Forward([]int{engine.Argmax(s.Logits())}); err != nil {
									t.Fatal(err)
								}
								logits[i] = append(logits[i], s.Logits()...)
							}
						}
						if d := firstDiff(logits[1], logits[0]); d != "" {
							t.Errorf("%s, chunks of %d: repacked against unpacked: %s", what, chunk, d)
						}
					}
					if d := batchCase(t, packed, false, 8, 4, 6); d != "" {
						t.Errorf("%s repacked: %s", what, d)
					}
					plain.Close()
					packed.Close()
				}
			}
		})
	}
}
