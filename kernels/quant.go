package kernels

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/lmrun/lmrun/dtype"
)

// NewMat wraps a row-major [rows, cols] matrix stored as dt in data (which it aliases),
// checking the size. It does not read data: a weight matrix mapped from a file stays on
// disk until a kernel first multiplies with it (Q8Sym and F16Finite scan it then).
func NewMat(dt dtype.DType, data []byte, rows, cols int) (*Mat, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("matrix of unknown dtype %d", uint32(dt))
	}
	size, err := dt.ByteSize([]int{rows, cols})
	if err != nil {
		return nil, fmt.Errorf("%s matrix %d×%d: %w", dt, rows, cols, err)
	}
	if int64(len(data)) != size {
		return nil, fmt.Errorf("%s matrix %d×%d needs %d bytes, got %d", dt, rows, cols, size, len(data))
	}
	m := &Mat{DType: dt, Rows: rows, Cols: cols, Data: data}
	switch dt {
	case dtype.F32:
		m.F32 = dtype.BytesToF32(data)
	case dtype.Q8_0, dtype.F16:
		m.facts = &matFacts{}
	}
	return m, nil
}

// matFacts are properties of a matrix's data that take a read of all of it, computed
// once, by the first caller; the others wait for it. After done is set they are only
// read, so the check on every kernel call is one atomic load and allocates nothing.
type matFacts struct {
	done      atomic.Bool
	mu        sync.Mutex
	q8Sym     bool
	f16Finite bool
}

// get returns f once it describes m's data.
func (f *matFacts) get(m *Mat) *matFacts {
	if f.done.Load() {
		return f
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.done.Load() {
		switch m.DType {
		case dtype.Q8_0:
			f.q8Sym = !hasQuantMin(m.Data)
		case dtype.F16:
			f.f16Finite = !hasF16NonFinite(m.Data)
		}
		f.done.Store(true)
	}
	return f
}

// hasF16NonFinite reports whether the binary16 values in data include an infinity or a
// NaN (all five exponent bits set), four values per 64-bit word, four words at a time
// (10-12 GB/s on a Zen 5 core, about 8x the one-word loop: the scan on first use costs
// about a read of the matrix).
func hasF16NonFinite(data []byte) bool {
	const (
		exp  = 0x7c007c007c007c00
		ones = 0x0001000100010001
		tops = 0x8000800080008000
	)
	// A lane of y is zero exactly when its exponent is all ones; the classic zero-lane
	// test finds one (exactly, though not always which).
	zero := func(w uint64) uint64 {
		y := w&exp ^ exp
		return (y - ones) &^ y
	}
	i := 0
	for ; i+32 <= len(data); i += 32 {
		d := data[i : i+32]
		if (zero(binary.LittleEndian.Uint64(d))|zero(binary.LittleEndian.Uint64(d[8:]))|
			zero(binary.LittleEndian.Uint64(d[16:]))|zero(binary.LittleEndian.Uint64(d[24:])))&tops != 0 {
			return true
		}
	}
	for ; i+8 <= len(data); i += 8 {
		if zero(binary.LittleEndian.Uint64(data[i:]))&tops != 0 {
			return true
		}
	}
	for ; i+2 <= len(data); i += 2 {
		if binary.LittleEndian.Uint16(data[i:])&0x7c00 == 0x7c00 {
			return true
		}
	}
	return false
}

// hasQuantMin reports whether q8_0 blocks hold a quant of −128 (0x80). It finds the
// candidates with bytes.IndexByte, so scanning a model costs about one memory read of it.
func hasQuantMin(data []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], 0x80)
		if j < 0 {
			return false
		}
		i += j
		if i%dtype.BlockQ8_0 >= 2 { // past the block's f16 scale
			return true
		}
		i++
	}
}

// RowF32 writes row r of m, converted to float32, to dst[:m.Cols] (an embedding lookup).
func (m *Mat) RowF32(r int, dst []float32) {
	dst = dst[:m.Cols]
	if m.DType == dtype.F32 && m.F32 != nil {
		copy(dst, m.F32[r*m.Cols:(r+1)*m.Cols])
		return
	}
	rb := dtype.RowBytes(m.DType, m.Cols)
	dtype.DequantizeRow(m.DType, m.Data[r*rb:(r+1)*rb], dst)
}

