package engine_test

import (
	"os"
	"testing"

	"github.com/lmrun/lmrun/engine"
)

func BenchmarkZZPrefill(b *testing.B) {
	p := os.Getenv("ZZMODEL")
	if p == "" {
		b.Skip()
	}
	m, err := engine.Load(p, engine.Options{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	toks := make([]int, 128)
	for i := range toks {
		toks[i] = (i*7919 + 13) % 30000
	}
	s := m.NewSession(engine.SessionOptions{})
	for i := 0; i < b.N; i++ {
		s.Reset()
		if _, err := s.Forward(toks); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(128*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}
