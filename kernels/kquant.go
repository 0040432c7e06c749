package kernels

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lmrun/lmrun/dtype"
)

// The k-quant weights (q4_k, q5_k, q6_k: ggml's super-blocks of 256, dtype/kquant.go).
//
// With float32 activations (MatMul) a k-quant row is dequantized one super-block at a
// time (dtype.DequantizeRow, ggml's exact values) and multiplied as f32 rows are, with
// dot's four accumulators in dot's order: MatMul on k-quant weights equals MatMul on the
// dequantized f32 matrix bit for bit.
//
// With quantized activations (MatMulQ8) the activations are q8_k super-blocks
// (QuantizeQ8K), as llama.cpp quantizes them on CPU, and each row's dot product is
// ggml's generic C one (ggml_vec_dot_q4_K_q8_K, _q5_K_, _q6_K_ in ggml-cpu's quants.c),
// operation for operation. Per super-block i, with w the weight quants (q4_k, q5_k:
// 0..15 and 0..31; q6_k: −32..31), x the activation quants, sc and m the sub-blocks'
// scales and mins:
//
//	aux[l] = Σ_j sc_j · Σ_{e in sub-block j, e ≡ l mod 8} w_e·x_e   (l < 8; exact integers)
//	d      = float32(f16(d_w) · d_x)
//	sums[l] += float32(d · float32(aux[l]))                         (float32, per lane)
//	q4_k, q5_k only:
//	  mins  = Σ_{k<16} bsums_k · m_{k/2}                             (exact integer)
//	  sumf -= float32(float32(f16(dmin_w) · d_x) · float32(mins))
//
// and after the last super-block sumf += sums[0], …, sums[7] in that order (sumf starts
// at 0). Products are rounded to float32 before they are added (no fused multiply-add),
// so the result is the same on every machine. The integer sums are exact in int32 and
// each aux[l] below 2²⁴, so float32(aux[l]) is exact. A SIMD kernel reproduces the result
// by computing the same eight aux lanes (any order of integer additions) and the same
// float32 operations in the same order.

// dotQ4_K, dotQ5_K and dotQ6_K are MatMul's row dot products for k-quant weights.
func dotQ4_K(x []float32, w []byte) float32 { return dotK(dtype.Q4_K, x, w) }
func dotQ5_K(x []float32, w []byte) float32 { return dotK(dtype.Q5_K, x, w) }
func dotQ6_K(x []float32, w []byte) float32 { return dotK(dtype.Q6_K, x, w) }

// dotK is dot(x, the dequantized row w of dtype dt), summed exactly as dot sums.
func dotK(dt dtype.DType, x []float32, w []byte) float32 {
	var s0, s1, s2, s3 float32
	var v [dtype.QKBlock]float32
	_, bs := dt.Block()
	for b := 0; b < len(x)/dtype.QKBlock; b++ {
		dtype.DequantizeRow(dt, w[b*bs:(b+1)*bs], v[:])
		xb := x[b*dtype.QKBlock : (b+1)*dtype.QKBlock]
		for i := 0; i < dtype.QKBlock; i += 4 {
			s0 += xb[i] * v[i]
			s1 += xb[i+1] * v[i+1]
			s2 += xb[i+2] * v[i+2]
			s3 += xb[i+3] * v[i+3]
		}
	}
	return (s0 + s1) + (s2 + s3)
}

// QuantizeQ8K quantizes activations for MatMulQ8 on k-quant weights: len(x) elements (a
// multiple of 256) to q8_k super-blocks in dst (dtype.RowBytes(dtype.Q8_K, len(x))
// bytes), exactly as ggml's quantize_row_q8_K_ref (dtype.QuantizeRowQ8_K).
func QuantizeQ8K(x []float32, dst []byte) { dtype.QuantizeRowQ8_K(x, dst) }

// QuantizeQ8K implements Q8Kernels.
func (Reference) QuantizeQ8K(x []float32, dst []byte) { QuantizeQ8K(x, dst) }

// QuantizeQ8KWith is QuantizeQ8K with a backend's kernel for the super-blocks it can do:
// fast quantizes up to nb super-blocks from x to dst and returns how many it wrote,
// stopping before one it must leave to the reference (say, one holding a NaN); that one is
// quantized here and fast resumes after it. It panics, naming who, when dst is short.
func QuantizeQ8KWith(who string, x []float32, dst []byte, fast func(dst *byte, x *float32, nb int) int) {
	nb := len(x) / dtype.QKBlock
	if len(dst) < nb*dtype.BlockQ8_K {
		panic(fmt.Sprintf("%s: QuantizeQ8K of %d floats into %d bytes", who, len(x), len(dst)))
	}
	for b := 0; b < nb; {
		b += fast(&dst[b*dtype.BlockQ8_K], &x[b*dtype.QKBlock], nb-b)
		if b < nb {
			dtype.QuantizeRowQ8_K(x[b*dtype.QKBlock:(b+1)*dtype.QKBlock], dst[b*dtype.BlockQ8_K:(b+1)*dtype.BlockQ8_K])
			b++
		}
	}
}