// QuantizeQ8 quantizes activations for MatMulQ8: len(x) elements (a multiple of 32) to
// q8_0 blocks in dst (dtype.RowBytes(dtype.Q8_0, len(x)) bytes). It is ggml's
// quantize_row_q8_0 in its reference form, the same arithmetic as dtype.QuantizeRowQ8_0 (ggml's
// AVX2 variant computes 127/amax and rounds ties to even, which can differ in the last
// unit of a few q; lmrun's fast paths must reproduce this function instead).
func QuantizeQ8(x []float32, dst []byte) { dtype.QuantizeRowQ8_0(x, dst) }

// ActivationDType returns the type MatMulQ8 takes its activations in for weights of
// dtype dt: q8_k super-blocks (QuantizeQ8K) for the k-quants, as llama.cpp's CPU
// backend does, q8_0 blocks (QuantizeQ8) for every other dtype.
func ActivationDType(dt dtype.DType) dtype.DType {
	if dt.KQuant() {
		return dtype.Q8_K
	}
	return dtype.Q8_0
}

// QuantizeActivations quantizes x with q's quantizer for ActivationDType(wdt) into dst
// (dtype.RowBytes of that type and len(x) bytes): the activations of a MatMulQ8 on
// weights of dtype wdt.
func QuantizeActivations(q Q8Kernels, wdt dtype.DType, x []float32, dst []byte) {
	if ActivationDType(wdt) == dtype.Q8_K {
		q.QuantizeQ8K(x, dst)
		return
	}
	q.QuantizeQ8(x, dst)
}

// Q8Kernels is implemented by backends that multiply block-quantized weights with
// quantized activations (Reference implements it). It is a separate interface so that
// backends without an integer path need not provide one.
//
// The activations of a product come in the format ActivationDType(w.DType) names: q8_0
// blocks of 32 for q8_0 and q4_0 weights (and f32, f16, bf16), q8_k super-blocks of 256
// for the k-quants. The caller quantizes each token's activations once per product
// (QuantizeActivations picks the quantizer), and a backend's quantizers write the
// package's bytes exactly, so a backend's MatMulQ8 sees the same input as Reference's.
type Q8Kernels interface {
	// MatMulQ8 is MatMul with quantized activations: xq holds T rows of
	// dtype.RowBytes(ActivationDType(w.DType), w.Cols) bytes, from QuantizeQ8 or
	// QuantizeQ8K; w.Cols must be a multiple of the activation block (32 or 256). For
	// t < T and r0 ≤ r < r1 it computes dst[t*ld + r], plus bias[r] when bias is not nil,
	// as
	//   q8_0, q4_0 weights:   Σ over blocks b of float32(Σ_j wq_j·xq_j) · (dw·dx)
	//                         (an exact integer sum), accumulated in float32 in block order
	//   f32, f16, bf16:       Σ over blocks b of (Σ_j w_j·float32(xq_j)) · dx, likewise
	//   q4_k, q5_k, q6_k:     ggml's generic k-quant dot product with q8_k (kquant.go)
	// scratch holds at least ScratchSize(T, w.Cols) floats (the backend's
	// Kernels.ScratchSize). As for MatMul, row t of the result depends only on row t of
	// xq, on w and on bias — bit for bit, not on T, the other rows, or the row range.
	MatMulQ8(dst []float32, ld int, xq []byte, T int, w *Mat, bias []float32, r0, r1 int, scratch Scratch)

	// QuantizeQ8 quantizes x to q8_0 blocks in dst, byte for byte as the package's
	// QuantizeQ8 does (len(x) a multiple of 32, len(dst) at least dtype.RowBytes(Q8_0, len(x))).
	QuantizeQ8(x []float32, dst []byte)

	// QuantizeQ8K quantizes x to q8_k super-blocks in dst, byte for byte as the package's
	// QuantizeQ8K does (len(x) a multiple of 256, len(dst) at least
	// dtype.RowBytes(Q8_K, len(x))).
	QuantizeQ8K(x []float32, dst []byte)
}

var _ Q8Kernels = Reference{}

// QuantizeQ8 implements Q8Kernels.
func (Reference) QuantizeQ8(x []float32, dst []byte) { QuantizeQ8(x, dst) }

