//go:build amd64 && !purego

package avx512

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/lmrun/lmrun/backends/internal/benchmem"
	"github.com/lmrun/lmrun/dtype"
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
			run := func(b *testing.B, f func(j int, w *kernels.Mat, r0, r1 int)) {
				runSplit(b, threads, sh.N, 4*float64(sh.N*sh.K), func(i, j, r0, r1 int) { f(j, ws[i%copies], r0, r1) })
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

// BenchmarkDecodeDRAMHalf measures the one-token products (T = 1) of f32, f16 and bf16
// weights (MatMul on float32 activations; bf16×bf16: MatMulBF16 on bf16 activations)
// streaming from DRAM, as BenchmarkDecodeDRAM does: rotating copies ≥ 128 MiB in all,
// mapped in 4 KiB pages as a mapped weight file is (smallPages), 1 and 2 threads (the rows split in halves rounded to 48 rows). GB/s counts the weight
// bytes read, so that a half product as fast as the memory allows reads about the f32
// product's GB/s in half its time.
//
//	go test -run XXX -bench DecodeDRAMHalf -count 5 ./backends/avx512
func BenchmarkDecodeDRAMHalf(b *testing.B) {
	need(b)
	r := rand.New(rand.NewPCG(10, 10))
	var k Kernels
	for _, sh := range []struct{ N, K int }{{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}, {50257, 768}} {
		v := randSlice(r, sh.N*sh.K)
		for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
			for _, act := range []string{"f32", "bf16"} {
				if act == "bf16" && (dt != dtype.BF16 || !hasBF16) {
					continue
				}
				_, es := dt.Block()
				nb := es * sh.N * sh.K
				data := make([]byte, nb)
				for i, f := range v {
					switch dt {
					case dtype.F32:
						binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(f))
					case dtype.F16:
						binary.LittleEndian.PutUint16(data[2*i:], dtype.F32ToF16(f))
					default:
						binary.LittleEndian.PutUint16(data[2*i:], dtype.F32ToBF16(f))
					}
				}
				copies := max(1, (128<<20)/nb)
				ws := make([]*kernels.Mat, copies)
				for i := range ws {
					m := benchmem.SmallPages(b, nb)
					copy(m, data)
					w, err := kernels.NewMat(dt, m, sh.N, sh.K)
					if err != nil {
						b.Fatal(err)
					}
					ws[i] = w
				}
				x, dst := randSlice(r, sh.K), make([]float32, sh.N)
				xb := make([]uint16, sh.K)
				k.RoundBF16(x, xb)
				sc := []kernels.Scratch{kernels.NewScratch(k, 1, sh.K), kernels.NewScratch(k, 1, sh.K)}
				for _, threads := range []int{1, 2} {
					b.Run(fmt.Sprintf("N%d_K%d/%v_x%s/threads=%d", sh.N, sh.K, dt, act, threads), func(b *testing.B) {
						runSplit(b, threads, sh.N, float64(nb), func(i, j, r0, r1 int) {
							w := ws[i%copies]
							if act == "bf16" {
								k.MatMulBF16(dst, sh.N, xb, 1, w, nil, r0, r1, sc[j])
							} else {
								k.MatMul(dst, sh.N, x, 1, w, nil, r0, r1, sc[j])
							}
						})
					})
				}
			}
		}
	}
}

// runSplit calls f b.N times, call i on threads threads at once, thread j taking rows
// [r0, r1) of rows (two threads: halves rounded to 48 rows, as the engine splits them),
// and reports GB/s for bytes read by each call.
func runSplit(b *testing.B, threads, rows int, bytes float64, f func(i, j, r0, r1 int)) {
	split := []int{0, rows}
	if threads == 2 {
		split = []int{0, (rows/2 + 47) / 48 * 48, rows}
	}
	for i := 0; i < b.N; i++ {
		if threads == 1 {
			f(i, 0, 0, rows)
			continue
		}
		var wg sync.WaitGroup
		for j := 0; j < threads; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f(i, j, split[j], split[j+1])
			}()
		}
		wg.Wait()
	}
	s := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(bytes/s/1e9, "GB/s")
}
