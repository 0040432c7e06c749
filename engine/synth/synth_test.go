package synth

import (
	"path/filepath"
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
			if m.Config.Projected() != p.Config.Projected() || m.Config.PostNorm != p.Config.PostNorm {
				t.Fatalf("config did not survive the round trip: %+v", m.Config)
			}
			ids, err := m.Tokenizer.Encode("hello", true, false)
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
		})
	}
	if _, err := Lookup("nope"); err == nil {
		t.Fatal("unknown preset accepted")
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
