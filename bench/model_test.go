package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/engine"
)

// benchDir caches synthesized models across benchmark runs.
func benchDir(b *testing.B) string {
	dir := filepath.Join(os.TempDir(), "lmrun-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkDecode measures single-token decode steps after a 16-token prompt; the
// tok/s metric is what `lmrun run` reports for generation.
func BenchmarkDecode(b *testing.B) {
	for _, preset := range []string{"stories15m", "gpt2-124m"} {
		for _, be := range backends.List() {
			if !be.Available() {
				continue
			}
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/t%d", preset, be.Name, threads), func(b *testing.B) {
					path, err := SynthModel(benchDir(b), preset, 1)
					if err != nil {
						b.Fatal(err)
					}
					m, err := engine.Load(path, engine.Options{Backend: be.Name, Threads: threads})
					if err != nil {
						b.Fatal(err)
					}
					defer m.Close()
					s := m.NewSession(engine.SessionOptions{Context: 256})
					prompt := make([]int, 16)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if s.Pos() >= s.Context()-1 {
							b.StopTimer()
							s.Reset()
							b.StartTimer()
						}
						if s.Pos() == 0 {
							b.StopTimer()
							if _, err := s.Forward(prompt); err != nil {
								b.Fatal(err)
							}
							b.StartTimer()
						}
						if _, err := s.Forward([]int{i % 256}); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
				})
			}
		}
	}
}

// BenchmarkPrefill measures a 128-token prompt in one batched pass.
func BenchmarkPrefill(b *testing.B) {
	for _, preset := range []string{"stories15m", "gpt2-124m"} {
		be := backends.Best()
		b.Run(fmt.Sprintf("%s/%s", preset, be.Name), func(b *testing.B) {
			path, err := SynthModel(benchDir(b), preset, 1)
			if err != nil {
				b.Fatal(err)
			}
			m, err := engine.Load(path, engine.Options{Backend: be.Name})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			s := m.NewSession(engine.SessionOptions{Context: 256})
			prompt := make([]int, 128)
			for i := range prompt {
				prompt[i] = i
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.Reset()
				if _, err := s.Forward(prompt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(prompt))/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
