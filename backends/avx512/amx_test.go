//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/lmrun/lmrun/backends/internal/qgemm/qgemmtest"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// needAMX skips a test on CPUs (or processes) without the AMX tiles.
func needAMX(t testing.TB) {
	need(t)
	if !hasAMX || !useVNNI {
		t.Skip("CPU lacks AMX_TILE, AMX_INT8 or AVX512_VNNI")
	}
	if !amxPermitted() {
		t.Skip("no permission to use the AMX tiles")
	}
}

// extremeBlocks returns n blocks of dt whose quants are all one extreme value (±127 or
// −128 for q8_0, 0 or 15 for q4_0) or random, with random scales.
func extremeBlocks(r *rand.Rand, dt dtype.DType, n int) []byte {
	b := qgemmtest.Blocks(r, dt, n, false, false)
	bs := dtype.BlockQ8_0
	vals := []byte{0x7f, 0x81, 0x80}
	if dt == dtype.Q4_0 {
		bs, vals = dtype.BlockQ4_0, []byte{0x00, 0xff, 0xf0}
	}
	for i := 0; i < n; i++ {
		if r.IntN(2) == 0 {
			continue
		}
		v := vals[r.IntN(len(vals))]
		for j := 2; j < bs; j++ {
			b[i*bs+j] = v
		}
	}
	return b
}

