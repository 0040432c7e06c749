//go:build arm64 && !purego

package neon

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/cpuid/v2"
	"golang.org/x/sys/cpu"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// Tests of the kernels for weights that are not float32: MatMulQ8 on q8_0 and q4_0
// weights, with and without the dot-product instructions (both paths run wherever SDOT
// exists, whatever New picks), and MatMul on f16 and bf16 weights. MatMulQ8 computes
// every output in the reference's order of float32 operations, so it must match the
// reference bit for bit; MatMul on f16/bf16 must match MatMul on the converted f32 matrix
// bit for bit. Both are checked for writes outside the destination rows, odd shapes,
// unaligned buffers, every row split and batch size, and panics on short buffers.

func requireDotProd(tb testing.TB) {
	if !cpuid.CPU.Supports(cpuid.ASIMDDP) {
		tb.Skip("CPU lacks the dot-product instructions (ASIMDDP)")
	}
}

// q8Impls are MatMulQ8's two paths: plain NEON and, where the CPU has it, SDOT.
func q8Impls() []Kernels {
	ks := []Kernels{{}}
	if cpuid.CPU.Supports(cpuid.ASIMDDP) {
		ks = append(ks, Kernels{dotProd: true})
	}
	return ks
}

func pathName(k Kernels) string {
	if k.dotProd {
		return "sdot"
	}
	return "mull"
}

// TestDotProdDetection: New uses SDOT exactly when cpuid reports it, and cpuid agrees
// with golang.org/x/sys/cpu (AT_HWCAP). The test log says which paths ran here.
func TestDotProdDetection(t *testing.T) {
	requireASIMD(t)
	has := cpuid.CPU.Supports(cpuid.ASIMDDP)
	if has != cpu.ARM64.HasASIMDDP {
		t.Errorf("cpuid says ASIMDDP=%v, x/sys/cpu says %v", has, cpu.ARM64.HasASIMDDP)
	}
	if New().dotProd != has {
		t.Errorf("New().dotProd = %v, cpuid ASIMDDP %v", New().dotProd, has)
	}
	if !has {
		t.Log("no ASIMDDP: only MatMulQ8's plain-NEON path is tested")
	} else {
		t.Log("ASIMDDP present: MatMulQ8's SDOT and plain-NEON paths are both tested")
	}
}

// quantWeights makes rows×cols weights of dtype q8_0 or q4_0 with random bytes (so q8_0
// has -128) and f16 scales of moderate size, starting at byte offset off of the returned
// buffer.
func quantWeights(r *rand.Rand, dt dtype.DType, rows, cols, off int) []byte {
	rb := dtype.RowBytes(dt, cols)
	buf := make([]byte, off+rows*rb)
	b := buf[off:]
	bb := dtype.BlockQ8_0
	if dt == dtype.Q4_0 {
		bb = dtype.BlockQ4_0
	}
	for i := 0; i < len(b); i += bb {
		binary.LittleEndian.PutUint16(b[i:], dtype.F32ToF16(float32(r.NormFloat64()*0.05)))
		for j := 2; j < bb; j++ {
			b[i+j] = byte(r.IntN(256))
		}
	}
	return b[:len(b):len(b)]
}

// quantActs quantizes T rows of cols random activations with QuantizeQ8, at byte offset
// off, with one large value per row in some rows (small scales elsewhere).
func quantActs(r *rand.Rand, T, cols, off int) []byte {
	rb := dtype.RowBytes(dtype.Q8_0, cols)
	buf := make([]byte, off+T*rb)
	xq := buf[off:]
	x := randVec(r, cols, 1)
	for t := 0; t < T; t++ {
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		if t%3 == 1 {
			x[r.IntN(cols)] = 40
		}
		kernels.QuantizeQ8(x, xq[t*rb:(t+1)*rb])
	}
	return xq[:len(xq):len(xq)]
}

// sameBits reports whether a and b are the same float32, any NaN matching any NaN.
func sameBits(a, b float32) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

// checkOut compares got with want at [t*ld + r] for r0 ≤ r < r1 and checks that every
// other entry of got still holds guard.
func checkOut(t *testing.T, what string, got, want []float32, ld, T, r0, r1 int) {
	t.Helper()
	for i, g := range got {
		tk, o := i/ld, i%ld
		if tk >= T || o < r0 || o >= r1 {
			if g != guard {
				t.Fatalf("%s: wrote outside the destination at [%d,%d]", what, tk, o)
			}
			continue
		}
		if !sameBits(g, want[i]) {
			t.Fatalf("%s: [%d,%d] = %v, want %v", what, tk, o, g, want[i])
		}
	}
}

