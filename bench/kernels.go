package bench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// Bound says which machine limit a kernel is measured against.
type Bound string

// Kernel bounds.
const (
	BandwidthBound Bound = "bandwidth" // compared with the read bandwidth of the level its working set lives in
	ComputeBound   Bound = "compute"   // compared with the FMA peak
	Int8Bound      Bound = "int8"      // compared with the int8 peak (GFLOPS counts int8 ops)
)

// KernelCase is one kernel at one shape, as real models call it.
type KernelCase struct {
	Kernel string
	Shape  string
	Flops  float64 // floating-point operations per call
	Bytes  float64 // bytes read per call: weights and inputs
	Set    float64 // working set: bytes of weights, inputs and outputs one call touches
	Bound  Bound
	// Setup allocates the inputs and returns the call to time.
	Setup func(k kernels.Kernels) func()
}

// KernelResult is the measurement of one case on one backend.
type KernelResult struct {
	Kernel  string  `json:"kernel"`
	Shape   string  `json:"shape"`
	Backend string  `json:"backend"`
	Bound   Bound   `json:"bound"`
	NsPerOp float64 `json:"ns_per_op"`
	GFLOPS  float64 `json:"gflops"`
	GBps    float64 `json:"gbps"`
	Speedup float64 `json:"speedup_vs_generic"`
	// PeakFrac is the fraction of Limit reached: GB/s of Level's one-thread read
	// bandwidth when bandwidth-bound, GFLOP/s of the backend's FMA peak when
	// compute-bound, GOP/s (in GFLOPS) of its int8 peak when int8-bound; 0 if unknown.
	PeakFrac   float64 `json:"fraction_of_peak"`
	Limit      float64 `json:"limit,omitempty"`             // GB/s, GFLOP/s or GOP/s, by Bound
	Level      string  `json:"level,omitempty"`             // L1, L2, L3 or DRAM: where the working set lives
	WorkingSet float64 `json:"working_set_bytes,omitempty"` // bytes one call touches
}

// LimitName names what a result is judged against: "L2 read BW", "FMA peak", "int8
// peak".
func (r KernelResult) LimitName() string {
	switch r.Bound {
	case ComputeBound:
		return "FMA peak"
	case Int8Bound:
		return "int8 peak"
	}
	if r.Level == "" {
		return "read BW"
	}
	return r.Level + " read BW"
}

