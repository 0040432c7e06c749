package bench

import (
	"sync"
	"time"
	"unsafe"

	"github.com/lmrun/lmrun/engine/parallel"
	"github.com/lmrun/lmrun/kernels"
)

// Machine holds the limits a result is compared with: streaming read bandwidth (1 and N
// threads) and, per backend that can measure it, the f32 FMA peak of one core.
type Machine struct {
	ReadGBps1  float64            `json:"read_gbps_1thread"`
	ReadGBpsN  float64            `json:"read_gbps_nthreads"`
	Threads    int                `json:"threads"`
	PeakGFLOPS map[string]float64 `json:"fma_peak_gflops_1thread"` // by backend
}

// readBuffer is large enough to defeat every cache level of the machines we target.
const readBuffer = 256 << 20

// ReadBandwidth measures streaming read bandwidth in GB/s with the given number of
// goroutines (≤ 0: parallel.DefaultThreads), each reading its share of a buffer much larger than the last-level cache,
// best of reps. Each share is read two ways — a plain Go loop with eight independent
// accumulators, and k's Dot over its two halves (two streams, vector loads; k may be
// nil) — and the faster counts: the limit is what the machine can deliver, not what
// one loop happens to reach.
func ReadBandwidth(threads, reps int, k kernels.Kernels) float64 {
	if threads <= 0 {
		threads = parallel.DefaultThreads()
	}
	buf := make([]uint64, readBuffer/8)
	for i := range buf {
		buf[i] = 0x3f8000003f800000 // two float32 1.0s: no NaNs or denormals for the dot
	}
	best := 0.0
	var sink uint64
	for r := 0; r < max(reps, 1); r++ {
		var wg sync.WaitGroup
		sums := make([]uint64, threads)
		chunk := (len(buf) + threads - 1) / threads
		t0 := time.Now()
		for w := 0; w < threads; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				lo, hi := w*chunk, min((w+1)*chunk, len(buf))
				sums[w] = sumWords(buf[lo:hi])
			}(w)
		}
		wg.Wait()
		secs := time.Since(t0).Seconds()
		for _, s := range sums {
			sink += s
		}
		best = max(best, float64(readBuffer)/secs/1e9)
		if k == nil {
			continue
		}
		f := unsafe.Slice((*float32)(unsafe.Pointer(&buf[0])), 2*len(buf))
		chunk = (len(f) + threads - 1) / threads &^ 1
		t0 = time.Now()
		for w := 0; w < threads; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				part := f[w*chunk : min((w+1)*chunk, len(f))]
				h := len(part) / 2
				sums[w] = uint64(k.Dot(part[:h], part[h:2*h]))
			}(w)
		}
		wg.Wait()
		secs = time.Since(t0).Seconds()
		best = max(best, float64(readBuffer)/secs/1e9)
	}
	if sink == 42 {
		println() // keep the sums alive
	}
	return best
}

func sumWords(b []uint64) uint64 {
	var s0, s1, s2, s3, s4, s5, s6, s7 uint64
	i := 0
	for ; i+8 <= len(b); i += 8 {
		s0 += b[i]
		s1 += b[i+1]
		s2 += b[i+2]
		s3 += b[i+3]
		s4 += b[i+4]
		s5 += b[i+5]
		s6 += b[i+6]
		s7 += b[i+7]
	}
	for ; i < len(b); i++ {
		s0 += b[i]
	}
	return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
}

// FMAPeak measures a backend's f32 multiply-add peak on one core in GFLOP/s, if the
// backend can run the probe (kernels.PeakProber); ok is false otherwise.
func FMAPeak(k kernels.Kernels) (gflops float64, ok bool) {
	p, ok := k.(kernels.PeakProber)
	if !ok {
		return 0, false
	}
	p.FMAProbe(1 << 16) // warm up
	best := 0.0
	for r := 0; r < 5; r++ {
		t0 := time.Now()
		flops := p.FMAProbe(1 << 24)
		best = max(best, float64(flops)/time.Since(t0).Seconds()/1e9)
	}
	return best, true
}
