//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/lmrun/lmrun/kernels"
)

// BenchmarkDecodeDRAM measures the f32 products of a batched decode step (T = 1, 2, 4,
// 8 rows, one per sequence) at the shapes of a 768-wide model (the attention's 768×768,
// the feed-forward's 2048×768 and 768×2048, the classifier's 32000×768) with the
// weights streaming from DRAM: a rotating set of copies of each shape, ≥ 128 MiB in all
// (four times L3), one product per copy, on 1 and 2 threads (the rows split in two
// halves, as the engine splits them). "read" is the read-bandwidth probe on the same
// matrices and split (Dot over each half of each thread's rows): GB/s of the products
// against it says how close to the memory bound they run.
//
//	go test -run XXX -bench DecodeDRAM -count 5 ./backends/avx512
func BenchmarkDecodeDRAM(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(8, 8))
	var k Kernels
	for _, sh := range []struct{ N, K int }{{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}} {
		copies := max(1, (128<<20)/(4*sh.N*sh.K))
		ws := make([]*kernels.Mat, copies)
		for i := range ws {
			w, err := kernels.NewMatF32(randSlice(r, sh.N*sh.K), sh.N, sh.K)
			if err != nil {
				b.Fatal(err)
			}
			ws[i] = w
		}
		for _, threads := range []int{1, 2} {
			// Thread j takes rows [split[j], split[j+1]): halves rounded to 48 rows.
			split := []int{0, sh.N}
			if threads == 2 {
				split = []int{0, (sh.N/2 + 47) / 48 * 48, sh.N}
			}
			run := func(b *testing.B, f func(j int, w *kernels.Mat, r0, r1 int)) {
				for i := 0; i < b.N; i++ {
					w := ws[i%copies]
					if threads == 1 {
						f(0, w, 0, sh.N)
						continue
					}
					var wg sync.WaitGroup
					for j := 0; j < threads; j++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							f(j, w, split[j], split[j+1])
						}()
					}
					wg.Wait()
				}
				s := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(4*float64(sh.N*sh.K)/s/1e9, "GB/s")
			}
			b.Run(fmt.Sprintf("N%d_K%d/threads=%d/read", sh.N, sh.K, threads), func(b *testing.B) {
				var sink [2]float32
				run(b, func(j int, w *kernels.Mat, r0, r1 int) {
					v := w.F32[r0*sh.K : r1*sh.K]
					sink[j] += k.Dot(v[:len(v)/2], v[len(v)/2:])
				})
			})
			for _, T := range []int{1, 2, 4, 8} {
				x, dst := randSlice(r, T*sh.K), make([]float32, T*sh.N)
				sc := []kernels.Scratch{kernels.NewScratch(k, T, sh.K), kernels.NewScratch(k, T, sh.K)}
				b.Run(fmt.Sprintf("N%d_K%d/threads=%d/T%d", sh.N, sh.K, threads, T), func(b *testing.B) {
					run(b, func(j int, w *kernels.Mat, r0, r1 int) {
						k.MatMul(dst, sh.N, x, T, w, nil, r0, r1, sc[j])
					})
					s := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(2*float64(T*sh.N*sh.K)/s/1e9, "GFLOP/s")
				})
			}
		}
	}
}