// kRow is one row of k-quant weights times one row of q8_k activations: nb super-blocks.
func kRow(dt dtype.DType, w, x []byte, nb int) float32 {
	switch dt {
	case dtype.Q4_K:
		return dotQ4_KQ8_K(w, x, nb, false)
	case dtype.Q5_K:
		return dotQ4_KQ8_K(w, x, nb, true)
	}
	return dotQ6_KQ8_K(w, x, nb)
}

// q8k returns the scale, quants and 16 sums of the q8_k super-block at b.
func q8k(b []byte) (d float32, q []byte, sums []byte) {
	return math.Float32frombits(binary.LittleEndian.Uint32(b)), b[4 : 4+dtype.QKBlock], b[4+dtype.QKBlock : dtype.BlockQ8_K]
}

// dotQ4_KQ8_K is ggml_vec_dot_q4_K_q8_K (q5 false) or ggml_vec_dot_q5_K_q8_K (q5 true).
func dotQ4_KQ8_K(w, x []byte, nb int, q5 bool) float32 {
	bs := dtype.BlockQ4_K
	if q5 {
		bs = dtype.BlockQ5_K
	}
	var sums [8]float32
	var sumf float32
	for i := 0; i < nb; i++ {
		wb := w[i*bs : (i+1)*bs]
		dx, xq, bsums := q8k(x[i*dtype.BlockQ8_K : (i+1)*dtype.BlockQ8_K])
		scales := wb[4:16]
		var qh, qs []byte
		if q5 {
			qh, qs = wb[16:48], wb[48:dtype.BlockQ5_K]
		} else {
			qs = wb[16:dtype.BlockQ4_K]
		}
		var aux [8]int32
		var mins int32
		for j := 0; j < 8; j++ {
			sc, m := dtype.ScaleMinK4(j, scales)
			mins += int32(m) * (int32(int16(binary.LittleEndian.Uint16(bsums[4*j:]))) +
				int32(int16(binary.LittleEndian.Uint16(bsums[4*j+2:]))))
			q := qs[32*(j/2) : 32*(j/2)+32]
			xs := xq[32*j : 32*j+32]
			shift := 4 * uint(j%2)
			for l := 0; l < 8; l++ {
				var s int32
				for g := l; g < 32; g += 8 {
					wq := int32(q[g] >> shift & 0xf)
					if q5 && qh[g]>>uint(j)&1 != 0 {
						wq += 16
					}
					s += wq * int32(int8(xs[g]))
				}
				aux[l] += int32(sc) * s
			}
		}
		d := float32(dtype.F16ToF32(binary.LittleEndian.Uint16(wb)) * dx)
		for l := range sums {
			sums[l] += float32(d * float32(aux[l]))
		}
		dmin := float32(dtype.F16ToF32(binary.LittleEndian.Uint16(wb[2:])) * dx)
		sumf -= float32(dmin * float32(mins))
	}
	for _, s := range sums {
		sumf += s
	}
	return sumf
}

// dotQ6_KQ8_K is ggml_vec_dot_q6_K_q8_K.
func dotQ6_KQ8_K(w, x []byte, nb int) float32 {
	var sums [8]float32
	for i := 0; i < nb; i++ {
		wb := w[i*dtype.BlockQ6_K : (i+1)*dtype.BlockQ6_K]
		dx, xq, _ := q8k(x[i*dtype.BlockQ8_K : (i+1)*dtype.BlockQ8_K])
		var aux [8]int32
		for h := 0; h < 2; h++ { // halves of 128: four quarters of 32, two sub-blocks each
			ql, qh := wb[64*h:64*h+64], wb[128+32*h:128+32*h+32]
			for quarter := 0; quarter < 4; quarter++ {
				lo := ql[32*(quarter%2) : 32*(quarter%2)+32]
				shift := 4 * uint(quarter/2)
				for half := 0; half < 2; half++ { // sub-block of 16
					sb := 8*h + 2*quarter + half
					sc := int32(int8(wb[192+sb]))
					xs := xq[16*sb : 16*sb+16]
					for l := 0; l < 8; l++ {
						var s int32
						for g := l; g < 16; g += 8 {
							e := 16*half + g // within the quarter
							q := int32(lo[e]>>shift&0xf|(qh[e]>>(2*uint(quarter))&3)<<4) - 32
							s += q * int32(int8(xs[g]))
						}
						aux[l] += sc * s
					}
				}
			}
		}
		d := float32(dtype.F16ToF32(binary.LittleEndian.Uint16(wb[208:])) * dx)
		for l := range sums {
			sums[l] += float32(d * float32(aux[l]))
		}
	}
	var sumf float32
	for _, s := range sums {
		sumf += s
	}
	return sumf
}
