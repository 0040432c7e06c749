package bench

import (
	"testing"
)

func TestBenchModelSmall(t *testing.T) {
	path, err := SynthModel(t.TempDir(), "tiny", 1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := BenchModel(path, ModelConfig{Prompt: 16, Gen: 8, Depth: 4, Threads: []int{1, 2}, Reps: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("%d results, want pp and tg for 2 thread counts", len(res))
	}
	for _, r := range res {
		if r.TokPerSec <= 0 || r.Seconds <= 0 || r.Depth != 4 || (r.Test != "pp16" && r.Test != "tg8") {
			t.Fatalf("bad result %+v", r)
		}
	}
	if _, err := BenchModel(path, ModelConfig{Prompt: 200, Depth: 100}); err == nil {
		t.Fatal("a test past the context was accepted")
	}
}
