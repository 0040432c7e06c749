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
	"github.com/lmrun/lmrun/format"
)

// batchCase runs n sequences with prompts of different lengths, chunked by chunk, then
// greedy decoding for gen tokens: each alone with Session.Forward, and all together
// through one Batch, joining at staggered steps (a newcomer's prompt chunks share steps
// with the others' decode tokens). It returns the first difference of the logits after
// each chunk that ends a prompt and each decoded token, bit for bit.
func batchCase(t *testing.T, m *engine.Model, half bool, n, chunk, gen int) string {
	t.Helper()
	vocab := m.Config().VocabSize
	prompts := make([][]int, n)
	for i := range prompts {
		prompts[i] = randomTokens(1+(i*7)%23, vocab, uint64(100+i))
	}
	// Alone.
	want := make([][][]float32, n)
	for i, p := range prompts {
		s := m.NewSession(engine.SessionOptions{Batch: chunk, HalfKV: half})
		for off := 0; off < len(p); off += chunk {
			if _, err := s.Forward(p[off:min(off+chunk, len(p))]); err != nil {
				t.Fatal(err)
			}
		}
		for k := 0; ; k++ {
			want[i] = append(want[i], append([]float32(nil), s.Logits()...))
			if k == gen {
				break
			}
			if _, err := s.Forward([]int{engine.Argmax(s.Logits())}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Batched.
	b, err := m.NewBatch(n*chunk, n)
	if err != nil {
		t.Fatal(err)
	}
	sess := make([]*engine.Session, n)
	fed := make([]int, n) // prompt tokens fed
	got := make([]int, n) // logits compared
	next := make([][]int, n)
	for i := range sess {
		sess[i] = m.NewSession(engine.SessionOptions{Batch: 1, HalfKV: half})
		next[i] = make([]int, 1)
	}
	var items []engine.BatchItem
	for step := 0; ; step++ {
		items = items[:0]
		for i, p := range prompts {
			switch {
			case step < i || got[i] > gen:
			case fed[i] < len(p):
				c := p[fed[i]:min(fed[i]+chunk, len(p))]
				fed[i] += len(c)
				items = append(items, engine.BatchItem{Session: sess[i], Tokens: c, Logits: fed[i] == len(p)})
			default:
				items = append(items, engine.BatchItem{Session: sess[i], Tokens: next[i], Logits: true})
			}
		}
		if len(items) == 0 {
			break
		}
		if err := b.Forward(items); err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if !it.Logits {
				continue
			}
			i := 0
			for sess[i] != it.Session {
				i++
			}
			l := it.Session.Logits()
			w := want[i][got[i]]
			for j := range w {
				if math.Float32bits(l[j]) != math.Float32bits(w[j]) {
					return fmt.Sprintf("sequence %d, logits %d (step %d, %d items): logit %d is %v batched, %v alone",
						i, got[i], step, len(items), j, l[j], w[j])
				}
			}
			got[i]++
			next[i][0] = engine.Argmax(l)
		}
	}
	for i := range got {
		if got[i] != gen+1 {
			t.Fatalf("sequence %d: %d logits compared, want %d", i, got[i], gen+1)
		}
	}
	return ""
}

// TestBatchMatchesAlone: a sequence decoded in a Batch with seven others — its prompt
// prefilled in chunks beside their decode steps — gets bit for bit the logits it gets
// alone, on every backend this CPU runs, for every weight dtype, with quantized and
// exact activations, an f32 and an f16 KV cache, a Llama (GQA, RoPE, SwiGLU) and a
// GPT-2-style stack with biases, learned positions, projected embeddings and a local
// layer whose ring wraps.
func TestBatchMatchesAlone(t *testing.T) {
	llama := preset(t, "tiny")
	llama.Dim, llama.NLayers, llama.NHeads, llama.NKVHeads, llama.HeadDim = 64, 2, 4, 2, 16
	llama.RopeDim, llama.FFNDim, llama.VocabSize, llama.AttnWindows = 16, 160, 260, []int{0, 0}
	gpt2 := preset(t, "tiny-gpt2")
	gpt2.Dim, gpt2.NHeads, gpt2.HeadDim, gpt2.FFNDim, gpt2.VocabSize = 32, 2, 16, 128, 260
	gpt2.NKVHeads, gpt2.AttnWindows, gpt2.EmbedDim = 2, []int{0, 8}, 64
	kq := preset(t, "tiny")
	kq.Dim, kq.NLayers, kq.NHeads, kq.NKVHeads, kq.HeadDim = 256, 1, 4, 2, 64
	kq.RopeDim, kq.FFNDim, kq.VocabSize, kq.AttnWindows = 64, 512, 260, []int{0}
	cks := map[string]*format.Checkpoint{}
	for name, cfg := range map[string]struct{}{"llama": {}, "gpt2": {}} {
		_ = cfg
		c := llama
		if name == "gpt2" {
			c = gpt2
		}
		ck, err := synth.Build(c, 7)
		if err != nil {
			t.Fatal(err)
		}
		cks[name] = ck
	}
	for _, b := range backends.List() {
		t.Run(b.Name, func(t *testing.T) {
			if !b.Available() {
				t.Skipf("this CPU cannot run %s: it lacks %s", b.Name, strings.Join(b.Missing(), ", "))
			}
			check := func(name string, ck *format.Checkpoint, f32Act, half bool) {
				m := writeAndLoad(t, ck, engine.Options{Backend: b.Name, Threads: 2, F32Activations: f32Act})
				if d := batchCase(t, m, half, 8, 4, 6); d != "" {
					t.Errorf("%s, f32 activations %v, f16 KV %v: %s", name, f32Act, half, d)
				}
			}
			for _, arch := range []string{"llama", "gpt2"} {
				for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0} {
					ck, err := convert.WithDType(cks[arch], dt)
					if err != nil {
						t.Fatal(err)
					}
					quant := dt == dtype.Q8_0 || dt == dtype.Q4_0
					check(fmt.Sprintf("%s %v", arch, dt), ck, quant, false)
					if quant || dt == dtype.F32 {
						check(fmt.Sprintf("%s %v", arch, dt), ck, false, dt == dtype.F32)
					}
				}
			}
			for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q6_K} {
				ck := kquantModel(t, kq, func(string) dtype.DType { return dt })
				check("llama "+dt.String(), ck, false, false)
				check("llama "+dt.String(), ck, true, false)
			}
		})
	}
}

