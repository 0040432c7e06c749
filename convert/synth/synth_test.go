package synth

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/engine"
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
			ck, err := Build(cfg, 1)
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
			if m.Config().Projected() != p.Config.Projected() || m.Config().PostNorm != p.Config.PostNorm {
				t.Fatalf("config did not survive the round trip: %+v", m.Config())
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