// TestAMXTiles compares the AMX tiles (gemmAMX) with the VNNI tiles (gemm) bit for bit on
// ragged shapes: rows not multiples of 16 or 32, T = 9, 12, 16, 17, 31, 32, 33, 48, 64, 128, nb
// from 1 up, with and without bias, several row ranges, q8_0 (as loaded, through
// qgemmAMXW, and packed) and q4_0, extreme quants (±127, −128; 0 and 15); and the same
// with calls of at most 40 blocks (a product split into more calls).
func TestAMXTiles(t *testing.T) {
	needAMX(t)
	small := gemmAMX
	small.AMXBlocks = 40
	r := rand.New(rand.NewPCG(11, 12))
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		for _, nb := range []int{1, 2, 3, 5, 8, 24, 33} {
			n := nb * dtype.QBlock
			for _, rows := range []int{16, 17, 31, 32, 33, 48, 63, 64, 100} {
				w, err := kernels.NewMat(dt, extremeBlocks(r, dt, rows*nb), rows, n)
				if err != nil {
					t.Fatal(err)
				}
				bias := randSlice(r, rows)
				for _, packed := range []bool{false, true} {
					if packed && !gemm.Pack(w) {
						t.Fatalf("%v %d×%d not packed", dt, rows, n)
					}
					for _, T := range []int{9, 12, 16, 17, 31, 32, 33, 48, 64, 128} {
						if T*rows*n > 1<<21 {
							continue
						}
						xq := extremeBlocks(r, dtype.Q8_0, T*nb)
						ld := rows + 3
						sc := kernels.NewScratch(Kernels{}, T, n)
						for _, rr := range [][2]int{{0, rows}, {rows / 3, rows}, {5, rows - 1}, {1, 17}} {
							if rr[1] > rows || rr[0] >= rr[1] {
								continue
							}
							for _, b := range [][]float32{nil, bias} {
								want := make([]float32, T*ld)
								for i := range want {
									want[i] = float32(-i)
								}
								gemm.MatMulQ8(want, ld, xq, T, w, b, rr[0], rr[1], sc)
								for _, k := range []*qgemmKernels{&gemmAMX, &small} {
									got := make([]float32, T*ld)
									for i := range got {
										got[i] = float32(-i)
									}
									k.MatMulQ8(got, ld, xq, T, w, b, rr[0], rr[1], sc)
									for i := range want {
										if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
											t.Fatalf("%v packed=%v %d×%d T=%d rows [%d,%d) bias=%v blocks=%d: dst[%d] (token %d, row %d) = %v (%#x), VNNI %v (%#x)",
												dt, packed, rows, n, T, rr[0], rr[1], b != nil, k.AMXBlocks, i, i/ld, i%ld,
												got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestAMXKernel checks qgemmAMX itself (two tiles of tokens times two groups a call)
// against qgemmZx8, bit for bit.
func TestAMXKernel(t *testing.T) {
	needAMX(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		for _, nb := range []int{1, 2, 7} {
			const rows, T = 32, 32
			n := nb * dtype.QBlock
			w, _ := kernels.NewMat(dt, extremeBlocks(r, dt, rows*nb), rows, n)
			if !gemm.Pack(w) {
				t.Fatal("not packed")
			}
			xq := extremeBlocks(r, dtype.Q8_0, T*nb)
			mul := -128
			if dt == dtype.Q4_0 {
				mul = -8
			}
			xs := make([]byte, 40*T*nb)
			prepareSum(&xs[0], &xq[0], T, nb, dtype.RowBytes(dtype.Q8_0, n), mul)
			bias := randSlice(r, rows)
			for _, b := range [][]float32{nil, bias} {
				want, got := make([]float32, T*rows), make([]float32, T*rows)
				var bp *float32
				for g := 0; g < 2; g++ {
					if b != nil {
						bp = &b[16*g]
					}
					for t0 := 0; t0 < T; t0 += 8 {
						qgemmZx8(&want[t0*rows+16*g], rows, &w.Packed.Data[g*nb*576], &xs[40*t0], 40*T, nb, bp)
					}
				}
				bp = nil
				if b != nil {
					bp = &b[0]
				}
				qgemmAMX(2, &got[0], rows, &w.Packed.Data[0], &xs[0], 40*T, nb, 2, bp, &w.Packed.Data[0], 1)
				for i := range want {
					if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
						t.Fatalf("%v nb=%d bias=%v: dst[%d] = %v, qgemmZx8 %v", dt, nb, b != nil, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestAMXConcurrent runs the AMX tiles from several goroutines at once, with the
// garbage collector kept busy, and checks every result against the VNNI tiles'.
func TestAMXConcurrent(t *testing.T) {
	needAMX(t)
	const rows, nb, T = 80, 12, 48
	r := rand.New(rand.NewPCG(9, 9))
	n := nb * dtype.QBlock
	w, _ := kernels.NewMat(dtype.Q8_0, extremeBlocks(r, dtype.Q8_0, rows*nb), rows, n)
	xq := extremeBlocks(r, dtype.Q8_0, T*nb)
	bias := randSlice(r, rows)
	want := make([]float32, T*rows)
	gemm.MatMulQ8(want, rows, xq, T, w, bias, 0, rows, kernels.NewScratch(Kernels{}, T, n))
	iters := 300
	if testing.Short() {
		iters = 60
	}
	stop := make(chan struct{})
	var gc sync.WaitGroup
	gc.Add(1)
	go func() { // garbage, and collections
		defer gc.Done()
		var keep [][]byte
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			keep = append(keep, make([]byte, 1<<16))
			if len(keep) > 64 {
				keep = keep[:0]
			}
			if i%32 == 0 {
				runtime.GC()
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := kernels.NewScratch(Kernels{}, T, n)
			got := make([]float32, T*rows)
			for i := 0; i < iters; i++ {
				clear(got)
				Kernels{}.MatMulQ8(got, rows, xq, T, w, bias, 0, rows, sc)
				for j := range want {
					if math.Float32bits(want[j]) != math.Float32bits(got[j]) {
						errs <- fmt.Errorf("iteration %d: dst[%d] = %v, want %v", i, j, got[j], want[j])
						return
					}
				}
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	close(stop)
	gc.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// amxRepack is gemmAMX without qgemmAMXW: q8_0 weights as loaded repacked per group.
var amxRepack = func() qgemmKernels {
	k := gemmAMX
	k.TileAMXQ8, k.GatherAMXQ8 = nil, nil
	return k
}()

// benchAMXTokens are the T of BenchmarkAMX.
var benchAMXTokens = []int{12, 16, 24, 32, 128}

// BenchmarkAMX compares the AMX tiles with the VNNI tiles (gemmAMX and gemm, the same
// run, interleaved), single threaded, on q8_0 (as loaded and packed) and q4_0 weights:
// T tokens of a 2048×768 matrix (an FFN of stories110m) and a 768×2048 one, GOP/s. On
// q8_0 as loaded, amxrepack is the AMX tiles on groups repacked per product (qgemmAMX)
// rather than qgemmAMXW.
//
//	go test -run XXX -bench AMX -count 3 ./backends/avx512
func BenchmarkAMX(b *testing.B) {
	needAMX(b)
	r := rand.New(rand.NewPCG(3, 3))
	for _, shape := range [][2]int{{2048, 768}, {768, 2048}} {
		N, K := shape[0], shape[1]
		for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
			data, _ := dtype.Quantize(dt, randSlice(r, N*K), K)
			for _, T := range benchAMXTokens {
				xb := dtype.RowBytes(dtype.Q8_0, K)
				xq := make([]byte, T*xb)
				for t := 0; t < T; t++ {
					kernels.QuantizeQ8(randSlice(r, K), xq[t*xb:(t+1)*xb])
				}
				dst := make([]float32, T*N)
				for _, pack := range []bool{false, true} {
					w, _ := kernels.NewMat(dt, data, N, K)
					if pack && !gemm.Pack(w) {
						continue
					}
					for _, k := range []struct {
						name string
						g    *qgemmKernels
					}{{"vnni", &gemm}, {"amxrepack", &amxRepack}, {"amx", &gemmAMX}} {
						if k.g == &amxRepack && (pack || dt != dtype.Q8_0) {
							continue // the same as amx
						}
						name := fmt.Sprintf("%dx%d/%v/T%d/%s", N, K, dt, T, k.name)
						if pack {
							name += "+pack"
						}
						b.Run(name, func(b *testing.B) {
							sc := kernels.NewScratch(Kernels{}, T, K)
							for i := 0; i < b.N; i++ {
								k.g.MatMulQ8(dst, N, xq, T, w, nil, 0, N, sc)
							}
							b.ReportMetric(2*float64(T*N*K)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GOP/s")
						})
					}
				}
			}
		}
	}
}

// BenchmarkAMXKernel compares qgemmAMX with qgemmZx8 on one group of 16 rows (in L1)
// and 128 tokens of 24 blocks (in L2), random quants, ns per block of 16 rows × 16
// tokens. (The tiles' speed depends on the data: on all-zero quants qgemmAMX takes
// about 10% less.)
func BenchmarkAMXKernel(b *testing.B) {
	needAMX(b)
	const nb, n, T = 24, 8, 128
	r := rand.New(rand.NewPCG(1, 2))
	w := make([]byte, nb*576+64)
	w = w[(64-int(uintptr(unsafe.Pointer(&w[0])))%64)%64:]
	xs := make([]byte, 40*T*nb)
	for i := range w {
		w[i] = byte(r.Uint32())
	}
	for i := range xs {
		xs[i] = byte(r.Uint32())
	}
	for bl := 0; bl < nb; bl++ { // scales
		for j := 0; j < 16; j++ {
			*(*float32)(unsafe.Pointer(&w[bl*576+512+4*j])) = float32(r.NormFloat64())
		}
	}
	for i := 0; i < T*nb; i++ { // dx, −128·Σx
		*(*float32)(unsafe.Pointer(&xs[40*i+32])) = float32(r.NormFloat64())
		*(*int32)(unsafe.Pointer(&xs[40*i+36])) = int32(r.IntN(1<<19)) - 1<<18
	}
	dst := make([]float32, T*16)
	b.Run("vnni", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for t := 0; t < T; t += 8 {
				qgemmZx8(&dst[t*16], 16, &w[0], &xs[40*t], 40*T, nb, nil)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n*nb), "ns/block")
	})
	b.Run("amx", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			qgemmAMX(n, &dst[0], 16, &w[0], &xs[0], 40*T, nb, 1, nil, &w[0], 1)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n*nb), "ns/block")
	})
}