// TestBatchErrors: a step that cannot run is refused whole, naming the item, and leaves
// every session where it was.
func TestBatchErrors(t *testing.T) {
	m := synthModel(t, preset(t, "tiny"), engine.Options{Threads: 1})
	other := synthModel(t, preset(t, "tiny"), engine.Options{Threads: 1})
	if _, err := m.NewBatch(0, 1); err == nil {
		t.Error("NewBatch(0, 1): no error")
	}
	if _, err := m.NewBatch(4, 5); err == nil {
		t.Error("NewBatch(4, 5): no error")
	}
	b, err := m.NewBatch(8, 2)
	if err != nil {
		t.Fatal(err)
	}
	s1 := m.NewSession(engine.SessionOptions{Context: 16})
	s2 := m.NewSession(engine.SessionOptions{})
	s3 := m.NewSession(engine.SessionOptions{})
	vocab := m.Config().VocabSize
	for _, c := range []struct {
		items []engine.BatchItem
		want  string
	}{
		{nil, "no items"},
		{[]engine.BatchItem{{Session: s1, Tokens: []int{1}}, {Session: s2, Tokens: []int{1}}, {Session: s3, Tokens: []int{1}}}, "3 sequences"},
		{[]engine.BatchItem{{Session: s1, Tokens: []int{1}}, {Session: s1, Tokens: []int{2}}}, "items 0 and 1 run the same session"},
		{[]engine.BatchItem{{Session: s1, Tokens: []int{1}}, {Session: other.NewSession(engine.SessionOptions{}), Tokens: []int{1}}}, "item 1: a session of another model"},
		{[]engine.BatchItem{{Session: s1, Tokens: nil}}, "item 0: no tokens"},
		{[]engine.BatchItem{{Session: s2, Tokens: []int{1}}, {Session: s1, Tokens: []int{vocab}}}, "item 1: token"},
		{[]engine.BatchItem{{Session: s1, Tokens: make([]int, 17)}}, "item 0: context full"},
		{[]engine.BatchItem{{Session: s1, Tokens: make([]int, 5)}, {Session: s2, Tokens: make([]int, 4)}}, "9 tokens, the batch takes 8"},
		{[]engine.BatchItem{{Tokens: []int{1}}}, "item 0 has no session"},
	} {
		err := b.Forward(c.items)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Forward(%d items): %v, want an error containing %q", len(c.items), err, c.want)
		}
	}
	if s1.Pos() != 0 || s2.Pos() != 0 {
		t.Errorf("refused steps moved the sessions to %d and %d", s1.Pos(), s2.Pos())
	}
}