func randSlice(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func matCase(T, rows, cols int) KernelCase {
	name, bound := "matvec", BandwidthBound
	shape := fmt.Sprintf("%dx%d", rows, cols)
	if T > 1 {
		name, bound = "gemm", ComputeBound
		shape = fmt.Sprintf("%dx%dx%d", T, cols, rows)
	}
	w, x, y := 4*float64(rows*cols), 4*float64(T*cols), 4*float64(T*rows)
	return KernelCase{Kernel: name, Shape: shape, Flops: 2 * float64(T*rows*cols), Bytes: w + x, Set: w + x + y, Bound: bound,
		Setup: func(k kernels.Kernels) func() {
			r := rand.New(rand.NewPCG(1, 2))
			w, _ := kernels.NewMatF32(randSlice(r, rows*cols), rows, cols)
			x, dst := randSlice(r, T*cols), make([]float32, T*rows)
			sc := kernels.NewScratch(k, T, cols)
			return func() { k.MatMul(dst, rows, x, T, w, nil, 0, rows, sc) }
		}}
}

// quantCase is a matrix–vector product with weights stored as dt: f16 and bf16 through
// MatMul, q8_0, q4_0 and the k-quants through MatMulQ8 (activations quantized once, to
// kernels.ActivationDType(dt), outside the timed call, as the engine does) on backends
// that have it, else MatMul with float32 activations. k-quant weights are random
// super-blocks (lmrun has no k-quant quantizer). Bytes counts the weights as stored and
// the activations as the kernel reads them.
func quantCase(dt dtype.DType, rows, cols int) KernelCase {
	w, x := float64(rows*dtype.RowBytes(dt, cols)), 4*float64(cols)
	if dt == dtype.Q8_0 || dt == dtype.Q4_0 || dt.KQuant() {
		x = float64(dtype.RowBytes(kernels.ActivationDType(dt), cols))
	}
	return KernelCase{Kernel: "matvec_" + dt.String(), Shape: fmt.Sprintf("%dx%d", rows, cols), Flops: 2 * float64(rows*cols),
		Bytes: w + x, Set: w + x + 4*float64(rows), Bound: BandwidthBound,
		Setup: func(k kernels.Kernels) func() {
			r := rand.New(rand.NewPCG(9, 10))
			w := randomQuantMat(r, dt, rows, cols)
			x, dst := randSlice(r, cols), make([]float32, rows)
			sc := kernels.NewScratch(k, 1, cols)
			if q8, ok := k.(kernels.Q8Kernels); ok && (dt == dtype.Q8_0 || dt == dtype.Q4_0 || dt.KQuant()) {
				xq := make([]byte, dtype.RowBytes(kernels.ActivationDType(dt), cols))
				kernels.QuantizeActivations(q8, dt, x, xq)
				return func() { q8.MatMulQ8(dst, rows, xq, 1, w, nil, 0, rows, sc) }
			}
			return func() { k.MatMul(dst, rows, x, 1, w, nil, 0, rows, sc) }
		}}
}

// randomQuantMat returns a rows×cols matrix of random weights of the block-quantized
// dtype dt: quantized from normal values, or random k-quant super-blocks.
func randomQuantMat(r *rand.Rand, dt dtype.DType, rows, cols int) *kernels.Mat {
	var data []byte
	if dt.KQuant() {
		data = RandomKQuant(r, dt, rows*cols)
	} else {
		var err error
		if data, err = dtype.Quantize(dt, randSlice(r, rows*cols), cols); err != nil {
			panic(err)
		}
	}
	w, err := kernels.NewMat(dt, data, rows, cols)
	if err != nil {
		panic(err)
	}
	return w
}

// qgemmCase is a product of T tokens with block-quantized weights of dtype dt through
// MatMulQ8 (activations quantized outside the timed call), which runs as an int8 GEMM:
// judged against the backend's int8 peak, Flops counting 2 int8 operations per
// multiply-add. Backends without MatMulQ8 take float32 activations through MatMul.
func qgemmCase(dt dtype.DType, T, rows, cols int) KernelCase {
	adt := kernels.ActivationDType(dt)
	w, x, y := float64(rows*dtype.RowBytes(dt, cols)), float64(T*dtype.RowBytes(adt, cols)), 4*float64(T*rows)
	return KernelCase{Kernel: "gemm_" + dt.String(), Shape: fmt.Sprintf("%dx%dx%d", T, cols, rows), Flops: 2 * float64(T*rows*cols),
		Bytes: w + x, Set: w + x + y, Bound: Int8Bound,
		Setup: func(k kernels.Kernels) func() {
			r := rand.New(rand.NewPCG(11, 12))
			w := randomQuantMat(r, dt, rows, cols)
			x, dst := randSlice(r, T*cols), make([]float32, T*rows)
			sc := kernels.NewScratch(k, T, cols)
			if q8, ok := k.(kernels.Q8Kernels); ok {
				rb := dtype.RowBytes(adt, cols)
				xq := make([]byte, T*rb)
				for t := 0; t < T; t++ {
					kernels.QuantizeActivations(q8, dt, x[t*cols:(t+1)*cols], xq[t*rb:(t+1)*rb])
				}
				return func() { q8.MatMulQ8(dst, rows, xq, T, w, nil, 0, rows, sc) }
			}
			return func() { k.MatMul(dst, rows, x, T, w, nil, 0, rows, sc) }
		}}
}

// RandomKQuant returns n elements (a multiple of 256) of random k-quant super-blocks of
// dtype dt, for benchmarks: random bytes, with the f16 scales set to small normal
// numbers (2⁻¹⁴ to 2⁻¹³, q6_k's of either sign) so that the weights stay below about
// 0.25 in magnitude, as a model's do.
func RandomKQuant(r *rand.Rand, dt dtype.DType, n int) []byte {
	_, bs := dt.Block()
	b := make([]byte, n/dtype.QKBlock*bs)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	half := func() uint16 { return 1<<10 | uint16(r.IntN(1024)) }
	for o := 0; o < len(b); o += bs {
		if dt == dtype.Q6_K {
			binary.LittleEndian.PutUint16(b[o+208:], half()|uint16(r.IntN(2))<<15)
			continue
		}
		binary.LittleEndian.PutUint16(b[o:], half())
		binary.LittleEndian.PutUint16(b[o+2:], half())
	}
	return b
}

func attnCase(n, hd int) KernelCase {
	heads := 12
	kv, q := float64(heads*2*4*n*hd), float64(4*heads*hd)
	return KernelCase{Kernel: "attention", Shape: fmt.Sprintf("%dpos,%dheads,hd%d", n, heads, hd),
		Flops: float64(heads * 4 * n * hd), Bytes: kv + q, Set: kv + 2*q + 4*float64(n), Bound: BandwidthBound,
		Setup: func(k kernels.Kernels) func() {
			r := rand.New(rand.NewPCG(3, 4))
			stride := heads * hd
			kc, vc, q := randSlice(r, n*stride), randSlice(r, n*stride), randSlice(r, stride)
			out, scores := make([]float32, stride), make([]float32, n)
			return func() {
				for h := 0; h < heads; h++ {
					k.Attention(out[h*hd:(h+1)*hd], q[h*hd:(h+1)*hd], kc[h*hd:], vc[h*hd:], n, stride, 0.125, scores)
				}
			}
		}}
}

// vecCase is a kernel over vectors of n float32s that reads reads of them and touches
// touched (reads and writes, each vector counted once).
func vecCase(name string, n int, flopsPer float64, reads, touched int, f func(k kernels.Kernels, x, y, w []float32)) KernelCase {
	return KernelCase{Kernel: name, Shape: fmt.Sprint(n), Flops: flopsPer * float64(n), Bytes: 4 * float64(reads*n),
		Set: 4 * float64(touched*n), Bound: BandwidthBound,
		Setup: func(k kernels.Kernels) func() {
			r := rand.New(rand.NewPCG(5, 6))
			x, y, w := randSlice(r, n), randSlice(r, n), randSlice(r, n)
			return func() { f(k, x, y, w) }
		}}
}

// KernelCases returns the benchmark cases: the shapes GPT-2 small, Llama 7B and the
// stories models use. quick keeps one case per kernel.
func KernelCases(quick bool) []KernelCase {
	cs := []KernelCase{
		matCase(1, 768, 768), matCase(1, 3072, 768), matCase(1, 768, 3072), matCase(1, 4096, 4096),
		matCase(128, 3072, 768), matCase(64, 3072, 768),
		quantCase(dtype.Q8_0, 4096, 4096), quantCase(dtype.Q8_0, 768, 768),
		quantCase(dtype.Q4_0, 4096, 4096), quantCase(dtype.Q4_0, 768, 768),
		quantCase(dtype.Q4_K, 4096, 4096), quantCase(dtype.Q4_K, 768, 768),
		quantCase(dtype.Q5_K, 4096, 4096), quantCase(dtype.Q6_K, 4096, 4096),
		quantCase(dtype.F16, 11008, 4096), quantCase(dtype.BF16, 11008, 4096),
		qgemmCase(dtype.Q8_0, 64, 3072, 768), qgemmCase(dtype.Q4_0, 64, 3072, 768), qgemmCase(dtype.Q4_K, 64, 3072, 768),
		attnCase(256, 64), attnCase(1024, 64),
		vecCase("dot", 4096, 2, 2, 2, func(k kernels.Kernels, x, y, _ []float32) { k.Dot(x, y) }),
		vecCase("softmax", 1024, 4, 1, 1, func(k kernels.Kernels, x, _, _ []float32) { k.Softmax(x) }),
		vecCase("softmax", 32000, 4, 1, 1, func(k kernels.Kernels, x, _, _ []float32) { k.Softmax(x) }),
		vecCase("rmsnorm", 4096, 3, 2, 3, func(k kernels.Kernels, x, y, w []float32) { k.RMSNorm(y, x, w, 1e-5) }),
		vecCase("layernorm", 768, 5, 2, 3, func(k kernels.Kernels, x, y, w []float32) { k.LayerNorm(y, x, w, w, 1e-5) }),
		vecCase("gelu", 3072, 10, 1, 1, func(k kernels.Kernels, x, _, _ []float32) { k.GELU(x) }),
		vecCase("swiglu", 11008, 6, 2, 2, func(k kernels.Kernels, x, y, _ []float32) { k.SwiGLU(x, y) }),
		vecCase("add", 4096, 1, 2, 2, func(k kernels.Kernels, x, y, _ []float32) { k.Add(x, y) }),
		{Kernel: "rope", Shape: "32heads,hd128", Flops: 6 * 32 * 64, Bytes: 4 * (32*128 + 2*64), Set: 4 * (32*128 + 2*64), Bound: BandwidthBound,
			Setup: func(k kernels.Kernels) func() {
				r := rand.New(rand.NewPCG(7, 8))
				x, cos, sin := randSlice(r, 32*128), randSlice(r, 64), randSlice(r, 64)
				return func() { k.RoPE(x, 32, 128, cos, sin) }
			}},
		{Kernel: "rope_neox", Shape: "32heads,hd128", Flops: 6 * 32 * 64, Bytes: 4 * (32*128 + 2*64), Set: 4 * (32*128 + 2*64), Bound: BandwidthBound,
			Setup: func(k kernels.Kernels) func() {
				r := rand.New(rand.NewPCG(7, 8))
				x, cos, sin := randSlice(r, 32*128), randSlice(r, 64), randSlice(r, 64)
				return func() { k.RoPENeoX(x, 32, 128, cos, sin) }
			}},
	}
	if quick {
		seen := map[string]bool{}
		var q []KernelCase
		for _, c := range cs {
			if !seen[c.Kernel] {
				seen[c.Kernel] = true
				q = append(q, c)
			}
		}
		return q
	}
	return cs
}

// Time returns the mean nanoseconds per call of f, calling it for at least minTime.
func Time(f func(), minTime time.Duration) float64 {
	f() // warm up
	n := 1
	for {
		t0 := time.Now()
		for i := 0; i < n; i++ {
			f()
		}
		el := time.Since(t0)
		if el >= minTime || n >= 1<<30 {
			return float64(el.Nanoseconds()) / float64(n)
		}
		n = int(min(float64(n)*2, float64(n)*float64(minTime)/float64(max(el, time.Microsecond))*1.2+1))
	}
}

// BenchKernels times every case on every backend given (by name, with its kernels) and
// relates each result to the machine's limits and to the generic backend: a
// bandwidth-bound case to the one-thread read bandwidth of the smallest level of m that
// holds its working set (a call is timed over and over on the same data, so a working
// set that fits in L2 is read from L2), a compute-bound one to the backend's FMA peak,
// an int8-bound one to its int8 peak.
func BenchKernels(cases []KernelCase, ks map[string]kernels.Kernels, order []string, m Machine, minTime time.Duration) []KernelResult {
	var out []KernelResult
	for _, c := range cases {
		var genericNs float64
		for _, name := range order {
			k := ks[name]
			ns := Time(c.Setup(k), minTime)
			r := KernelResult{Kernel: c.Kernel, Shape: c.Shape, Backend: name, Bound: c.Bound, NsPerOp: ns,
				GFLOPS: c.Flops / ns, GBps: c.Bytes / ns, WorkingSet: c.Set}
			if name == "generic" {
				genericNs = ns
			}
			if l, ok := m.LevelFor(c.Set); ok {
				r.Level = l.Name
				if c.Bound == BandwidthBound {
					r.Limit = l.ReadGBps1
					r.PeakFrac = r.GBps / l.ReadGBps1
				}
			}
			if c.Bound == ComputeBound && m.PeakGFLOPS[name] > 0 {
				r.Limit = m.PeakGFLOPS[name]
				r.PeakFrac = r.GFLOPS / r.Limit
			}
			if c.Bound == Int8Bound && m.Int8PeakGOPS[name] > 0 {
				r.Limit = m.Int8PeakGOPS[name]
				r.PeakFrac = r.GFLOPS / r.Limit
			}
			out = append(out, r)
		}
		for i := range out {
			if out[i].Kernel == c.Kernel && out[i].Shape == c.Shape && genericNs > 0 {
				out[i].Speedup = genericNs / out[i].NsPerOp
			}
		}
	}
	return out
}
