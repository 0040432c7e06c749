package bench

import (
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/engine/parallel"
	"github.com/lmrun/lmrun/kernels"
)

// Machine holds the limits a result is compared with: the read bandwidth of each cache
// level and of DRAM (1 and N threads) and, per backend that can measure them, the f32
// FMA peak and the int8 peak of one core; and what the machine is: CPU model, architecture, the SIMD features
// the backends use and the backends measured.
type Machine struct {
	CPU      string   `json:"cpu,omitempty"`
	Arch     string   `json:"arch,omitempty"`
	Features []string `json:"features,omitempty"`
	Backends []string `json:"backends,omitempty"`
	// BackendFeatures lists, per backend, the CPU features it requires.
	BackendFeatures map[string][]string `json:"backend_features,omitempty"`
	ReadGBps1       float64             `json:"read_gbps_1thread"` // DRAM
	ReadGBpsN       float64             `json:"read_gbps_nthreads"`
	Threads         int                 `json:"threads"`
	Levels          []Level             `json:"levels,omitempty"`        // smallest first, DRAM last
	PeakGFLOPS      map[string]float64  `json:"fma_peak_gflops_1thread"` // by backend
	// Int8PeakGOPS is, by backend, the int8 peak of one core in GOP/s (Int8Peak).
	Int8PeakGOPS map[string]float64 `json:"int8_peak_gops_1thread,omitempty"`
}

// Level is one level of the memory hierarchy and the read bandwidth measured with a
// working set resident in it.
type Level struct {
	Name      string  `json:"name"`                         // L1, L2, L3 or DRAM
	SizeBytes int64   `json:"size_bytes"`                   // capacity as the CPU reports it; 0 for DRAM
	SetBytes  int64   `json:"working_set_bytes"`            // the buffer the one-thread measurement read
	ReadGBps1 float64 `json:"read_gbps_1thread"`            // one thread
	ReadGBpsN float64 `json:"read_gbps_nthreads,omitempty"` // all threads (L3 and DRAM)
}

// Label names a machine for a chart or a table column: CPU model and architecture,
// whichever are known.
func (m Machine) Label() string {
	return strings.TrimSpace(strings.Join(nonEmpty(m.CPU, m.Arch), " "))
}