func guarded(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = guard
	}
	return v
}

// TestMatMulQ8Exact: both paths against the reference, bit for bit, on every shape
// class: rows around multiples of 4, T around the 4-token tiles and past the leftover
// rows' chunks, unaligned weights and activations, with and without bias, and split row
// ranges.
func TestMatMulQ8Exact(t *testing.T) {
	requireASIMD(t)
	r := rand.New(rand.NewPCG(21, 22))
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		for _, cols := range []int{32, 64, 96, 160, 288} {
			for _, rows := range []int{1, 2, 3, 4, 5, 7, 8, 9, 12, 13} {
				for _, T := range []int{1, 2, 3, 4, 5, 7, 8, 9, 17, 35} {
					if T > 9 && (rows > 5 || cols > 96) {
						continue
					}
					off := (rows + T) % 5
					w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: quantWeights(r, dt, rows, cols, off)}
					xq := quantActs(r, T, cols, 3-off%3)
					var bias []float32
					if (rows+T)%2 == 0 {
						bias = randVec(r, rows, 1)
					}
					ld := rows + T%3
					for _, rng := range [][2]int{{0, rows}, {1, rows}, {0, rows - 1}, {rows / 3, rows - rows/4}} {
						r0, r1 := rng[0], rng[1]
						if r0 >= r1 {
							continue
						}
						want := guarded(T * ld)
						ref.MatMulQ8(want, ld, xq, T, w, bias, r0, r1, nil)
						for _, k := range q8Impls() {
							got := guarded(T * ld)
							k.MatMulQ8(got, ld, xq, T, w, bias, r0, r1, nil)
							what := fmt.Sprintf("%v/%s T=%d %dx%d [%d,%d) bias=%v", dt, pathName(k), T, rows, cols, r0, r1, bias != nil)
							checkOut(t, what, got, want, ld, T, r0, r1)
						}
					}
				}
			}
		}
	}
}

// TestMatMulQ8Extremes: the largest integer sums (weights of -128 and ±8, activations of
// ±127: two products of 16256 share a 16-bit lane in the plain-NEON path), and scales
// that are subnormal, infinite or NaN.
func TestMatMulQ8Extremes(t *testing.T) {
	requireASIMD(t)
	const rows, cols, T = 6, 96, 3
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		for _, c := range []struct {
			name   string
			wq, xq int8
			wd, xd uint16
		}{
			{"max·max", -128, -127, 0x3c00, 0x3c00},
			{"max·-max", -128, 127, 0x3c00, 0x3c00},
			{"subnormal scales", -128, 127, 0x0001, 0x03ff},
			{"inf scale", 5, 7, 0x7c00, 0x3c00},
			{"nan scale", 5, 7, 0x7e00, 0x3c00},
			{"zero·inf", 0, 7, 0x7c00, 0x3c00},
		} {
			rb := dtype.RowBytes(dt, cols)
			wdata := make([]byte, rows*rb)
			bb := dtype.BlockQ8_0
			if dt == dtype.Q4_0 {
				bb = dtype.BlockQ4_0
			}
			for i := 0; i < len(wdata); i += bb {
				binary.LittleEndian.PutUint16(wdata[i:], c.wd)
				for j := 2; j < bb; j++ {
					if dt == dtype.Q4_0 { // nibble 0 is -8, 15 is 7
						nib := byte(0)
						if c.wq > 0 {
							nib = 15
						}
						wdata[i+j] = nib | nib<<4
					} else {
						wdata[i+j] = byte(c.wq)
					}
				}
			}
			xr := dtype.RowBytes(dtype.Q8_0, cols)
			xq := make([]byte, T*xr)
			for i := 0; i < len(xq); i += dtype.BlockQ8_0 {
				binary.LittleEndian.PutUint16(xq[i:], c.xd)
				for j := 2; j < dtype.BlockQ8_0; j++ {
					xq[i+j] = byte(c.xq)
				}
			}
			w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: wdata}
			want := guarded(T * rows)
			ref.MatMulQ8(want, rows, xq, T, w, nil, 0, rows, nil)
			for _, k := range q8Impls() {
				got := guarded(T * rows)
				k.MatMulQ8(got, rows, xq, T, w, nil, 0, rows, nil)
				checkOut(t, fmt.Sprintf("%v/%s %s", dt, pathName(k), c.name), got, want, rows, T, 0, rows)
			}
		}
	}
}

