package dtype

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Weight storage types other than f32 (format/SPEC.md, "Data types"):
//
//	f16, bf16  one 2-byte value per element
//	q8_0       blocks of 32 elements: f16 scale d, then 32 int8 q;  x = d·q          (34 bytes)
//	q4_0       blocks of 32 elements: f16 scale d, then 16 bytes whose low nibbles are
//	           elements 0..15 and high nibbles elements 16..31;  x = d·(nibble − 8)  (18 bytes)
//
//	q4_k, q5_k, q6_k  super-blocks of 256 elements (kquant.go)
//
// The block layouts are ggml's, so GGUF tensors are used as they are, and the quantizers
// below reproduce ggml's reference quantizers bit for bit.

// Block sizes in bytes.
const (
	BlockQ8_0 = 34
	BlockQ4_0 = 18
)

// RowBytes returns the bytes one row of n elements of dtype dt takes. For the block types
// n must be a multiple of the block (DType.Block).
func RowBytes(dt DType, n int) int {
	elems, size := dt.Block()
	if elems == 0 {
		return 0
	}
	return n / elems * size
}

// DequantizeRow converts the len(dst) elements stored as dt in src to float32. For the
// block types len(dst) must be a multiple of the block (DType.Block).
func DequantizeRow(dt DType, src []byte, dst []float32) {
	switch dt {
	case F32:
		src = src[:4*len(dst)]
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case BF16:
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case Q8_0:
		for b := 0; b < len(dst)/QBlock; b++ {
			blk := src[b*BlockQ8_0 : (b+1)*BlockQ8_0]
			d := F16ToF32(binary.LittleEndian.Uint16(blk))
			out := dst[b*QBlock : (b+1)*QBlock]
			for j := range out {
				out[j] = float32(int8(blk[2+j])) * d
			}
		}
	case Q4_0:
		for b := 0; b < len(dst)/QBlock; b++ {
			blk := src[b*BlockQ4_0 : (b+1)*BlockQ4_0]
			d := F16ToF32(binary.LittleEndian.Uint16(blk))
			out := dst[b*QBlock : (b+1)*QBlock]
			for j := 0; j < 16; j++ {
				out[j] = float32(int(blk[2+j]&0x0f)-8) * d
				out[j+16] = float32(int(blk[2+j]>>4)-8) * d
			}
		}
	case Q4_K, Q5_K, Q6_K, Q8_K:
		dequantizeK(dt, src, dst)
	default:
		panic("dtype: DequantizeRow: unknown dtype " + dt.String())
	}
}

// QuantizeRow stores src as dt in dst, which must hold RowBytes(dt, len(src)) bytes:
// f32 as is, f16 and bf16 rounded to nearest even, q8_0 and q4_0 with ggml's reference
// quantizers (QuantizeRowQ8_0, QuantizeRowQ4_0), q8_k with QuantizeRowQ8_K. There is no
// quantizer into the k-quant storage types (DType.Quantizable): it panics for them.
func QuantizeRow(dt DType, src []float32, dst []byte) {
	switch dt {
	case F32:
		dst = dst[:4*len(src)]
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		dst = dst[:2*len(src)]
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
		}
	case BF16:
		dst = dst[:2*len(src)]
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
		}
	case Q8_0:
		QuantizeRowQ8_0(src, dst)
	case Q4_0:
		QuantizeRowQ4_0(src, dst)
	case Q8_K:
		QuantizeRowQ8_K(src, dst)
	default:
		panic("dtype: QuantizeRow: no quantizer for dtype " + dt.String())
	}
}

