package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
)

// randKQuant returns rows×cols random k-quant weights of dtype dt: random bytes, with the
// f16 scales set to moderate finite values.
func randKQuant(rng *rand.Rand, dt dtype.DType, rows, cols int) []byte {
	_, bs := dt.Block()
	b := make([]byte, rows*cols/dtype.QKBlock*bs)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	half := func() uint16 { return uint16(rng.IntN(2))<<15 | uint16(8+rng.IntN(8))<<10 | uint16(rng.IntN(1024)) }
	for o := 0; o < len(b); o += bs {
		if dt == dtype.Q6_K {
			binary.LittleEndian.PutUint16(b[o+208:], half())
			continue
		}
		binary.LittleEndian.PutUint16(b[o:], half()&0x7fff)
		binary.LittleEndian.PutUint16(b[o+2:], half()&0x7fff)
	}
	return b
}

// The transcriptions below follow ggml's generic C (ggml-cpu quants.c:
// ggml_vec_dot_q4_K_q8_K_generic, _q5_K_, _q6_K_) line by line — the aux8/aux16/aux32
// arrays, the utmp mask unpacking of the scales — independently of kquant.go.

func ggmlUnpackScales(s []byte) (scales, mins [8]uint8) {
	const kmask1, kmask2, kmask3 = 0x3f3f3f3f, 0x0f0f0f0f, 0x03030303
	var utmp [4]uint32
	for i := 0; i < 3; i++ {
		utmp[i] = binary.LittleEndian.Uint32(s[4*i:])
	}
	utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4)
	uaux := utmp[1] & kmask1
	utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4)
	utmp[2] = uaux
	utmp[0] &= kmask1
	var b [16]byte
	for i, u := range utmp {
		binary.LittleEndian.PutUint32(b[4*i:], u)
	}
	copy(scales[:], b[:8])
	copy(mins[:], b[8:])
	return scales, mins
}

func ggmlQ8K(y []byte) (d float32, qs []int8, bsums []int16) {
	d = math.Float32frombits(binary.LittleEndian.Uint32(y))
	qs = make([]int8, 256)
	for i := range qs {
		qs[i] = int8(y[4+i])
	}
	bsums = make([]int16, 16)
	for i := range bsums {
		bsums[i] = int16(binary.LittleEndian.Uint16(y[260+2*i:]))
	}
	return d, qs, bsums
}

func ggmlVecDotQ45K(n int, vx, vy []byte, q5 bool) float32 {
	bs := 144
	if q5 {
		bs = 176
	}
	nb := n / 256
	var aux8 [256]int8
	var aux16 [8]int16
	var sums [8]float32
	var aux32 [8]int32
	var sumf float32
	for i := 0; i < nb; i++ {
		x := vx[i*bs : (i+1)*bs]
		yd, q8, bsums := ggmlQ8K(vy[i*292 : (i+1)*292])
		var q4, hm []byte
		if q5 {
			hm, q4 = x[16:48], x[48:176]
		} else {
			q4 = x[16:144]
		}
		aux32 = [8]int32{}
		a := aux8[:]
		m := uint8(1)
		for j := 0; j < 4; j++ {
			for l := 0; l < 32; l++ {
				a[l] = int8(q4[l] & 0xF)
			}
			if q5 {
				for l := 0; l < 32; l++ {
					if hm[l]&m != 0 {
						a[l] += 16
					}
				}
				m <<= 1
			}
			a = a[32:]
			for l := 0; l < 32; l++ {
				a[l] = int8(q4[l] >> 4)
			}
			if q5 {
				for l := 0; l < 32; l++ {
					if hm[l]&m != 0 {
						a[l] += 16
					}
				}
				m <<= 1
			}
			a = a[32:]
			q4 = q4[32:]
		}
		scales, mins := ggmlUnpackScales(x[4:16])
		sumi := 0
		for j := 0; j < 16; j++ {
			sumi += int(bsums[j]) * int(mins[j/2])
		}
		a = aux8[:]
		is := 0
		for j := 0; j < 8; j++ {
			scale := int32(scales[is])
			is++
			for k := 0; k < 4; k++ {
				for l := 0; l < 8; l++ {
					aux16[l] = int16(q8[32*j+8*k+l]) * int16(a[l])
				}
				for l := 0; l < 8; l++ {
					aux32[l] += scale * int32(aux16[l])
				}
				a = a[8:]
			}
		}
		d := float32(dtype.F16ToF32(binary.LittleEndian.Uint16(x)) * yd)
		for l := 0; l < 8; l++ {
			sums[l] += float32(d * float32(aux32[l]))
		}
		dmin := float32(dtype.F16ToF32(binary.LittleEndian.Uint16(x[2:])) * yd)
		sumf -= float32(dmin * float32(sumi))
	}
	for l := 0; l < 8; l++ {
		sumf += sums[l]
	}
	return sumf
}

