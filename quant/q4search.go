package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/lmrun/lmrun/dtype"
)

// QuantizeRowQ4_0Search quantizes len(x) elements (a multiple of 32) to q4_0 blocks in
// dst — ggml's layout, decoded by any q4_0 reader — choosing each block's scale d and
// levels q (x ≈ d·q, q in −8..7) to minimise the squared error Σ (x_j − d·q_j)² instead
// of taking ggml's reference scale m/−8. The search is exact up to the f16 rounding of d:
//
//   - For a fixed d the best levels are q_j = clamp(round(x_j/d), −8, 7); for fixed q the
//     best d is Σ x_j·q_j / Σ q_j², which leaves the error Σ x_j² − (Σ x_j·q_j)² / Σ q_j².
//     So the optimum is the q, among those clamp(round(x·s), −8, 7) gives for some s = 1/d,
//     with the largest (Σ x_j·q_j)² / Σ q_j².
//   - As s grows from 0 (and, separately, falls from 0: d may be negative, and the levels
//     are not symmetric), q_j changes only where |x_j·s| crosses k + ½, k = 0, 1, …: at
//     most 8 steps per element, 256 for the block. The search sorts those steps by |s|
//     (then by element), applies them in turn, updating both sums, and keeps the state
//     with the largest ratio (the first on a tie, positive s first).
//   - d = f16(Σ x_j·q_j / Σ q_j²) of that state, and q is recomputed for the stored d
//     (round half away from zero, clamped). If ggml's reference encoding of the block has
//     a smaller error — which only the rounding of d to f16 can cause — it is used instead,
//     so the result is never worse than the reference quantizer's. A block that is all
//     zeros, or holds a NaN or an infinity, gets the reference encoding.
//
// On stories260K this takes q4_0's perplexity penalty from ggml's +6.8% to the figure in
// format/SPEC.md. It is deterministic: the same input always gives the same bytes.
func QuantizeRowQ4_0Search(x []float32, dst []byte) {
	var s q4searcher
	for b := 0; b < len(x)/dtype.QBlock; b++ {
		s.block(x[b*dtype.QBlock:(b+1)*dtype.QBlock], dst[b*dtype.BlockQ4_0:(b+1)*dtype.BlockQ4_0])
	}
}

// q4searcher holds the scratch space of QuantizeRowQ4_0Search: the steps of the search,
// each the bits of its |s| (a positive float64, whose bits order as its value) with the
// lowest 5 bits replaced by the element index. Two |s| = (k + ½)/|x_j| of float32 x that
// differ, differ by far more than those bits, so the keys sort exactly by |s|, then by
// element.
type q4searcher struct {
	steps []uint64
}

// block encodes one block of 32 values xb into the 18 bytes of blk.
func (s *q4searcher) block(xb []float32, blk []byte) {
	dtype.QuantizeRowQ4_0(xb, blk) // the reference encoding: the fallback, and the bar to beat
	for _, v := range xb {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return
		}
	}
	var q [dtype.QBlock]int8
	if !s.search(xb, &q) {
		return
	}
	var sxq, sqq float64
	for j, v := range xb {
		sxq += float64(v) * float64(q[j]) // exact products: fusing cannot change them
		sqq += float64(q[j]) * float64(q[j])
	}
	d16 := dtype.F32ToF16(float32(sxq / sqq))
	d := float64(dtype.F16ToF32(d16))
	if d == 0 || math.IsInf(d, 0) {
		return
	}
	for j, v := range xb {
		q[j] = int8(min(max(roundHalfAway(float64(v)/d), -8), 7))
	}
	var e, eRef float64
	dRef := float64(dtype.F16ToF32(binary.LittleEndian.Uint16(blk)))
	for j, v := range xb {
		diff := float64(v) - d*float64(q[j])
		e += float64(diff * diff)
		diff = float64(v) - dRef*float64(int(blk[2+j%16]>>(4*(j/16))&15)-8)
		eRef += float64(diff * diff)
	}
	if e >= eRef {
		return
	}
	binary.LittleEndian.PutUint16(blk, d16)
	for j := 0; j < 16; j++ {
		blk[2+j] = byte(q[j]+8) | byte(q[16+j]+8)<<4
	}
}

