package synth

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/model"
)

// TestPresetsLoad builds every preset's shape at a reduced depth and vocabulary (the full
// ones are hundreds of MB) and checks that the engine loads and runs it.
func TestPresetsLoad(t *testing.T) {
	for _, p := range Presets() {
		t.Run(p.Name, func(t *testing.T) {
			cfg := p.Config
			cfg.NLayers = min(cfg.NLayers, 2)
			cfg.AttnWindows = cfg.AttnWindows[:cfg.NLayers]
			cfg.VocabSize = 300
			cfg.ContextLength = min(cfg.ContextLength, 512)
			small := p
			small.Config = cfg
			ck, err := small.Build(1)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "m.lmc")
			if err := ck.WriteFile(path, nil); err != nil {
				t.Fatal(err)
			}
			m, err := engine.Load(path, engine.Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if got, want := m.Config().Metadata(), cfg.Metadata(); !reflect.DeepEqual(got, want) {
				t.Fatalf("config did not survive the round trip:\n%v\nwant\n%v", got, want)
			}
			if (m.File().Tensor("output.weight") != nil) != p.Untied || (m.File().Tensor("blk.0.attn_k.bias") != nil) != (p.QKVBias || cfg.Norm == model.LayerNorm) {
				t.Fatalf("untied %v, q/k/v biases %v: tensors %v", p.Untied, p.QKVBias, m.File().Tensors[:4])
			}
			ids, err := m.Tokenizer().Encode("hello", true, false)
			if err != nil {
				t.Fatal(err)
			}
			logits, err := m.NewSession(engine.SessionOptions{}).Forward(ids)
			if err != nil {
				t.Fatal(err)
			}
			if len(logits) != 300 || logits[0] != logits[0] {
				t.Fatalf("logits %v", logits[:4])
			}
			checkFootprint(t, m)
		})
	}
	if _, err := Lookup("nope"); err == nil {
		t.Fatal("unknown preset accepted")
	}
}

// checkFootprint recomputes engine.Footprint from the tensor table: the layers' matrices
// (and projections) are the multiply-adds, the classifier is output.weight or the tied
// token embedding, and a token reads everything but the embedding tables, of which it
// reads one row.
func checkFootprint(t *testing.T, m *engine.Model) {
	t.Helper()
	var want engine.Footprint
	f := m.File()
	want.StreamedBytes = f.DataSize()
	for _, tt := range f.Tensors {
		switch {
		case tt.Name == "position_embd.weight" || (tt.Name == "token_embd.weight" && f.Tensor("output.weight") != nil):
			want.StreamedBytes -= tt.Size - tt.Size/int64(tt.Shape[0])
		case len(tt.Shape) == 2 && (strings.HasPrefix(tt.Name, "blk.") || strings.HasPrefix(tt.Name, "proj_")):
			want.LayerMACs += int64(tt.Shape[0]) * int64(tt.Shape[1])
		}
	}
	cls := f.Tensor("output.weight")
	if cls == nil {
		cls = f.Tensor("token_embd.weight")
	}
	want.ClassifierMACs = int64(cls.Shape[0]) * int64(cls.Shape[1])
	if got := m.Footprint(); got != want || want.LayerMACs == 0 {
		t.Fatalf("Footprint %+v, want %+v", got, want)
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	p, _ := Lookup("tiny")
	a, _ := Build(p.Config, 3)
	b, _ := Build(p.Config, 3)
	c, _ := Build(p.Config, 4)
	da, _ := a.Tensors[1].Data()
	db, _ := b.Tensors[1].Data()
	dc, _ := c.Tensors[1].Data()
	if string(da) != string(db) || string(da) == string(dc) {
		t.Fatal("same seed must give the same weights, another seed others")
	}
}

// TestRealShapes pins the presets of today's models to their published configs.
func TestRealShapes(t *testing.T) {
	for name, want := range map[string]string{
		"llama3.2-1b":  "dim 2048 layers 16 heads 32/8 head 64 ffn 8192 vocab 128256 ctx 131072 theta 500000 eps 1e-05 interleaved",
		"qwen2.5-0.5b": "dim 896 layers 24 heads 14/2 head 64 ffn 4864 vocab 151936 ctx 32768 theta 1e+06 eps 1e-06 neox",
		"smollm2-135m": "dim 576 layers 30 heads 9/3 head 64 ffn 1536 vocab 49152 ctx 8192 theta 100000 eps 1e-05 interleaved",
		"smollm2-360m": "dim 960 layers 32 heads 15/5 head 64 ffn 2560 vocab 49152 ctx 8192 theta 100000 eps 1e-05 interleaved",
		"phi3-mini":    "dim 3072 layers 32 heads 32/32 head 96 ffn 8192 vocab 32064 ctx 4096 theta 10000 eps 1e-05 neox",
	} {
		p, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		c := p.Config
		if err := c.Resolve(); err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("dim %d layers %d heads %d/%d head %d ffn %d vocab %d ctx %d theta %g eps %g %s", c.Dim, c.NLayers,
			c.NHeads, c.NKVHeads, c.HeadDim, c.FFNDim, c.VocabSize, c.ContextLength, c.RopeTheta, c.NormEps, c.RopeStyle)
		if got != want {
			t.Errorf("%s: %s\nwant %s", name, got, want)
		}
	}
	p, _ := Lookup("llama3.2-1b")
	if f := p.Config.RopeFreqFactors; len(f) != 32 || f[0] != 1 || f[31] != 32 {
		t.Errorf("llama3.2-1b rope factors %v", f)
	}
	p, _ = Lookup("phi3-mini")
	if p.Config.AttnWindows[0] != 2047 || !p.Untied {
		t.Errorf("phi3-mini: windows %v, untied %v", p.Config.AttnWindows, p.Untied)
	}
}