// QuantizeQ8With is QuantizeQ8 with a backend's kernel for the blocks it can do: fast
// quantizes up to nb blocks from x to dst and returns how many it wrote, stopping before
// a block it must leave to the reference (say, one holding a NaN); that block is
// quantized here and fast resumes after it. It panics, naming who, when dst is short.
func QuantizeQ8With(who string, x []float32, dst []byte, fast func(dst *byte, x *float32, nb int) int) {
	nb := len(x) / dtype.QBlock
	if len(dst) < nb*dtype.BlockQ8_0 {
		panic(fmt.Sprintf("%s: QuantizeQ8 of %d floats into %d bytes", who, len(x), len(dst)))
	}
	for b := 0; b < nb; {
		b += fast(&dst[b*dtype.BlockQ8_0], &x[b*dtype.QBlock], nb-b)
		if b < nb {
			dtype.QuantizeRowQ8_0(x[b*dtype.QBlock:(b+1)*dtype.QBlock], dst[b*dtype.BlockQ8_0:(b+1)*dtype.BlockQ8_0])
			b++
		}
	}
}

// matRow returns the bytes of row r of w.
func matRow(w *Mat, r int) []byte {
	rb := dtype.RowBytes(w.DType, w.Cols)
	return w.Data[r*rb : (r+1)*rb]
}

// MatMulQ8 implements Q8Kernels. For q8_0 and q4_0 weights its error against MatMul on
// the unquantized activations comes from the activations' rounding alone: per block,
// |x − d16·q| ≤ d·(1/2 + 127·2⁻¹¹) with d = amax/127, so |Δ| ≤ Σ_b 0.57·d_b·Σ_{j∈b}|w_j|
// plus float32 rounding. For the k-quants (q8_k's d is a float32, not rounded to f16) a
// super-block's activations are within d/2 of x, d = max|x|/127 over 256 values.
func (Reference) MatMulQ8(dst []float32, ld int, xq []byte, T int, w *Mat, bias []float32, r0, r1 int, _ Scratch) {
	n := w.Cols
	if w.DType.KQuant() {
		xb := dtype.RowBytes(dtype.Q8_K, n)
		for row := r0; row < r1; row++ {
			wr := matRow(w, row)
			var b float32
			if bias != nil {
				b = bias[row]
			}
			for t := 0; t < T; t++ {
				dst[t*ld+row] = kRow(w.DType, wr, xq[t*xb:(t+1)*xb], n/dtype.QKBlock) + b
			}
		}
		return
	}
	xb := dtype.RowBytes(dtype.Q8_0, n)
	nb := n / dtype.QBlock
	for row := r0; row < r1; row++ {
		wr := matRow(w, row)
		var b float32
		if bias != nil {
			b = bias[row]
		}
		for t := 0; t < T; t++ {
			x := xq[t*xb : (t+1)*xb]
			var sum float32
			for blk := 0; blk < nb; blk++ {
				xbk := x[blk*dtype.BlockQ8_0 : (blk+1)*dtype.BlockQ8_0]
				dx := dtype.F16ToF32(binary.LittleEndian.Uint16(xbk))
				qx := xbk[2:]
				switch w.DType {
				case dtype.Q8_0:
					wbk := wr[blk*dtype.BlockQ8_0 : (blk+1)*dtype.BlockQ8_0]
					dw := dtype.F16ToF32(binary.LittleEndian.Uint16(wbk))
					var s int32
					for j, q := range wbk[2:] {
						s += int32(int8(q)) * int32(int8(qx[j]))
					}
					sum += float32(float32(s) * float32(dw*dx))
				case dtype.Q4_0:
					wbk := wr[blk*dtype.BlockQ4_0 : (blk+1)*dtype.BlockQ4_0]
					dw := dtype.F16ToF32(binary.LittleEndian.Uint16(wbk))
					var s int32
					for j, q := range wbk[2:] {
						s += (int32(q&0x0f)-8)*int32(int8(qx[j])) + (int32(q>>4)-8)*int32(int8(qx[j+16]))
					}
					sum += float32(float32(s) * float32(dw*dx))
				default:
					var s float32
					for j := 0; j < dtype.QBlock; j++ {
						s += float32(weight(w.DType, wr, blk*dtype.QBlock+j) * float32(int8(qx[j])))
					}
					sum += float32(s * dx)
				}
			}
			dst[t*ld+row] = sum + b
		}
	}
}