// search sets q to the levels with the largest (Σ x_j·q_j)² / Σ q_j² that
// clamp(round(x·s), −8, 7) gives for any s, and reports whether there is one with
// Σ x_j·q_j ≠ 0 (false for a block of zeros).
func (s *q4searcher) search(xb []float32, q *[dtype.QBlock]int8) bool {
	best, bestSign, bestAt := 0.0, 0.0, -1
	for _, sign := range [2]float64{1, -1} {
		// With s of this sign, x_j·s has the sign of sign·x_j: an element with
		// sign·x_j > 0 climbs to +7, one with sign·x_j < 0 descends to −8.
		steps := s.steps[:0]
		for j, v := range xb {
			a, n := float64(v)*sign, 7
			if a < 0 {
				a, n = -a, 8
			}
			if a == 0 {
				continue
			}
			for k := 0; k < n; k++ {
				steps = append(steps, math.Float64bits((float64(k)+0.5)/a)&^31|uint64(j))
			}
		}
		slices.Sort(steps)
		s.steps = steps
		// sxq = Σ x_j·q_j·sign (≥ 0) and sqq = Σ q_j² after each step.
		var sxq, sqq float64
		var mag [dtype.QBlock]int
		for i, st := range steps {
			j := st & 31
			sxq += math.Abs(float64(xb[j]))
			sqq += float64(2*mag[j] + 1)
			mag[j]++
			if r := sxq * sxq / sqq; r > best {
				best, bestSign, bestAt = r, sign, i
			}
		}
		if bestSign == sign {
			// Replay the steps up to the best state (this sign's steps are still in s.steps).
			mag = [dtype.QBlock]int{}
			for _, st := range steps[:bestAt+1] {
				mag[st&31]++
			}
			for j, v := range xb {
				if float64(v)*sign < 0 {
					q[j] = int8(-mag[j])
				} else {
					q[j] = int8(mag[j])
				}
			}
		}
	}
	return bestAt >= 0
}

func roundHalfAway(v float64) float64 {
	if v < 0 {
		return -float64(int64(-v + 0.5))
	}
	return float64(int64(v + 0.5))
}

// QuantizeSearch is Quantize with QuantizeRowQ4_0Search for q4_0 (and Quantize's
// encoders for every other dtype): what lmrun convert --dtype uses. A q4_0 tensor is
// split into runs of blocks quantized in parallel (up to GOMAXPROCS goroutines); every
// block is quantized on its own, so the bytes do not depend on the split.
func QuantizeSearch(dt dtype.DType, src []float32, cols int) ([]byte, error) {
	if dt != dtype.Q4_0 {
		return dtype.Quantize(dt, src, cols)
	}
	if cols <= 0 || cols%dtype.QBlock != 0 || len(src)%cols != 0 {
		return nil, fmt.Errorf("q4_0 needs rows of a multiple of %d elements, have %d values in rows of %d", dtype.QBlock, len(src), cols)
	}
	nb := len(src) / dtype.QBlock
	dst := make([]byte, nb*dtype.BlockQ4_0)
	const minRun = 1024 // blocks; smaller tensors are not worth a goroutine
	workers := max(1, min(runtime.GOMAXPROCS(0), nb/minRun))
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := nb*w/workers, nb*(w+1)/workers
		wg.Go(func() {
			QuantizeRowQ4_0Search(src[lo*dtype.QBlock:hi*dtype.QBlock], dst[lo*dtype.BlockQ4_0:hi*dtype.BlockQ4_0])
		})
	}
	wg.Wait()
	return dst, nil
}