// TestMatQAsm calls the four assembly routines directly, on the same random blocks:
// SDOT and plain NEON must agree bit for bit, with the reference too, for row strides
// larger than a row and 0 (the leftover rows' case), without writing between the rows
// of dst.
func TestMatQAsm(t *testing.T) {
	requireASIMD(t)
	type fn = func(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)
	r := rand.New(rand.NewPCG(23, 24))
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		mull, sdot := fn(matQ8Mull), fn(matQ8Sdot)
		if dt == dtype.Q4_0 {
			mull, sdot = matQ4Mull, matQ4Sdot
		}
		for _, nb := range []int{0, 1, 2, 3, 7} {
			for _, rows := range []int{4, 8, 12} {
				for _, T := range []int{1, 3, 4, 5, 8, 11} {
					for _, pad := range []int{0, 5} { // wstride = row bytes + pad
						cols := nb * 32
						rb := dtype.RowBytes(dt, cols)
						stride := rb + pad
						wbuf := quantWeights(r, dt, rows, cols+32, 1)[:(rows-1)*stride+rb]
						bb := rb / max(nb, 1)
						for i := 0; i < rows; i++ { // sensible scales where the rows' blocks start
							for b := 0; b < nb; b++ {
								binary.LittleEndian.PutUint16(wbuf[i*stride+b*bb:], dtype.F32ToF16(float32(r.NormFloat64()*0.05)))
							}
						}
						xq := quantActs(r, T, max(cols, 32), 0)[:T*nb*dtype.BlockQ8_0]
						ld := rows + 3
						// The reference on the same rows, copied out of the strided buffer.
						packed := make([]byte, rows*rb)
						for i := 0; i < rows; i++ {
							copy(packed[i*rb:(i+1)*rb], wbuf[i*stride:])
						}
						want := guarded(T * ld)
						if cols > 0 {
							w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: packed}
							ref.MatMulQ8(want, ld, xq, T, w, nil, 0, rows, nil)
						} else {
							for tk := 0; tk < T; tk++ {
								clear(want[tk*ld : tk*ld+rows])
							}
						}
						impls := []fn{mull}
						if cpuid.CPU.Supports(cpuid.ASIMDDP) {
							impls = append(impls, sdot)
						}
						for i, f := range impls {
							got := guarded(T*ld + 8)
							f(got[:(T-1)*ld+rows], ld, xq, T, wbuf, stride, nb, rows)
							checkOut(t, fmt.Sprintf("%v impl %d nb=%d rows=%d T=%d stride=%d", dt, i, nb, rows, T, stride), got, want, ld, T, 0, rows)

							// Stride 0: all four lanes on row 0.
							one := guarded(4*T + 8)
							f(one[:4*T], 4, xq, T, wbuf[:rb], 0, nb, 4)
							for _, v := range one[4*T:] {
								if v != guard {
									t.Fatalf("%v impl %d nb=%d T=%d stride 0: wrote past dst", dt, i, nb, T)
								}
							}
							for tk := 0; tk < T; tk++ {
								for l := 0; l < 4; l++ {
									if !sameBits(one[4*tk+l], want[tk*ld]) {
										t.Fatalf("%v impl %d nb=%d T=%d stride 0: token %d lane %d = %v, want %v", dt, i, nb, T, tk, l, one[4*tk+l], want[tk*ld])
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

// TestMatMulQ8Delegates: f32, f16 and bf16 weights, and rows that are not whole blocks,
// give the reference's result.
func TestMatMulQ8Delegates(t *testing.T) {
	requireASIMD(t)
	r := rand.New(rand.NewPCG(25, 26))
	const rows, cols, T = 5, 64, 3
	xq := quantActs(r, T, cols, 0)
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		data, err := dtype.Quantize(dt, randVec(r, rows*cols, 1), cols)
		if err != nil {
			t.Fatal(err)
		}
		w, err := kernels.NewMat(dt, data, rows, cols)
		if err != nil {
			t.Fatal(err)
		}
		want, got := guarded(T*rows), guarded(T*rows)
		ref.MatMulQ8(want, rows, xq, T, w, nil, 0, rows, nil)
		New().MatMulQ8(got, rows, xq, T, w, nil, 0, rows, nil)
		checkOut(t, dt.String(), got, want, rows, T, 0, rows)
	}
}

// TestMatMulQ8Panics: short buffers panic in Go, before the assembly could read or write
// past them.
func TestMatMulQ8Panics(t *testing.T) {
	requireASIMD(t)
	r := rand.New(rand.NewPCG(27, 28))
	const rows, cols, T = 8, 64, 2
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		data := quantWeights(r, dt, rows, cols, 0)
		xq := quantActs(r, T, cols, 0)
		w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: data}
		short := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: data[:len(data)-1]}
		for _, k := range q8Impls() {
			for _, c := range []struct {
				name string
				f    func()
			}{
				{"short weights", func() { k.MatMulQ8(make([]float32, T*rows), rows, xq, T, short, nil, 0, rows, nil) }},
				{"short activations", func() { k.MatMulQ8(make([]float32, T*rows), rows, xq[:len(xq)-1], T, w, nil, 0, rows, nil) }},
				{"short dst", func() { k.MatMulQ8(make([]float32, T*rows-1), rows, xq, T, w, nil, 0, rows, nil) }},
				{"short bias", func() { k.MatMulQ8(make([]float32, T*rows), rows, xq, T, w, make([]float32, rows-1), 0, rows, nil) }},
				{"rows past the matrix", func() { k.MatMulQ8(make([]float32, T*(rows+4)), rows+4, xq, T, w, nil, 0, rows+4, nil) }},
				{"negative ld", func() { k.MatMulQ8(make([]float32, T*rows), -1, xq, T, w, nil, 0, rows, nil) }},
			} {
				if p := panicked(c.f); p == nil {
					t.Errorf("%v/%s %s: no panic", dt, pathName(k), c.name)
				}
			}
		}
	}
}

func panicked(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// TestNoAllocs: the kernels allocate nothing, leftover rows (computed through a scratch
// array on the stack) included.
func TestNoAllocs(t *testing.T) {
	requireASIMD(t)
	r := rand.New(rand.NewPCG(35, 36))
	const rows, cols, T = 7, 64, 5
	k := New()
	xq := quantActs(r, T, cols, 0)
	x := randVec(r, T*cols, 1)
	dst := make([]float32, T*rows)
	bias := randVec(r, rows, 1)
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0, dtype.F16, dtype.BF16} {
		var data []byte
		if dt == dtype.Q8_0 || dt == dtype.Q4_0 {
			data = quantWeights(r, dt, rows, cols, 0)
		} else {
			data = halfWeights(r, dt, rows, cols, 0)
		}
		w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: data}
		var n float64
		if dt == dtype.Q8_0 || dt == dtype.Q4_0 {
			n = testing.AllocsPerRun(10, func() { k.MatMulQ8(dst, rows, xq, T, w, bias, 0, rows, nil) })
		} else {
			n = testing.AllocsPerRun(10, func() { k.MatMul(dst, rows, x, T, w, bias, 0, rows, nil) })
		}
		if n != 0 {
			t.Errorf("%v: %v allocations per call", dt, n)
		}
	}
}

// halfWeights makes rows×cols f16 or bf16 weights from normal floats (f16 with a few
// subnormals), at byte offset off.
func halfWeights(r *rand.Rand, dt dtype.DType, rows, cols, off int) []byte {
	buf := make([]byte, off+2*rows*cols)
	b := buf[off:]
	for i := 0; i < rows*cols; i++ {
		v := float32(r.NormFloat64())
		if i%17 == 5 {
			v *= 1e-6 // subnormal in f16
		}
		var h uint16
		if dt == dtype.F16 {
			h = dtype.F32ToF16(v)
		} else {
			h = dtype.F32ToBF16(v)
		}
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b[:len(b):len(b)]
}

// TestMatMulHalf: f16 and bf16 weights give, bit for bit, MatMul on the converted f32
// matrix (the same summation order), are within the f32 tolerance of the reference, write
// nothing outside the rows asked for, and do not depend on row ranges or batch size.
func TestMatMulHalf(t *testing.T) {
	requireASIMD(t)
	k := New()
	r := rand.New(rand.NewPCG(29, 30))
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
		for _, cols := range []int{1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 31, 33, 64, 67, 100} {
			for _, rows := range []int{1, 3, 4, 5, 8, 11, 13} {
				for _, T := range []int{1, 2, 3, 4, 5, 9, 35} {
					if T > 9 && (rows > 5 || cols > 33) {
						continue
					}
					data := halfWeights(r, dt, rows, cols, (rows+cols)%2)
					w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: data}
					wf, err := dtype.Dequantize(dt, data, cols)
					if err != nil {
						t.Fatal(err)
					}
					w32, err := kernels.NewMatF32(wf, rows, cols)
					if err != nil {
						t.Fatal(err)
					}
					_, x := place(randVec(r, T*cols, 1), 1)
					var bias []float32
					if (rows+T)%2 == 1 {
						bias = randVec(r, rows, 1)
					}
					ld := rows + T%3
					for _, rng := range [][2]int{{0, rows}, {1, rows}, {0, rows - 1}, {rows / 3, rows - rows/4}} {
						r0, r1 := rng[0], rng[1]
						if r0 >= r1 {
							continue
						}
						what := fmt.Sprintf("%v T=%d %dx%d [%d,%d) bias=%v", dt, T, rows, cols, r0, r1, bias != nil)
						want := guarded(T * ld)
						k.MatMul(want, ld, x, T, w32, bias, r0, r1, nil)
						got := guarded(T * ld)
						k.MatMul(got, ld, x, T, w, bias, r0, r1, nil)
						checkOut(t, what, got, want, ld, T, r0, r1)
						rf := guarded(T * ld)
						ref.MatMul(rf, ld, x, T, w, bias, r0, r1, nil)
						for tk := 0; tk < T; tk++ {
							for o := r0; o < r1; o++ {
								tol := 1e-5 * absDot(x[tk*cols:(tk+1)*cols], wf[o*cols:(o+1)*cols])
								if bias != nil {
									tol += 1e-5 * math.Abs(float64(bias[o]))
								}
								i := tk*ld + o
								if d := math.Abs(float64(got[i] - rf[i])); d > tol {
									t.Fatalf("%s: [%d,%d] = %v, reference %v", what, tk, o, got[i], rf[i])
								}
							}
						}
					}
					// Batch size: each token alone gives the same bits.
					whole := guarded(T * ld)
					k.MatMul(whole, ld, x, T, w, bias, 0, rows, nil)
					for tk := 0; tk < T; tk++ {
						one := guarded(rows)
						k.MatMul(one, rows, x[tk*cols:(tk+1)*cols], 1, w, bias, 0, rows, nil)
						for o := range one {
							if !sameBits(one[o], whole[tk*ld+o]) {
								t.Fatalf("%v %dx%d: token %d alone [%d] = %v, in a batch of %d %v", dt, rows, cols, tk, o, one[o], T, whole[tk*ld+o])
							}
						}
					}
				}
			}
		}
	}
}

// TestMatMulHalfPanics: short buffers panic before the assembly runs.
func TestMatMulHalfPanics(t *testing.T) {
	requireASIMD(t)
	k := New()
	r := rand.New(rand.NewPCG(31, 32))
	const rows, cols, T = 8, 20, 2
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
		data := halfWeights(r, dt, rows, cols, 0)
		w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: data}
		short := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: data[:len(data)-1]}
		x := randVec(r, T*cols, 1)
		for _, c := range []struct {
			name string
			f    func()
		}{
			{"short weights", func() { k.MatMul(make([]float32, T*rows), rows, x, T, short, nil, 0, rows, nil) }},
			{"short x", func() { k.MatMul(make([]float32, T*rows), rows, x[:len(x)-1], T, w, nil, 0, rows, nil) }},
			{"short dst", func() { k.MatMul(make([]float32, T*rows-1), rows, x, T, w, nil, 0, rows, nil) }},
			{"rows past the matrix", func() { k.MatMul(make([]float32, T*(rows+4)), rows+4, x, T, w, nil, 0, rows+4, nil) }},
			{"negative ld", func() { k.MatMul(make([]float32, T*rows), -1, x, T, w, nil, 0, rows, nil) }},
		} {
			if p := panicked(c.f); p == nil {
				t.Errorf("%v %s: no panic", dt, c.name)
			}
		}
	}
}