// weight returns element i of a row of f32, f16 or bf16 weights.
func weight(dt dtype.DType, row []byte, i int) float32 {
	switch dt {
	case dtype.F16:
		return dtype.F16ToF32(binary.LittleEndian.Uint16(row[2*i:]))
	case dtype.BF16:
		return dtype.BF16ToF32(binary.LittleEndian.Uint16(row[2*i:]))
	}
	return math.Float32frombits(binary.LittleEndian.Uint32(row[4*i:]))
}

// The dot products of MatMul for each weight dtype. Each is dot(x, dequantized row) with
// the same four accumulators in the same order, so MatMul on any dtype equals MatMul on
// the dequantized f32 matrix bit for bit.

func dotF16(x []float32, w []byte) float32 {
	w = w[:2*len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * dtype.F16ToF32(binary.LittleEndian.Uint16(w[2*i:]))
		s1 += x[i+1] * dtype.F16ToF32(binary.LittleEndian.Uint16(w[2*i+2:]))
		s2 += x[i+2] * dtype.F16ToF32(binary.LittleEndian.Uint16(w[2*i+4:]))
		s3 += x[i+3] * dtype.F16ToF32(binary.LittleEndian.Uint16(w[2*i+6:]))
	}
	for ; i < len(x); i++ {
		s0 += x[i] * dtype.F16ToF32(binary.LittleEndian.Uint16(w[2*i:]))
	}
	return (s0 + s1) + (s2 + s3)
}

func dotBF16(x []float32, w []byte) float32 {
	w = w[:2*len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * dtype.BF16ToF32(binary.LittleEndian.Uint16(w[2*i:]))
		s1 += x[i+1] * dtype.BF16ToF32(binary.LittleEndian.Uint16(w[2*i+2:]))
		s2 += x[i+2] * dtype.BF16ToF32(binary.LittleEndian.Uint16(w[2*i+4:]))
		s3 += x[i+3] * dtype.BF16ToF32(binary.LittleEndian.Uint16(w[2*i+6:]))
	}
	for ; i < len(x); i++ {
		s0 += x[i] * dtype.BF16ToF32(binary.LittleEndian.Uint16(w[2*i:]))
	}
	return (s0 + s1) + (s2 + s3)
}

func dotQ8_0(x []float32, w []byte) float32 {
	var s0, s1, s2, s3 float32
	for b := 0; b < len(x)/dtype.QBlock; b++ {
		blk := w[b*dtype.BlockQ8_0 : (b+1)*dtype.BlockQ8_0]
		d := dtype.F16ToF32(binary.LittleEndian.Uint16(blk))
		q := blk[2:]
		xb := x[b*dtype.QBlock : (b+1)*dtype.QBlock]
		for j := 0; j < dtype.QBlock; j += 4 {
			s0 += xb[j] * float32(float32(int8(q[j]))*d)
			s1 += xb[j+1] * float32(float32(int8(q[j+1]))*d)
			s2 += xb[j+2] * float32(float32(int8(q[j+2]))*d)
			s3 += xb[j+3] * float32(float32(int8(q[j+3]))*d)
		}
	}
	return (s0 + s1) + (s2 + s3)
}

func dotQ4_0(x []float32, w []byte) float32 {
	var s0, s1, s2, s3 float32
	lo := func(q byte, d float32) float32 { return float32(float32(int(q&0x0f)-8) * d) }
	hi := func(q byte, d float32) float32 { return float32(float32(int(q>>4)-8) * d) }
	for b := 0; b < len(x)/dtype.QBlock; b++ {
		blk := w[b*dtype.BlockQ4_0 : (b+1)*dtype.BlockQ4_0]
		d := dtype.F16ToF32(binary.LittleEndian.Uint16(blk))
		q := blk[2:]
		xb := x[b*dtype.QBlock : (b+1)*dtype.QBlock]
		for j := 0; j < 16; j += 4 {
			s0 += xb[j] * lo(q[j], d)
			s1 += xb[j+1] * lo(q[j+1], d)
			s2 += xb[j+2] * lo(q[j+2], d)
			s3 += xb[j+3] * lo(q[j+3], d)
		}
		for j := 0; j < 16; j += 4 {
			s0 += xb[16+j] * hi(q[j], d)
			s1 += xb[16+j+1] * hi(q[j+1], d)
			s2 += xb[16+j+2] * hi(q[j+2], d)
			s3 += xb[16+j+3] * hi(q[j+3], d)
		}
	}
	return (s0 + s1) + (s2 + s3)
}
