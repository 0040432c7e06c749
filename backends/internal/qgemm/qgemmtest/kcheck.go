package qgemmtest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// KBlocks returns n random super-blocks of dtype dt (q4_k, q5_k or q6_k) in their ggml layout:
// random bytes (every quant, scale and min occurs), f16 scales from half (special: ±Inf
// and NaN too); one in eight has every quant at its largest and the extreme scales
// instead (q4_k, q5_k: scales and mins 63; q6_k: scales −128 or 127).
func KBlocks(r *rand.Rand, dt dtype.DType, n int, special bool) []byte {
	_, bs := dt.Block()
	b := make([]byte, n*bs)
	for i := 0; i < n; i++ {
		blk := b[i*bs : (i+1)*bs]
		for j := range blk {
			blk[j] = byte(r.IntN(256))
		}
		extreme := r.IntN(8) == 0
		if dt == dtype.Q6_K {
			if extreme {
				q := byte(0xff)
				if r.IntN(2) == 0 {
					q = 0 // every quant −32
				}
				for j := 0; j < 192; j++ {
					blk[j] = q
				}
				s := byte(0x80)
				if r.IntN(2) == 0 {
					s = 0x7f
				}
				for j := 192; j < 208; j++ {
					blk[j] = s
				}
			}
			binary.LittleEndian.PutUint16(blk[208:], half(r, special))
			continue
		}
		if extreme {
			for j := 4; j < bs; j++ {
				blk[j] = 0xff
			}
		}
		binary.LittleEndian.PutUint16(blk, half(r, special))
		binary.LittleEndian.PutUint16(blk[2:], half(r, special))
	}
	return b
}

// kActivations returns T rows of n activations as q8_k: quantized random values, and
// sometimes rows of one extreme value (quants ±127 or −128 throughout).
func kActivations(r *rand.Rand, T, n int) []byte {
	xb := dtype.RowBytes(dtype.Q8_K, n)
	xq := make([]byte, T*xb)
	x := make([]float32, n)
	for t := 0; t < T; t++ {
		switch r.IntN(6) {
		case 0:
			v := float32(r.NormFloat64() * 100)
			for i := range x {
				x[i] = v
			}
		default:
			s := math.Exp(r.NormFloat64() * 3)
			for i := range x {
				x[i] = float32(r.NormFloat64() * s)
			}
		}
		kernels.QuantizeQ8K(x, xq[t*xb:(t+1)*xb])
	}
	return xq
}

// CheckK runs k's MatMulQ8 against the reference's on q4_k, q5_k and q6_k weights for cols
// 256–4096 (1–16 super-blocks), rows 1–33 (around groups of 4 and of 16), T up to 64
// (every tail of 2 and of 3 tokens; fewer shapes with -short), several row ranges (some
// starting inside a group) and bias nil or not, and fails at the first result whose
// bits differ (NaN matching any NaN).
func CheckK(t *testing.T, k Backend, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 11))
	var ref kernels.Reference
	nbs, rowsList, Ts := []int{1, 2, 3, 5, 16}, []int{1, 7, 8, 9, 15, 16, 17, 33}, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 64}
	if testing.Short() {
		nbs, rowsList, Ts = []int{1, 3, 16}, []int{1, 17, 33}, []int{1, 2, 4, 9}
	}
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		for _, nb := range nbs {
			n := nb * dtype.QKBlock
			for _, rows := range rowsList {
				special := r.IntN(4) == 0
				w, err := kernels.NewMat(dt, KBlocks(r, dt, rows*nb, special), rows, n)
				if err != nil {
					t.Fatal(err)
				}
				bias := make([]float32, rows)
				for i := range bias {
					bias[i] = float32(r.NormFloat64())
				}
				for _, T := range Ts {
					if T*n*rows > 1<<21 {
						continue
					}
					xq := kActivations(r, T, n)
					ld := rows + 3
					sc := kernels.NewScratch(k, T, n)
					for _, rr := range [][2]int{{0, rows}, {rows / 3, rows}, {min(5, rows-1), min(rows, 21)}, {rows / 2, rows/2 + 1}, {1, max(1, rows-1)}} {
						for _, b := range [][]float32{nil, bias} {
							want := make([]float32, T*ld)
							got := make([]float32, T*ld)
							for i := range want {
								want[i] = float32(-i)
								got[i] = float32(-i)
							}
							ref.MatMulQ8(want, ld, xq, T, w, b, rr[0], rr[1], nil)
							k.MatMulQ8(got, ld, xq, T, w, b, rr[0], rr[1], sc)
							for i := range want {
								if !same(want[i], got[i]) {
									t.Fatalf("%s %v %d×%d T=%d rows [%d,%d) bias=%v: dst[%d] (token %d, row %d) = %v (%#x), reference %v (%#x)",
										k.Name(), dt, rows, n, T, rr[0], rr[1], b != nil, i, i/ld, i%ld,
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