// QuantizeRowQ8_0 quantizes len(x) elements (a multiple of 32) to q8_0 blocks in dst,
// exactly as ggml's quantize_row_q8_0_ref: per block, amax = max |x|, d = amax/127 in
// float32, q = roundf(x · (1/d)) (ties away from zero; 0 when d is 0), and d is stored
// rounded to f16. The quotient uses the float32 d, not the stored one.
func QuantizeRowQ8_0(x []float32, dst []byte) {
	for b := 0; b < len(x)/QBlock; b++ {
		xb := x[b*QBlock : (b+1)*QBlock]
		blk := dst[b*BlockQ8_0 : (b+1)*BlockQ8_0]
		var amax float32
		for _, v := range xb {
			if a := abs32(v); !(amax > a) { // MAX(amax, fabsf(v))
				amax = a
			}
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(blk, F32ToF16(d))
		for j, v := range xb {
			blk[2+j] = byte(int8(math.Round(float64(float32(v * id)))))
		}
	}
}

// QuantizeRowQ4_0 quantizes len(x) elements (a multiple of 32) to q4_0 blocks in dst,
// exactly as ggml's quantize_row_q4_0_ref: per block, m is the element of largest
// magnitude with its sign (the first one on a tie), d = m/−8, id = 1/d (0 when d is 0),
// q = min(15, int8(x·id + 8.5)) truncated toward zero, and d is stored rounded to f16.
func QuantizeRowQ4_0(x []float32, dst []byte) {
	for b := 0; b < len(x)/QBlock; b++ {
		xb := x[b*QBlock : (b+1)*QBlock]
		blk := dst[b*BlockQ4_0 : (b+1)*BlockQ4_0]
		var amax, m float32
		for _, v := range xb {
			if amax < abs32(v) {
				amax = abs32(v)
				m = v
			}
		}
		d := m / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(blk, F32ToF16(d))
		for j := 0; j < 16; j++ {
			blk[2+j] = q4(xb[j], id) | q4(xb[16+j], id)<<4
		}
	}
}

// q4 is ggml's MIN(15, (int8_t)(x*id + 8.5f)); the explicit conversion keeps the compiler
// from fusing the multiply and the add.
func q4(x, id float32) byte {
	q := int8(float32(x*id) + 8.5)
	if q > 15 {
		q = 15
	}
	return byte(q)
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// Quantize converts a row-major tensor of len(src)/cols rows of cols elements to dt.
// The block types need cols to be a multiple of their block. The k-quants have no
// quantizer (DType.Quantizable) and give an error.
func Quantize(dt DType, src []float32, cols int) ([]byte, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("unknown dtype %d", uint32(dt))
	}
	if !dt.Quantizable() {
		return nil, fmt.Errorf("lmrun cannot quantize to %s (k-quants are read from GGUF files, not written)", dt)
	}
	if cols <= 0 || len(src)%cols != 0 {
		return nil, fmt.Errorf("%d elements are not rows of %d", len(src), cols)
	}
	if elems, _ := dt.Block(); cols%elems != 0 {
		return nil, fmt.Errorf("%s needs rows of a multiple of %d elements, got %d", dt, elems, cols)
	}
	rb := RowBytes(dt, cols)
	out := make([]byte, len(src)/cols*rb)
	for r := 0; r < len(src)/cols; r++ {
		QuantizeRow(dt, src[r*cols:(r+1)*cols], out[r*rb:(r+1)*rb])
	}
	return out, nil
}

// Dequantize converts a row-major tensor stored as dt, with rows of cols elements, to
// float32.
func Dequantize(dt DType, src []byte, cols int) ([]float32, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("unknown dtype %d", uint32(dt))
	}
	if elems, _ := dt.Block(); cols <= 0 || cols%elems != 0 {
		return nil, fmt.Errorf("%s rows of %d elements", dt, cols)
	}
	rb := RowBytes(dt, cols)
	if len(src)%rb != 0 {
		return nil, fmt.Errorf("%d bytes are not rows of %d %s elements", len(src), cols, dt)
	}
	rows := len(src) / rb
	out := make([]float32, rows*cols)
	for r := 0; r < rows; r++ {
		DequantizeRow(dt, src[r*rb:(r+1)*rb], out[r*cols:(r+1)*cols])
	}
	return out, nil
}
