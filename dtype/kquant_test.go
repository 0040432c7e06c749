package dtype

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// ggmlQ8_K is quantize_row_q8_K_ref transcribed from ggml's C, written apart from
// QuantizeRowQ8_K: a struct per block, nearest_int through a float32 variable.
func ggmlQ8_K(x []float32) []byte {
	type blockQ8K struct {
		d     float32
		qs    [256]int8
		bsums [16]int16
	}
	nearestInt := func(fval float32) int {
		val := fval + 12582912.0
		i := int32(math.Float32bits(val))
		return int((i & 0x007fffff) - 0x00400000)
	}
	var out []byte
	for i := 0; i < len(x)/256; i++ {
		var y blockQ8K
		xs := x[256*i : 256*i+256]
		var max, amax float32
		for j := 0; j < 256; j++ {
			ax := float32(math.Abs(float64(xs[j])))
			if ax > amax {
				amax = ax
				max = xs[j]
			}
		}
		if amax != 0 {
			iscale := float32(-127.0) / max
			for j := 0; j < 256; j++ {
				prod := iscale * xs[j]
				v := nearestInt(prod)
				if v > 127 {
					v = 127
				}
				y.qs[j] = int8(v)
			}
			for j := 0; j < 16; j++ {
				sum := 0
				for ii := 0; ii < 16; ii++ {
					sum += int(y.qs[j*16+ii])
				}
				y.bsums[j] = int16(sum)
			}
			y.d = 1 / iscale
		}
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(y.d))
		for _, q := range y.qs {
			out = append(out, byte(q))
		}
		for _, s := range y.bsums {
			out = binary.LittleEndian.AppendUint16(out, uint16(s))
		}
	}
	return out
}

// TestQuantizeQ8_K: QuantizeRowQ8_K writes ggml's bytes — random rows at many scales,
// ties of nearest_int (which round to even), zero blocks, a NaN or an infinity — and
// its sums are those of its quants.
func TestQuantizeQ8_K(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	var cases [][]float32
	for _, scale := range []float64{1e-30, 1e-3, 1, 7, 1e3, 1e30} {
		for _, n := range []int{256, 512, 1024} {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(r.NormFloat64() * scale)
			}
			cases = append(cases, v)
		}
	}
	ties := make([]float32, 256) // max −127: iscale = 1, so halves are ties
	for i := range ties {
		ties[i] = float32(i%21-10) + 0.5
	}
	ties[7] = -127
	cases = append(cases, ties, make([]float32, 512))
	for _, at := range [][2]int{{17, 18}, {200, 40}} { // opposite signs of the top magnitude
		v := make([]float32, 256)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		v[at[0]], v[at[1]] = 9, -9
		cases = append(cases, v)
	}
	for _, special := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		v := make([]float32, 256)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		v[100] = special
		cases = append(cases, v)
	}
	for ci, x := range cases {
		want := ggmlQ8_K(x)
		got := make([]byte, RowBytes(Q8_K, len(x)))
		QuantizeRow(Q8_K, x, got)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("case %d: byte %d (block %d) = %#02x, ggml %#02x", ci, i, i/BlockQ8_K, got[i], want[i])
			}
		}
	}
	// Round to even: 0.5 → 0, 1.5 → 2, 2.5 → 2, −0.5 → −0, −1.5 → −2.
	got := make([]byte, BlockQ8_K)
	QuantizeRowQ8_K(ties, got)
	for j, want := range map[int]int8{10: 0, 11: 2, 12: 2, 9: 0, 8: -2, 7: -127} {
		if q := int8(got[4+j]); q != want {
			t.Errorf("x = %v: q = %d, want %d", ties[j], q, want)
		}
	}
	if d := math.Float32frombits(binary.LittleEndian.Uint32(got)); d != 1 {
		t.Errorf("d = %v for max −127, want 1", d)
	}
	// The dequantized block is within d/2 of x.
	x := cases[4]
	q := make([]byte, RowBytes(Q8_K, len(x)))
	QuantizeRowQ8_K(x, q)
	y := make([]float32, len(x))
	DequantizeRow(Q8_K, q, y)
	for i := range x {
		d := math.Float32frombits(binary.LittleEndian.Uint32(q[i/256*BlockQ8_K:]))
		if math.Abs(float64(x[i]-y[i])) > 0.5001*math.Abs(float64(d)) {
			t.Fatalf("x[%d] = %v dequantizes to %v (d = %v)", i, x[i], y[i], d)
		}
	}
}

// TestScaleMinK4 checks the 6-bit unpacking against ggml's other form of it, the one its
// dot products use (three masks over the 12 bytes as uint32 words), on random bytes.
func TestScaleMinK4(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 22))
	const kmask1, kmask2, kmask3 = 0x3f3f3f3f, 0x0f0f0f0f, 0x03030303
	for it := 0; it < 1000; it++ {
		s := make([]byte, 12)
		for i := range s {
			s[i] = byte(r.IntN(256))
		}
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
		for j := 0; j < 8; j++ {
			sc, m := ScaleMinK4(j, s)
			if sc != b[j] || m != b[8+j] {
				t.Fatalf("%x: sub-block %d: scale %d min %d, ggml %d %d", s, j, sc, m, b[j], b[8+j])
			}
		}
	}
}

// TestKQuantSizes: the super-block sizes are ggml's, and sizes and errors follow the
// 256-element block.
func TestKQuantSizes(t *testing.T) {
	for dt, want := range map[DType]int{Q4_K: 144, Q5_K: 176, Q6_K: 210, Q8_K: 292} {
		if n, b := dt.Block(); n != 256 || b != want {
			t.Errorf("%s: block (%d, %d), want (256, %d)", dt, n, b, want)
		}
		if RowBytes(dt, 4096) != 16*want {
			t.Errorf("%s: RowBytes(4096) = %d", dt, RowBytes(dt, 4096))
		}
	}
	for _, dt := range []DType{Q4_K, Q5_K, Q6_K} {
		if !dt.Valid() || dt.Quantizable() || !dt.KQuant() {
			t.Errorf("%s: valid %v, quantizable %v", dt, dt.Valid(), dt.Quantizable())
		}
		if p, err := Parse(dt.String()); err != nil || p != dt {
			t.Errorf("Parse(%q) = %v, %v", dt.String(), p, err)
		}
		if n, err := dt.ByteSize([]int{3, 512}); err != nil || n != int64(3*2*RowBytes(dt, 256)) {
			t.Errorf("%s: ByteSize = %d, %v", dt, n, err)
		}
		if _, err := dt.ByteSize([]int{3, 288}); err == nil {
			t.Errorf("%s: rows of 288 accepted", dt)
		}
		if _, err := Quantize(dt, make([]float32, 256), 256); err == nil {
			t.Errorf("%s: Quantize did not refuse", dt)
		}
	}
	if Q8_K.Valid() || Q8_K.String() != "q8_k" {
		t.Errorf("q8_k: valid %v, name %q", Q8_K.Valid(), Q8_K.String())
	}
}