// TestMatHalfAsm calls matmulF16 and matmulBF16 directly with a row stride of 0 (the
// leftover rows' case) and larger than a row: every lane equals the strided rows' result.
func TestMatHalfAsm(t *testing.T) {
	requireASIMD(t)
	r := rand.New(rand.NewPCG(33, 34))
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
		f := matmulF16
		if dt == dtype.BF16 {
			f = matmulBF16
		}
		for _, n := range []int{4, 8, 12, 20, 36} {
			for _, T := range []int{1, 2, 3, 6} {
				const rows = 8
				stride := 2*n + 6
				wbuf := halfWeights(r, dt, rows, n+3, 1)[:(rows-1)*stride+2*n]
				x := randVec(r, T*n, 1)
				packed := make([]byte, rows*2*n)
				for i := 0; i < rows; i++ {
					copy(packed[i*2*n:(i+1)*2*n], wbuf[i*stride:])
				}
				want := make([]float32, T*rows)
				f(want, rows, x, T, packed, n, 2*n, rows)
				got := make([]float32, T*rows)
				f(got, rows, x, T, wbuf, n, stride, rows)
				for i := range want {
					if !sameBits(got[i], want[i]) {
						t.Fatalf("%v n=%d T=%d stride %d: [%d] = %v, packed %v", dt, n, T, stride, i, got[i], want[i])
					}
				}
				one := make([]float32, 4*T)
				f(one, 4, x, T, wbuf[:2*n], n, 0, 4)
				for tk := 0; tk < T; tk++ {
					for l := 0; l < 4; l++ {
						if !sameBits(one[4*tk+l], want[tk*rows]) {
							t.Fatalf("%v n=%d T=%d stride 0: token %d lane %d = %v, want %v", dt, n, T, tk, l, one[4*tk+l], want[tk*rows])
						}
					}
				}
			}
		}
	}
}