func ggmlVecDotQ6K(n int, vx, vy []byte) float32 {
	nb := n / 256
	var aux8 [256]int8
	var aux16 [8]int16
	var sums [8]float32
	var aux32 [8]int32
	for i := 0; i < nb; i++ {
		x := vx[i*210 : (i+1)*210]
		yd, q8, _ := ggmlQ8K(vy[i*292 : (i+1)*292])
		q4, qh := x[0:128], x[128:192]
		aux32 = [8]int32{}
		a := aux8[:]
		for j := 0; j < 256; j += 128 {
			for l := 0; l < 32; l++ {
				a[l+0] = int8(q4[l+0]&0xF|((qh[l]>>0)&3)<<4) - 32
				a[l+32] = int8(q4[l+32]&0xF|((qh[l]>>2)&3)<<4) - 32
				a[l+64] = int8(q4[l+0]>>4|((qh[l]>>4)&3)<<4) - 32
				a[l+96] = int8(q4[l+32]>>4|((qh[l]>>6)&3)<<4) - 32
			}
			a = a[128:]
			q4 = q4[64:]
			qh = qh[32:]
		}
		a = aux8[:]
		is := 0
		for j := 0; j < 16; j++ {
			scale := int32(int8(x[192+is]))
			is++
			for k := 0; k < 2; k++ {
				for l := 0; l < 8; l++ {
					aux16[l] = int16(q8[16*j+8*k+l]) * int16(a[l])
				}
				for l := 0; l < 8; l++ {
					aux32[l] += scale * int32(aux16[l])
				}
				a = a[8:]
			}
		}
		d := float32(dtype.F16ToF32(binary.LittleEndian.Uint16(x[208:])) * yd)
		for l := 0; l < 8; l++ {
			sums[l] += float32(d * float32(aux32[l]))
		}
	}
	var sumf float32
	for l := 0; l < 8; l++ {
		sumf += sums[l]
	}
	return sumf
}

// TestMatMulKQuant: with float32 activations, k-quant weights give exactly what their
// dequantized f32 matrix gives.
func TestMatMulKQuant(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 31))
	var k Reference
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		for _, cols := range []int{256, 768} {
			rows, T, ld := 11, 3, 14
			w, err := NewMat(dt, randKQuant(rng, dt, rows, cols), rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			deq, err := dtype.Dequantize(dt, w.Data, cols)
			if err != nil {
				t.Fatal(err)
			}
			f, _ := NewMatF32(deq, rows, cols)
			x := make([]float32, T*cols)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			bias := make([]float32, rows)
			for i := range bias {
				bias[i] = float32(i) - 5
			}
			got, want := make([]float32, T*ld), make([]float32, T*ld)
			k.MatMul(got, ld, x, T, w, bias, 0, rows, nil)
			k.MatMul(want, ld, x, T, f, bias, 0, rows, nil)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s cols %d: [%d] = %v, dequantized f32 %v", dt, cols, i, got[i], want[i])
				}
			}
			row := make([]float32, cols)
			w.RowF32(3, row)
			for i := range row {
				if row[i] != deq[3*cols+i] {
					t.Fatalf("%s: RowF32 differs from Dequantize at %d", dt, i)
				}
			}
		}
	}
}

// TestMatMulQ8KQuant: with q8_k activations, MatMulQ8 on k-quant weights is ggml's generic
// dot product bit for bit (the transcriptions above), and close to the exact product of
// the dequantized weights and activations.
func TestMatMulQ8KQuant(t *testing.T) {
	rng := rand.New(rand.NewPCG(32, 32))
	var k Reference
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		for _, cols := range []int{256, 512, 1024} {
			rows, T, ld := 9, 4, 10
			w, err := NewMat(dt, randKQuant(rng, dt, rows, cols), rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			if ActivationDType(dt) != dtype.Q8_K {
				t.Fatalf("%s: activations %s", dt, ActivationDType(dt))
			}
			x := make([]float32, T*cols)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			x[5] = 40 // one large activation: a coarse first super-block
			xb := dtype.RowBytes(dtype.Q8_K, cols)
			xq := make([]byte, T*xb)
			for t0 := 0; t0 < T; t0++ {
				QuantizeActivations(k, dt, x[t0*cols:(t0+1)*cols], xq[t0*xb:(t0+1)*xb])
			}
			bias := make([]float32, rows)
			for i := range bias {
				bias[i] = 0.25 * float32(i)
			}
			got := make([]float32, T*ld)
			k.MatMulQ8(got, ld, xq, T, w, bias, 2, rows, nil)
			wd := make([]float32, cols)
			xd := make([]float32, cols)
			for r := 2; r < rows; r++ {
				rb := w.Data[r*dtype.RowBytes(dt, cols) : (r+1)*dtype.RowBytes(dt, cols)]
				w.RowF32(r, wd)
				for t0 := 0; t0 < T; t0++ {
					xr := xq[t0*xb : (t0+1)*xb]
					var want float32
					if dt == dtype.Q6_K {
						want = ggmlVecDotQ6K(cols, rb, xr)
					} else {
						want = ggmlVecDotQ45K(cols, rb, xr, dt == dtype.Q5_K)
					}
					want += bias[r]
					g := got[t0*ld+r]
					if math.Float32bits(g) != math.Float32bits(want) {
						t.Fatalf("%s cols %d row %d token %d: %v, ggml %v", dt, cols, r, t0, g, want)
					}
					dtype.DequantizeRow(dtype.Q8_K, xr, xd)
					var exact, mag float64
					for i := range wd {
						exact += float64(wd[i]) * float64(xd[i])
						mag += math.Abs(float64(wd[i]) * float64(xd[i]))
					}
					exact += float64(bias[r])
					if math.Abs(float64(g)-exact) > 1e-5*(mag+math.Abs(float64(bias[r]))) {
						t.Fatalf("%s cols %d row %d token %d: %v, exact %v", dt, cols, r, t0, g, exact)
					}
				}
			}
			for t0 := 0; t0 < T; t0++ {
				for r := 0; r < 2; r++ {
					if got[t0*ld+r] != 0 {
						t.Fatalf("%s: row %d outside the range written", dt, r)
					}
				}
			}
		}
	}
}
