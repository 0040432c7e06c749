package engine_test

import (
	"testing"

	"github.com/lmrun/lmrun/engine"
)

// BenchmarkBatchDecode times one batched decode step of 8 sequences, one token each —
// the step lmrun serve runs with 8 streams — on seeded random f32 models of real shapes,
// at the default thread count. An f32 step reads all the weights once (stories110m 438
// MB, smollm2-135m 538 MB), so ms/step against the machine's read bandwidth says how
// close it comes to the memory bound. For a profile:
//
//	go test -run XXX -bench BatchDecode/smollm2 -cpuprofile cpu.out ./engine/
func BenchmarkBatchDecode(b *testing.B) {
	if testing.Short() {
		b.Skip("writes models of 438 and 538 MB")
	}
	const seqs, ctx = 8, 64
	for _, name := range []string{"stories110m", "smollm2-135m"} {
		b.Run(name, func(b *testing.B) {
			cfg := preset(b, name)
			m := synthModel(b, cfg, engine.Options{})
			batch, err := m.NewBatch(seqs, seqs)
			if err != nil {
				b.Fatal(err)
			}
			sess := make([]*engine.Session, seqs)
			for i := range sess {
				sess[i] = m.NewSession(engine.SessionOptions{Context: ctx, Batch: 1})
			}
			ids := randomTokens(seqs*ctx, cfg.VocabSize, 3)
			items := make([]engine.BatchItem, seqs)
			step := func(k int) {
				if k%ctx == 0 {
					for _, s := range sess {
						s.Reset()
					}
				}
				for i, s := range sess {
					j := (k%ctx)*seqs + i
					items[i] = engine.BatchItem{Session: s, Tokens: ids[j : j+1], Logits: true}
				}
				if err := batch.Forward(items); err != nil {
					b.Fatal(err)
				}
			}
			step(0) // warm the page cache and the threads
			k := 1
			for b.Loop() {
				step(k)
				k++
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(sec*1e3, "ms/step")
			b.ReportMetric(seqs/sec, "tok/s")
		})
	}
}
