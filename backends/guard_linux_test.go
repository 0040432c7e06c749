//go:build linux

package backends_test

import (
	"math/rand/v2"
	"runtime/debug"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// guardedAlloc returns a slice of n floats placed against an inaccessible page: its
// last element ends exactly where the page begins (atEnd), or its first element starts
// exactly where one ends. A kernel that reads or writes even one float outside the
// slice faults. The mapping is released when the test ends.
func guardedAlloc(t *testing.T, n int, atEnd bool) []float32 {
	t.Helper()
	b := guardedBytes(t, 4*n, atEnd)
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}

// guardedHalves is guardedAlloc for binary16 values.
func guardedHalves(t *testing.T, v []float32, atEnd bool) []uint16 {
	t.Helper()
	b := guardedBytes(t, 2*len(v), atEnd)
	h := unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(v))
	for i, x := range v {
		h[i] = dtype.F32ToF16(x)
	}
	return h
}

// guardedBytes returns n > 0 bytes against an inaccessible page (see guardedAlloc).
func guardedBytes(t *testing.T, n int, atEnd bool) []byte {
	t.Helper()
	page := unix.Getpagesize()
	body := (n + page - 1) / page * page
	if body == 0 {
		body = page
	}
	mem, err := unix.Mmap(-1, 0, body+2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	if err := unix.Mprotect(mem[:page], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mprotect(mem[page+body:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	start := page
	if atEnd {
		start = page + body - n
	}
	return mem[start : start+n : start+n]
}

// guarded copies v into guarded memory.
func guarded(t *testing.T, v []float32, atEnd bool) []float32 {
	g := guardedAlloc(t, len(v), atEnd)
	copy(g, v)
	return g
}

// TestGuardPages runs every kernel with each operand against an inaccessible page, at
// its end and at its start, for lengths that exercise every tail: a masked load or store
// that touched one float too many would fault.
func TestGuardPages(t *testing.T) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	forEachBackend(t, func(t *testing.T, k kernels.Kernels) {
		r := rand.New(rand.NewPCG(13, 13))
		for _, atEnd := range []bool{true, false} {
			g := func(v []float32) []float32 { return guarded(t, v, atEnd) }
			for n := 1; n <= 40; n++ {
				x, y, w, b := g(randVec(r, n, 2)), g(randVec(r, n, 2)), g(randVec(r, n, 1)), g(randVec(r, n, 1))
				dst := guardedAlloc(t, n, atEnd)
				k.Dot(x, y)
				k.Add(dst, x)
				k.Scale(dst, 2)
				k.Softmax(dst)
				k.GELU(dst)
				k.SiLU(dst)
				k.SwiGLU(dst, y)
				k.RMSNorm(dst, x, w, 1e-5)
				k.LayerNorm(dst, x, w, b, 1e-5)
				k.LayerNorm(dst, x, w, nil, 1e-5)
				if n%2 == 0 {
					k.RoPE(dst, 2, n/2, g(randVec(r, n/4, 1)), g(randVec(r, n/4, 1)))
					k.RoPENeoX(dst, 2, n/2, g(randVec(r, n/4, 1)), g(randVec(r, n/4, 1)))
				}

				// MatMul: rows of n columns, T tokens, every operand guarded.
				for _, T := range []int{1, 2, 4} {
					rows := 5
					wm, err := kernels.NewMatF32(g(randVec(r, rows*n, 1)), rows, n)
					if err != nil {
						t.Fatal(err)
					}
					xs := g(randVec(r, T*n, 1))
					out := guardedAlloc(t, T*rows, atEnd)
					sc := guardedAlloc(t, k.ScratchSize(T, n), atEnd) // just what the backend asks for
					k.MatMul(out, rows, xs, T, wm, g(randVec(r, rows, 1)), 0, rows, sc)
					k.MatMul(out, rows, xs, T, wm, nil, 2, rows, sc)
					// The other weight dtypes, the ones that take scratch.
					for _, dt := range []dtype.DType{dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0} {
						quant := dt == dtype.Q8_0 || dt == dtype.Q4_0
						if quant && n%dtype.QBlock != 0 {
							continue
						}
						data, err := dtype.Quantize(dt, randVec(r, rows*n, 1), n)
						if err != nil {
							t.Fatal(err)
						}
						gd := guardedBytes(t, len(data), atEnd)
						copy(gd, data)
						wq, err := kernels.NewMat(dt, gd, rows, n)
						if err != nil {
							t.Fatal(err)
						}
						k.MatMul(out, rows, xs, T, wq, nil, 1, rows, sc)
						if q8, ok := k.(kernels.Q8Kernels); ok && quant {
							rb := dtype.RowBytes(dtype.Q8_0, n)
							xq := guardedBytes(t, T*rb, atEnd)
							for t0 := 0; t0 < T; t0++ {
								kernels.QuantizeQ8(xs[t0*n:(t0+1)*n], xq[t0*rb:(t0+1)*rb])
							}
							q8.MatMulQ8(out, rows, xq, T, wq, nil, 1, rows, sc)
						}
					}
				}

				// Attention: n as the head width over 3 positions, and as the position count.
				kc, vc := g(randVec(r, 3*n, 1)), g(randVec(r, 3*n, 1))
				k.Attention(guardedAlloc(t, n, atEnd), x, kc, vc, 3, n, 0.3, guardedAlloc(t, 3, atEnd))
				kc, vc = g(randVec(r, n*8, 1)), g(randVec(r, n*8, 1))
				k.Attention(guardedAlloc(t, 8, atEnd), g(randVec(r, 8, 1)), kc, vc, n, 8, 0.3, guardedAlloc(t, n, atEnd))
				for _, hd := range []int{n, 8 * n} { // the half kernels take multiples of 8
					kh, vh := guardedHalves(t, randVec(r, 3*hd, 1), atEnd), guardedHalves(t, randVec(r, 3*hd, 1), atEnd)
					k.AttentionF16(guardedAlloc(t, hd, atEnd), g(randVec(r, hd, 1)), kh, vh, 3, hd, 0.3, guardedAlloc(t, 3, atEnd))
				}
				kh, vh := guardedHalves(t, randVec(r, n*16, 1), atEnd), guardedHalves(t, randVec(r, n*16, 1), atEnd)
				k.AttentionF16(guardedAlloc(t, 16, atEnd), g(randVec(r, 16, 1)), kh, vh, n, 16, 0.3, guardedAlloc(t, n, atEnd))
			}

			// The k-quants, on rows of one to three super-blocks, with f32 and q8_k
			// activations.
			for _, n := range []int{256, 512, 768} {
				for _, T := range []int{1, 2, 4} {
					rows := 5
					xs := g(randVec(r, T*n, 1))
					out := guardedAlloc(t, T*rows, atEnd)
					sc := guardedAlloc(t, k.ScratchSize(T, n), atEnd)
					rb := dtype.RowBytes(dtype.Q8_K, n)
					xq := guardedBytes(t, T*rb, atEnd)
					for t0 := 0; t0 < T; t0++ {
						kernels.QuantizeQ8K(xs[t0*n:(t0+1)*n], xq[t0*rb:(t0+1)*rb])
					}
					for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
						data := weightBytes(r, dt, rows, n)
						gd := guardedBytes(t, len(data), atEnd)
						copy(gd, data)
						wq, err := kernels.NewMat(dt, gd, rows, n)
						if err != nil {
							t.Fatal(err)
						}
						k.MatMul(out, rows, xs, T, wq, nil, 1, rows, sc)
						if q8, ok := k.(kernels.Q8Kernels); ok {
							q8.MatMulQ8(out, rows, xq, T, wq, nil, 1, rows, sc)
							q8.QuantizeQ8K(xs[:n], xq[:rb])
						}
					}
				}
			}
		}
	})
}
