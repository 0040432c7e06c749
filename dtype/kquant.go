package dtype

import (
	"encoding/binary"
	"math"
)

// The k-quants are ggml's super-block types (format/SPEC.md, "Data types"). A row is a
// sequence of super-blocks of QKBlock = 256 elements, little-endian:
//
//	q4_k (144 bytes)  f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins, 128 bytes
//	                  of nibbles; 8 sub-blocks of 32: x = d·sc·q − dmin·m
//	q5_k (176 bytes)  f16 d, f16 dmin, 12 bytes of scales and mins, 32 bytes of fifth
//	                  bits qh, 128 bytes of low nibbles; x = d·sc·q − dmin·m, q < 32
//	q6_k (210 bytes)  128 bytes of low nibbles ql, 64 bytes of 2-bit highs qh, 16 int8
//	                  scales, f16 d; 16 sub-blocks of 16: x = d·sc·(q − 32)
//	q8_k (292 bytes)  f32 d, 256 int8 q, 16 int16 sums of 16 consecutive q; x = d·q
//
// In q4_k and q5_k each run of 64 elements is two sub-blocks: the low nibbles of 32
// bytes are the first, their high nibbles the second. In q6_k each half of 128 elements
// reads 64 bytes of ql and 32 of qh: element l (l < 32) of its four quarters is ql[l]'s
// low nibble, ql[l+32]'s low nibble, ql[l]'s high nibble and ql[l+32]'s high nibble,
// with bits 0–1, 2–3, 4–5 and 6–7 of qh[l] above them.
//
// Dequantization is ggml's (dequantize_row_q4_K, _q5_K, _q6_K) bit for bit: every
// product is rounded to float32 where ggml's C rounds it, and the explicit conversions
// keep Go from fusing a multiply and an add on the architectures where it may. (For q4_k
// and q5_k the product d·sc·q is in fact exact in float32 — an f16 mantissa of 11 bits
// times 6 and 5 bits — so a fused d1·q − m1 could not differ; q6_k's (d·sc)·q is
// rounded, but nothing is added to it.)

// Super-block sizes in bytes.
const (
	BlockQ4_K = 144
	BlockQ5_K = 176
	BlockQ6_K = 210
	BlockQ8_K = 4 + QKBlock + 2*QKBlock/16
)

// ScaleMinK4 returns the 6-bit scale and min of sub-block j (< 8) from the 12 packed
// bytes s of a q4_k or q5_k super-block (ggml's get_scale_min_k4): j < 4 takes the low
// six bits of s[j] and s[j+4]; j ≥ 4 the nibbles of s[j+4] below the top two bits of
// s[j−4] and s[j].
func ScaleMinK4(j int, s []byte) (sc, m uint8) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&0xf | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

// dequantizeK is DequantizeRow for q4_k, q5_k, q6_k and q8_k.
func dequantizeK(dt DType, src []byte, dst []float32) {
	_, size := dt.Block()
	for b := 0; b < len(dst)/QKBlock; b++ {
		blk := src[b*size : (b+1)*size]
		out := dst[b*QKBlock : (b+1)*QKBlock]
		switch dt {
		case Q4_K:
			dequantQ4_K(blk, out)
		case Q5_K:
			dequantQ5_K(blk, out)
		case Q6_K:
			dequantQ6_K(blk, out)
		case Q8_K:
			d := math.Float32frombits(binary.LittleEndian.Uint32(blk))
			for j, q := range blk[4 : 4+QKBlock] {
				out[j] = d * float32(int8(q))
			}
		}
	}
}

func dequantQ4_K(blk []byte, out []float32) {
	d := F16ToF32(binary.LittleEndian.Uint16(blk))
	dmin := F16ToF32(binary.LittleEndian.Uint16(blk[2:]))
	scales, qs := blk[4:16], blk[16:BlockQ4_K]
	for j := 0; j < 4; j++ {
		sc0, m0 := ScaleMinK4(2*j, scales)
		sc1, m1 := ScaleMinK4(2*j+1, scales)
		d0, min0 := d*float32(sc0), dmin*float32(m0)
		d1, min1 := d*float32(sc1), dmin*float32(m1)
		q := qs[32*j : 32*j+32]
		o := out[64*j : 64*j+64]
		for l, b := range q {
			o[l] = float32(d0*float32(b&0xf)) - min0
			o[32+l] = float32(d1*float32(b>>4)) - min1
		}
	}
}