// Benchmarks: matrix–vector products (decode) and a 16-token product (prefill) with
// quantized and half-precision weights. Under qemu-user the numbers measure the
// emulator; run on arm64 hardware.

func benchQ8(b *testing.B, k kernels.Q8Kernels, dt dtype.DType, T, rows, cols int) {
	r := rand.New(rand.NewPCG(1, 1))
	w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: quantWeights(r, dt, rows, cols, 0)}
	xq := quantActs(r, T, cols, 0)
	dst := make([]float32, T*rows)
	b.SetBytes(int64(len(w.Data)))
	b.ResetTimer()
	for b.Loop() {
		k.MatMulQ8(dst, rows, xq, T, w, nil, 0, rows, nil)
	}
}

func benchHalf(b *testing.B, k kernels.Kernels, dt dtype.DType, T, rows, cols int) {
	r := rand.New(rand.NewPCG(1, 1))
	w := &kernels.Mat{DType: dt, Rows: rows, Cols: cols, Data: halfWeights(r, dt, rows, cols, 0)}
	x := randVec(r, T*cols, 1)
	dst := make([]float32, T*rows)
	b.SetBytes(int64(len(w.Data)))
	b.ResetTimer()
	for b.Loop() {
		k.MatMul(dst, rows, x, T, w, nil, 0, rows, nil)
	}
}

