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

// BenchmarkAttentionDRAM measures one token's attention over a DRAM-resident KV cache
// (12 heads of 64, 100 or 1000 positions, rotating caches: ~64 MiB of keys and values) in the
// engine's layout ("head-major": each head's positions one contiguous run, stride 64) and
// in a position-major layout (each position's 768 elements together, so a head reads 64
// a 768 stride apart). MB/s counts the keys and values read.
//
//	go test -run XXX -bench AttentionDRAM -count 5 ./backends/avx512
func BenchmarkAttentionDRAM(b *testing.B) {
	need(b)
	const nh, hd = 12, 64
	kvd := nh * hd
	r := rand.New(rand.NewPCG(9, 9))
	q := randSlice(r, hd)
	out := make([]float32, hd)
	var k Kernels
	for _, c := range []struct{ n, headMajor int }{{100, 1}, {100, 0}, {1000, 1}, {1000, 0}} {
		n, headMajor := c.n, c.headMajor == 1
		caches := (64 << 20) / (2 * n * kvd * 4)
		kv := make([][]float32, 2*caches)
		for i := range kv {
			kv[i] = randSlice(r, n*kvd)
		}
		scores := make([]float32, n)
		name := fmt.Sprintf("n=%d/position-major", n)
		if headMajor {
			name = fmt.Sprintf("n=%d/head-major", n)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(2 * n * kvd * 4))
			for i := 0; i < b.N; i++ {
				kc, vc := kv[2*(i%caches)], kv[2*(i%caches)+1]
				for h := 0; h < nh; h++ {
					if headMajor {
						k.Attention(out, q, kc[h*n*hd:], vc[h*n*hd:], n, hd, 0.125, scores)
					} else {
						k.Attention(out, q, kc[h*hd:], vc[h*hd:], n, kvd, 0.125, scores)
					}
				}
			}
		})
	}
}