func dequantQ5_K(blk []byte, out []float32) {
	d := F16ToF32(binary.LittleEndian.Uint16(blk))
	dmin := F16ToF32(binary.LittleEndian.Uint16(blk[2:]))
	scales, qh, qs := blk[4:16], blk[16:48], blk[48:BlockQ5_K]
	for j := 0; j < 4; j++ {
		sc0, m0 := ScaleMinK4(2*j, scales)
		sc1, m1 := ScaleMinK4(2*j+1, scales)
		d0, min0 := d*float32(sc0), dmin*float32(m0)
		d1, min1 := d*float32(sc1), dmin*float32(m1)
		q := qs[32*j : 32*j+32]
		o := out[64*j : 64*j+64]
		for l, b := range q {
			h := qh[l] >> (2 * j)
			o[l] = float32(d0*float32(b&0xf|(h&1)<<4)) - min0
			o[32+l] = float32(d1*float32(b>>4|(h&2)<<3)) - min1
		}
	}
}

func dequantQ6_K(blk []byte, out []float32) {
	d := F16ToF32(binary.LittleEndian.Uint16(blk[208:]))
	for n := 0; n < 2; n++ {
		ql, qh := blk[64*n:64*n+64], blk[128+32*n:128+32*n+32]
		sc := blk[192+8*n : 192+8*n+8]
		o := out[128*n : 128*n+128]
		for l := 0; l < 32; l++ {
			is := l / 16
			h := qh[l]
			q1 := int8(ql[l]&0xf|(h&3)<<4) - 32
			q2 := int8(ql[l+32]&0xf|(h>>2&3)<<4) - 32
			q3 := int8(ql[l]>>4|(h>>4&3)<<4) - 32
			q4 := int8(ql[l+32]>>4|(h>>6)<<4) - 32
			o[l] = float32(d*float32(int8(sc[is]))) * float32(q1)
			o[l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
			o[l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
			o[l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
		}
	}
}

// QuantizeRowQ8_K quantizes len(x) elements (a multiple of QKBlock) to q8_k super-blocks
// in dst, exactly as ggml's quantize_row_q8_K_ref: per super-block, max is the element of
// largest magnitude with its sign (the first on a tie; NaNs are never it); a block whose
// max is 0 gets d = 0 and all q 0; otherwise iscale = −127/max in float32,
// q = min(127, nearest_int(iscale·x)) stored as int8, d = 1/iscale, and each of the 16
// sums is that of 16 consecutive q. nearest_int is ggml's: the bits of the float32 sum
// iscale·x + 12582912 (2²³ + 2²²), masked to 23 bits, less 2²² — round to nearest even for
// |iscale·x| < 2²², and some defined value for the rest (NaN gives 0 for the default NaN).
// ggml leaves the sums of a zero block unwritten; here they are 0.
//
// (Before ggml's IQ2_XXS, iscale was −128/max; ggml changed it to −127/max, and so q
// stays within ±127.)
func QuantizeRowQ8_K(x []float32, dst []byte) {
	for b := 0; b < len(x)/QKBlock; b++ {
		xb := x[b*QKBlock : (b+1)*QKBlock]
		blk := dst[b*BlockQ8_K : (b+1)*BlockQ8_K]
		var amax, m float32
		for _, v := range xb {
			if a := abs32(v); a > amax {
				amax, m = a, v
			}
		}
		qs := blk[4 : 4+QKBlock]
		if amax == 0 {
			clear(blk)
			continue
		}
		iscale := -127 / m
		for j, v := range xb {
			q := nearestInt(float32(iscale * v))
			if q > 127 {
				q = 127
			}
			qs[j] = byte(int8(q))
		}
		for j := 0; j < QKBlock/16; j++ {
			var s int16
			for _, q := range qs[16*j : 16*j+16] {
				s += int16(int8(q))
			}
			binary.LittleEndian.PutUint16(blk[4+QKBlock+2*j:], uint16(s))
		}
		binary.LittleEndian.PutUint32(blk, math.Float32bits(1/iscale))
	}
}

// nearestInt is ggml's nearest_int: round to nearest even through the bits of a float32
// sum (exact for |f| < 2²²).
func nearestInt(f float32) int32 {
	v := f + 12582912
	return int32(math.Float32bits(v)&0x007fffff) - 0x00400000
}
