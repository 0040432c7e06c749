package kernels

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lmrun/lmrun/format"
)

// QuantizeRowQ4_0Search quantizes len(x) elements (a multiple of 32) to q4_0 blocks in
// dst — ggml's layout, decoded by any q4_0 reader — choosing each block's scale to
// minimise the squared error instead of taking ggml's reference scale m/−8:
//
//	for k = −20..20 (in that order), start from iscale = (−8 + k/10)/m, where m is the
//	element of largest magnitude with its sign, then 4 times: q_j = clamp(round(x_j·
//	iscale), −8, 7) (ties away from zero), d = Σ x_j·q_j / Σ q_j² (least squares for
//	those q) rounded to f16, iscale = 1/d. Of all the (d, q) visited, the one with the
//	smallest Σ (x_j − f16(d)·q_j)² wins, the first on a tie.
//
// ggml's reference scale is the candidate k = 0 up to the least-squares refit, so the
// error is never larger than the reference quantizer's by more than rounding; on
// stories260K it takes q4_0's perplexity penalty from +6.8% to the figure in SPEC.md.
// It is deterministic: the same input always gives the same bytes.
func QuantizeRowQ4_0Search(x []float32, dst []byte) {
	var q, best [format.QBlock]int8
	for b := 0; b < len(x)/format.QBlock; b++ {
		xb := x[b*format.QBlock : (b+1)*format.QBlock]
		blk := dst[b*BlockQ4_0 : (b+1)*BlockQ4_0]
		var amax, m float32
		for _, v := range xb {
			if amax < abs32(v) {
				amax, m = abs32(v), v
			}
		}
		var bestD uint16
		bestErr := -1.0
		if m != 0 {
			for k := -20; k <= 20; k++ {
				iscale := (-8 + float64(k)/10) / float64(m)
				// Alternate quantizing with the scale and refitting the scale to the
				// levels (a few Lloyd steps), keeping the best state seen.
				for it := 0; it < 4 && iscale != 0 && !math.IsInf(iscale, 0); it++ {
					var sxq, sqq float64
					for j, v := range xb {
						r := min(max(roundHalfAway(float64(v)*iscale), -8), 7)
						q[j] = int8(r)
						sxq += float64(v) * r
						sqq += r * r
					}
					if sqq == 0 {
						break
					}
					d16 := F32ToF16(float32(sxq / sqq))
					d := float64(F16ToF32(d16))
					var e float64
					for j, v := range xb {
						diff := float64(v) - d*float64(q[j])
						e += diff * diff
					}
					if bestErr < 0 || e < bestErr {
						bestErr, bestD, best = e, d16, q
					}
					if d == 0 {
						break
					}
					iscale = 1 / d
				}
			}
		}
		if bestErr < 0 { // an all-zero block
			bestD, best = 0, [format.QBlock]int8{}
		}
		binary.LittleEndian.PutUint16(blk, bestD)
		for j := 0; j < 16; j++ {
			blk[2+j] = byte(best[j]+8) | byte(best[16+j]+8)<<4
		}
	}
}

func roundHalfAway(v float64) float64 {
	if v < 0 {
		return -float64(int64(-v + 0.5))
	}
	return float64(int64(v + 0.5))
}

// QuantizeSearch is Quantize with QuantizeRowQ4_0Search for q4_0 (and Quantize's
// encoders for every other dtype): what lmrun convert --dtype uses.
func QuantizeSearch(dt format.DType, src []float32, cols int) ([]byte, error) {
	if dt != format.Q4_0 {
		return Quantize(dt, src, cols)
	}
	if cols <= 0 || cols%format.QBlock != 0 || len(src)%cols != 0 {
		return nil, fmt.Errorf("q4_0 needs rows of a multiple of %d elements, have %d values in rows of %d", format.QBlock, len(src), cols)
	}
	dst := make([]byte, len(src)/format.QBlock*BlockQ4_0)
	QuantizeRowQ4_0Search(src, dst)
	return dst, nil
}