var benchShapes = [][2]int{{768, 768}, {4096, 4096}}

func BenchmarkMatVecQ8(b *testing.B) {
	requireASIMD(b)
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		for _, sh := range benchShapes {
			impls := map[string]kernels.Q8Kernels{"mull": Kernels{}, "generic": ref}
			if cpuid.CPU.Supports(cpuid.ASIMDDP) {
				impls["sdot"] = Kernels{dotProd: true}
			}
			for _, name := range []string{"sdot", "mull", "generic"} {
				k, ok := impls[name]
				if !ok {
					continue
				}
				b.Run(fmt.Sprintf("%v/%dx%d/%s", dt, sh[0], sh[1], name), func(b *testing.B) { benchQ8(b, k, dt, 1, sh[0], sh[1]) })
			}
		}
	}
}

func BenchmarkMatMulQ8T16(b *testing.B) {
	requireASIMD(b)
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		for _, k := range []kernels.Q8Kernels{New(), ref} {
			b.Run(fmt.Sprintf("%v/768x768/%s", dt, k.(kernels.Kernels).Name()), func(b *testing.B) { benchQ8(b, k, dt, 16, 768, 768) })
		}
	}
}

func BenchmarkMatVecHalf(b *testing.B) {
	requireASIMD(b)
	for _, dt := range []dtype.DType{dtype.F16, dtype.BF16} {
		for _, sh := range benchShapes {
			for _, k := range []kernels.Kernels{New(), ref} {
				b.Run(fmt.Sprintf("%v/%dx%d/%s", dt, sh[0], sh[1], k.Name()), func(b *testing.B) { benchHalf(b, k, dt, 1, sh[0], sh[1]) })
			}
		}
	}
}

func BenchmarkMatMulHalfT16(b *testing.B) {
	requireASIMD(b)
	for _, k := range []kernels.Kernels{New(), ref} {
		b.Run("f16/768x768/"+k.Name(), func(b *testing.B) { benchHalf(b, k, dtype.F16, 16, 768, 768) })
	}
}
