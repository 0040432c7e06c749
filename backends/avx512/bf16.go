//go:build amd64 && !purego

package avx512

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"
	"unsafe"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// hasBF16 reports AVX512_BF16 (VDPBF16PS), which MatMulBF16's kernels need.
var hasBF16 = cpuid.CPU.Supports(cpuid.AVX512BF16)

// bf16Scratch is the scratch MatMulBF16 needs: none with AVX512_BF16, else the
// activations widened to float32 and matMulHalf's.
func bf16Scratch(T, cols int) int {
	if hasBF16 {
		return 0
	}
	return T*cols + halfScratch(T, cols)
}

// MatMulBF16 implements kernels.BF16Kernels: with AVX512_BF16, gemmBF16x4 (4 rows × 6
// tokens of 16-lane accumulators, each VDPBF16PS adding 32 products) over blocks of
// four rows and all T tokens — for T > 6 chunks of about chunkBytes of rows, each
// against one block of 6 tokens after the other (for T = 1 gemvBF16x4s, four rows a
// quarter of the matrix apart: four long streams, each prefetched 1 KiB ahead) —
// gemmBF16x1 for the rows%4 left over; every (row, token) sum is taken in the same
// order in either, so a token's results do not depend on T nor on the row split. Denormal weights, activations and partial sums count as zero
// (VDPBF16PS flushes them), as the contract allows. The bias is added last. Without
// AVX512_BF16 the activations are widened to float32 in scratch and multiplied by
// MatMul's f16/bf16 path (matMulHalf), whose products are the same exact ones.
func (k Kernels) MatMulBF16(dst []float32, ld int, xb []uint16, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if w.DType != dtype.BF16 {
		kernels.MatMulBF16(dst, ld, xb, T, w, bias, r0, r1) // (it panics)
		return
	}
	if r0 >= r1 || T <= 0 {
		return
	}
	n := w.Cols
	if r0 < 0 || r1 > w.Rows || len(w.Data) < 2*w.Rows*n || ld < r1 || len(xb) < T*n ||
		len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("avx512: MatMulBF16 rows [%d,%d) of %d×%d, T=%d, ld=%d: len(w)=%d len(xb)=%d len(dst)=%d len(bias)=%d",
			r0, r1, w.Rows, n, T, ld, len(w.Data), len(xb), len(dst), len(bias)))
	}
	if !hasBF16 {
		if n < 8 { // too short for matMulHalf
			kernels.MatMulBF16(dst, ld, xb, T, w, bias, r0, r1)
			return
		}
		if len(scratch) < bf16Scratch(T, n) {
			panic(fmt.Sprintf("avx512: MatMulBF16 needs %d floats of scratch, got %d", bf16Scratch(T, n), len(scratch)))
		}
		xf := scratch[:T*n]
		for i, h := range xb[:T*n] {
			xf[i] = dtype.BF16ToF32(h)
		}
		k.matMulHalf(dst, ld, xf, nil, T, w, bias, r0, r1, scratch[T*n:])
		return
	}
	if n == 0 {
		for t := 0; t < T; t++ {
			for r := r0; r < r1; r++ {
				var s float32
				if bias != nil {
					s += bias[r]
				}
				dst[t*ld+r] = s
			}
		}
		return
	}
	wh := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(w.Data))), len(w.Data)/2)
	g := (r1 - r0) / 4
	switch {
	case g == 0:
	case T == 1: // four streams a quarter of the rows apart
		gemvBF16x4s(&dst[r0], ld, &xb[0], n, 1, &wh[r0*n], n, n, g, g)
	case T <= 6:
		gemmBF16x4(&dst[r0], ld, &xb[0], n, T, &wh[r0*n], n, n, g)
	default:
		// A chunk of rows (from L2 after the first block) against one block of 6 tokens'
		// activations (in L1) after the other, rather than each group of rows against
		// all T tokens' activations streaming from L2.
		gc := max(1, chunkBytes/(2*n*4))
		for g0 := 0; g0 < g; g0 += gc {
			m, a := min(gc, g-g0), r0+4*g0
			for t0 := 0; t0 < T; t0 += 6 {
				gemmBF16x4(&dst[t0*ld+a], ld, &xb[t0*n], n, min(6, T-t0), &wh[a*n], n, n, m)
			}
		}
	}
	if a := r0 + 4*g; a < r1 {
		gemmBF16x1(&dst[a], ld, &xb[0], n, T, &wh[a*n], n, n, r1-a)
	}
	if bias != nil {
		for t := 0; t < T; t++ {
			k.Add(dst[t*ld+r0:t*ld+r1], bias[r0:r1])
		}
	}
}

// RoundBF16 implements kernels.BF16Kernels: roundBF16, 16 lanes at a time.
func (Kernels) RoundBF16(x []float32, dst []uint16) {
	if len(x) == 0 {
		return
	}
	dst = dst[:len(x)]
	roundBF16(&dst[0], &x[0], len(x))
}

// FastBF16 implements kernels.BF16Kernels: MatMulBF16 is faster than MatMul where the
// CPU has AVX512_BF16 and runs VDPBF16PS about as often as FMAs, each doing the work of
// two (Zen 5: 1.8–2.7× MatMul's float32-activation product on a prefill), not where it
// runs half as many (Sapphire Rapids-class Xeons: 0.65×). bf16Pays measures which, once.
func (Kernels) FastBF16() bool { return hasBF16 && bf16Pays() }

// bf16Pays times both products of a 128-row, 768-column bf16 matrix on 64 tokens (a
// prefill's, from L1 and L2; about 1.5 ms in all) five times, alternating, and reports
// whether MatMulBF16's best time is under 0.85× MatMul's: on a Sapphire Rapids-class
// Xeon it is 1.4×, on Zen 5 about 0.5×, so the answer does not hang on the noise.
var bf16Pays = sync.OnceValue(func() bool {
	const rows, cols, T = 128, 768, 64
	w := &kernels.Mat{DType: dtype.BF16, Rows: rows, Cols: cols, Data: make([]byte, 2*rows*cols)}
	x := make([]float32, T*cols)
	xb := make([]uint16, T*cols)
	for i := range x {
		x[i] = float32(i%13-6) / 8
		xb[i] = dtype.F32ToBF16(x[i])
	}
	for i := 0; i < len(w.Data); i += 2 {
		binary.LittleEndian.PutUint16(w.Data[i:], dtype.F32ToBF16(float32(i%7-3)/4))
	}
	k := Kernels{}
	dst := make([]float32, T*rows)
	scratch := kernels.NewScratch(k, T, cols)
	best := func(f func()) time.Duration {
		t0 := time.Now()
		f()
		return time.Since(t0)
	}
	f32 := func() { k.MatMul(dst, rows, x, T, w, nil, 0, rows, scratch) }
	b16 := func() { k.MatMulBF16(dst, rows, xb, T, w, nil, 0, rows, scratch) }
	f32() // first touches, and the matrix's one-time checks
	b16()
	tf, tb := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for range 5 {
		tf, tb = min(tf, best(f32)), min(tb, best(b16))
	}
	return tb < tf*85/100
})

var _ kernels.BF16Kernels = Kernels{}