// Title describes the machine for a chart title: CPU model, architecture and backends.
func (m Machine) Title() string {
	s := m.Label()
	if s == "" {
		s = "unknown machine"
	}
	if len(m.Backends) > 0 {
		s += ", backends " + strings.Join(m.Backends, ", ")
	}
	return s
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// LevelFor returns the smallest measured level that holds a working set of ws bytes,
// DRAM when none does; ok is false when the machine has no level measured. A machine
// measured before levels existed (ReadGBps1 only) counts as DRAM.
func (m Machine) LevelFor(ws float64) (Level, bool) {
	for _, l := range m.Levels {
		if l.ReadGBps1 > 0 && (l.SizeBytes == 0 || ws <= float64(l.SizeBytes)) {
			return l, true
		}
	}
	if m.ReadGBps1 > 0 {
		return Level{Name: "DRAM", ReadGBps1: m.ReadGBps1, ReadGBpsN: m.ReadGBpsN}, true
	}
	return Level{}, false
}

// SIMDFeatures are the CPU features the backends care about, in display order.
func SIMDFeatures() []cpuid.FeatureID {
	return []cpuid.FeatureID{
		cpuid.SSE4, cpuid.AVX, cpuid.AVX2, cpuid.FMA3, cpuid.F16C, cpuid.AVX512F, cpuid.AVX512BW,
		cpuid.AVX512VL, cpuid.AVX512VNNI, cpuid.AVX512BF16, cpuid.AVXVNNI, cpuid.AMXTILE, cpuid.AMXINT8,
		cpuid.ASIMD, cpuid.ASIMDDP, cpuid.FPHP,
	}
}

// CPUFeatures lists the SIMDFeatures this CPU has, in their order, in lower case.
func CPUFeatures() []string {
	var out []string
	for _, f := range SIMDFeatures() {
		if cpuid.CPU.Supports(f) {
			out = append(out, strings.ToLower(f.String()))
		}
	}
	return out
}

// CacheSizes returns the data cache sizes in bytes of one core's L1 and L2 and of the L3
// it shares, as cpuid reports them, else as Linux's sysfs does; 0 when unknown.
func CacheSizes() (l1, l2, l3 int64) {
	c := cpuid.CPU.Cache
	l1, l2, l3 = int64(max(c.L1D, 0)), int64(max(c.L2, 0)), int64(max(c.L3, 0))
	if l1 == 0 || l2 == 0 || l3 == 0 {
		s1, s2, s3 := sysfsCacheSizes(os.DirFS("/sys/devices/system/cpu/cpu0/cache"))
		l1, l2, l3 = cmp0(l1, s1), cmp0(l2, s2), cmp0(l3, s3)
	}
	return l1, l2, l3
}

func cmp0(a, b int64) int64 {
	if a > 0 {
		return a
	}
	return b
}

// sysfsCacheSizes reads index*/{level,type,size} from a Linux cpuN/cache directory.
func sysfsCacheSizes(fsys fs.FS) (l1, l2, l3 int64) {
	dirs, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return 0, 0, 0
	}
	read := func(dir, name string) string {
		b, err := fs.ReadFile(fsys, dir+"/"+name)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	for _, d := range dirs {
		if !strings.HasPrefix(d.Name(), "index") {
			continue
		}
		if t := read(d.Name(), "type"); t != "Data" && t != "Unified" {
			continue
		}
		size := parseSize(read(d.Name(), "size"))
		switch read(d.Name(), "level") {
		case "1":
			l1 = size
		case "2":
			l2 = size
		case "3":
			l3 = size
		}
	}
	return l1, l2, l3
}

// parseSize parses sysfs sizes: "48K", "1024K", "32M"; 0 if it cannot.
func parseSize(s string) int64 {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	n, err := strconv.ParseInt(strings.TrimRight(s, "KMG"), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n * mult
}

// readBuffer is large enough to defeat every cache level of the machines we target.
const readBuffer = 256 << 20

// minRead is how many bytes one timed read of a cache-resident buffer covers: enough
// passes over it for a measurement of milliseconds.
const minRead = 256 << 20

// MeasureMachine measures the read bandwidth of each cache level and of DRAM with
// stream's Dot (see ReadBandwidthOf; stream may be nil) and the FMA and int8 peaks of
// each backend in order that can probe them, and describes the machine. threads ≤ 0 means
// parallel.DefaultThreads.
func MeasureMachine(ks map[string]kernels.Kernels, order []string, stream kernels.Kernels, threads, reps int) Machine {
	if threads <= 0 {
		threads = parallel.DefaultThreads()
	}
	m := Machine{CPU: strings.TrimSpace(cpuid.CPU.BrandName), Arch: runtime.GOARCH, Features: CPUFeatures(),
		Backends: append([]string(nil), order...), Threads: threads, PeakGFLOPS: map[string]float64{},
		Int8PeakGOPS: map[string]float64{}}
	m.BackendFeatures = map[string][]string{}
	for _, n := range order {
		if b, ok := backends.Lookup(n); ok {
			feats := []string{}
			for _, f := range b.Requires {
				feats = append(feats, strings.ToLower(f.String()))
			}
			m.BackendFeatures[n] = feats
		}
	}
	l1, l2, l3 := CacheSizes()
	prev := int64(0)
	for _, l := range []Level{{Name: "L1", SizeBytes: l1}, {Name: "L2", SizeBytes: l2}, {Name: "L3", SizeBytes: l3}} {
		if l.SizeBytes <= 0 {
			continue
		}
		// Half the level, and twice the level below when that is smaller: a kernel's
		// working set just past the level below still hits in it now and then, and the
		// level's bandwidth is the best either size reaches.
		sets := []int64{l.SizeBytes / 2}
		if prev > 0 && 2*prev < l.SizeBytes/2 {
			sets = append(sets, 2*prev)
		}
		for _, set := range sets {
			if bw := ReadBandwidthOf(set, 1, reps, stream); bw > l.ReadGBps1 {
				l.ReadGBps1, l.SetBytes = bw, set
			}
		}
		if l.Name == "L3" {
			l.ReadGBpsN = ReadBandwidthOf(l.SizeBytes/2, threads, reps, stream)
		}
		prev = l.SizeBytes
		m.Levels = append(m.Levels, l)
	}
	dram := Level{Name: "DRAM", SetBytes: max(readBuffer, 4*l3)}
	dram.ReadGBps1 = ReadBandwidthOf(dram.SetBytes, 1, reps, stream)
	dram.ReadGBpsN = ReadBandwidthOf(dram.SetBytes, threads, reps, stream)
	m.Levels = append(m.Levels, dram)
	m.ReadGBps1, m.ReadGBpsN = dram.ReadGBps1, dram.ReadGBpsN
	for _, n := range order {
		if p, ok := FMAPeak(ks[n]); ok {
			m.PeakGFLOPS[n] = p
		}
		if p, ok := Int8Peak(ks[n]); ok {
			m.Int8PeakGOPS[n] = p
		}
	}
	return m
}

// ReadBandwidth measures streaming read bandwidth in GB/s with the given number of
// goroutines (≤ 0: parallel.DefaultThreads), each reading its share of a buffer much
// larger than the last-level cache, best of reps; see ReadBandwidthOf.
func ReadBandwidth(threads, reps int, k kernels.Kernels) float64 {
	return ReadBandwidthOf(readBuffer, threads, reps, k)
}

// ReadBandwidthOf measures the read bandwidth in GB/s of a buffer of size bytes shared
// out among threads goroutines (≤ 0: parallel.DefaultThreads), best of reps. Each
// goroutine reads its share as many times as it takes to read minRead bytes in all, so
// that a buffer small enough to stay in a cache level is read from that level. Each
// share is read two ways — a plain Go loop with eight independent accumulators, and k's
// Dot over its two halves (two streams, vector loads; k may be nil) — and the faster
// counts: the limit is what the machine can deliver, not what one loop happens to reach.
func ReadBandwidthOf(size int64, threads, reps int, k kernels.Kernels) float64 {
	if threads <= 0 {
		threads = parallel.DefaultThreads()
	}
	words := max(int(size/8), 16*threads)
	buf := make([]uint64, words)
	for i := range buf {
		buf[i] = 0x3f8000003f800000 // two float32 1.0s: no NaNs or denormals for the dot
	}
	passes := max(1, (minRead+8*words-1)/(8*words))
	total := float64(8 * words * passes)
	best := 0.0
	var sink uint64
	sums := make([]uint64, threads)
	run := func(read func(w int) uint64) float64 {
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := 0; w < threads; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for p := 0; p < passes; p++ {
					sums[w] += read(w)
				}
			}(w)
		}
		wg.Wait()
		return total / time.Since(t0).Seconds() / 1e9
	}
	chunk := (len(buf) + threads - 1) / threads
	f := unsafe.Slice((*float32)(unsafe.Pointer(&buf[0])), 2*len(buf))
	fchunk := (len(f) + threads - 1) / threads &^ 1
	for r := 0; r < max(reps, 1); r++ {
		best = max(best, run(func(w int) uint64 {
			return sumWords(buf[w*chunk : min((w+1)*chunk, len(buf))])
		}))
		if k == nil {
			continue
		}
		best = max(best, run(func(w int) uint64 {
			part := f[w*fchunk : min((w+1)*fchunk, len(f))]
			h := len(part) / 2
			return uint64(k.Dot(part[:h], part[h:2*h]))
		}))
	}
	for _, s := range sums {
		sink += s
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
	return probeRate(p.FMAProbe), true
}

// Int8Peak measures a backend's int8 peak on one core in GOP/s (2 operations per
// multiply-add of a byte pair, with the instructions of its int8 products), if the
// backend can run the probe (kernels.Int8Prober); ok is false otherwise.
func Int8Peak(k kernels.Kernels) (gops float64, ok bool) {
	p, ok := k.(kernels.Int8Prober)
	if !ok {
		return 0, false
	}
	return probeRate(p.Int8Probe), true
}

// probeRate returns the best rate of 20 runs of a peak probe (of a few milliseconds
// each), in G operations per second, after a warm-up run. Short runs, many of them:
// on a machine shared with other work, some fall between its time slices (five runs
// of 20 ms each measured half the peak now and then).
func probeRate(probe func(iters int) int64) float64 {
	probe(1 << 16)
	best := 0.0
	for r := 0; r < 20; r++ {
		t0 := time.Now()
		ops := probe(1 << 20)
		best = max(best, float64(ops)/time.Since(t0).Seconds()/1e9)
	}
	return best
}

// FormatBytes renders a size as KiB, MiB or GiB.
func FormatBytes(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
