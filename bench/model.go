package bench

import (
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/engine"
)

// ModelConfig says what BenchModel measures, as llama.cpp's llama-bench does: prompt
// processing of Prompt tokens (pp) and generation of Gen tokens one at a time (tg), for
// each thread count, after Depth tokens already in the KV cache.
type ModelConfig struct {
	Prompt  int    // pp test size; 0 skips it
	Gen     int    // tg test size; 0 skips it
	Depth   int    // tokens in the cache before each test
	Threads []int  // thread counts to try
	Backend string // "" = default selection
	Reps    int    // repetitions; the median is reported
	// Limits measures the machine's limits at each thread count first (read bandwidth,
	// and the FMA and int8 peaks where the backend can probe them) and reports every
	// result as a fraction of them: tg against the bandwidth, pp against the peaks.
	Limits bool
	// Sequences > 1 adds a batched generation test (as llama-batched-bench measures it):
	// that many sequences decoded together, Gen tokens each, one engine.Batch step per
	// token for all of them — a server's continuous batching at full occupancy. Its
	// tokens per second count every sequence's tokens.
	Sequences int
	// Repack loads the model with engine.Options.Repack.
	Repack bool
}

// ModelResult is one line of a model benchmark.
type ModelResult struct {
	Model     string  `json:"model"`
	Backend   string  `json:"backend"`
	Threads   int     `json:"threads"`
	Test      string  `json:"test"` // "pp128", "tg64", "tg64x8" (8 sequences batched)
	Depth     int     `json:"depth"`
	Tokens    int     `json:"tokens"`
	Seconds   float64 `json:"seconds"` // median over the repetitions
	TokPerSec float64 `json:"tokens_per_second"`
	WeightMB  float64 `json:"weight_mb"` // tensor bytes of the checkpoint
	// RepackedMB is the memory of the weights packed at load (ModelConfig.Repack).
	RepackedMB float64 `json:"repacked_mb,omitempty"`
	// StreamedMB is what one decoded token reads (engine.Footprint.StreamedBytes), and
	// WeightGBps (tg) that times tokens per second.
	StreamedMB float64 `json:"streamed_mb_per_token"`
	WeightGBps float64 `json:"weight_gbps,omitempty"`
	// GFLOPS (pp) counts 2 operations per multiply-add of the matrix products
	// (engine.Footprint): flops, or int8 ops for the products of block-quantized weights.
	GFLOPS float64 `json:"gflops,omitempty"`
	// With ModelConfig.Limits: the machine's read bandwidth at this thread count, the
	// backend's FMA and int8 peaks (one core's times the threads), and the result as a
	// fraction of the limit that bounds it: tg WeightGBps/ReadGBps; pp (and a batched
	// tg) GFLOPS/PeakGOPS, PeakGOPS being the rate at which the peaks would do its
	// products: Int8Share of their multiply-adds (those of block-quantized weights, run
	// as int8 products) at the int8 peak, the others at the FMA peak.
	ReadGBps     float64 `json:"read_gbps,omitempty"`
	PeakGFLOPS   float64 `json:"fma_peak_gflops,omitempty"`
	Int8PeakGOPS float64 `json:"int8_peak_gops,omitempty"`
	Int8Share    float64 `json:"int8_share,omitempty"`
	PeakGOPS     float64 `json:"peak_gops,omitempty"`
	Fraction     float64 `json:"fraction_of_limit,omitempty"`
}

// LimitText describes what r is judged against, for a table: "51.20 GB/s read" (tg),
// "1.23 TOPS int8" or "180.5 GFLOP/s FMA" (pp), "1.10 TOPS: int8 97% + FMA" when the
// products are of both kinds; "" when no limit was measured.
func (r ModelResult) LimitText() string {
	switch {
	case r.WeightGBps > 0:
		if r.ReadGBps > 0 {
			return fmt.Sprintf("%.2f GB/s read", r.ReadGBps)
		}
	case r.PeakGOPS > 0 && r.Int8Share >= 1:
		return FormatOps(r.PeakGOPS) + " int8"
	case r.PeakGOPS > 0 && r.Int8Share <= 0:
		return fmt.Sprintf("%.1f GFLOP/s FMA", r.PeakGOPS)
	case r.PeakGOPS > 0:
		return fmt.Sprintf("%s: int8 %s + FMA", FormatOps(r.PeakGOPS), FormatPercent(r.Int8Share))
	}
	return ""
}

// FormatOps renders a rate of int8 operations: "850.3 GOP/s", "1.23 TOPS".
func FormatOps(gops float64) string {
	if gops >= 1000 {
		return fmt.Sprintf("%.2f TOPS", gops/1000)
	}
	return fmt.Sprintf("%.1f GOP/s", gops)
}

// mixedPeak returns the rate, in G operations per second, at which products of which
// share int8 (0 to 1) run as int8 products and the rest as float FMAs would run at the
// peaks fma and int8 (GFLOP/s, GOP/s); 0 when a peak they need is unknown.
func mixedPeak(fma, int8, share float64) float64 {
	t := 0.0 // seconds per G operations
	if share > 0 {
		if int8 <= 0 {
			return 0
		}
		t += share / int8
	}
	if share < 1 {
		if fma <= 0 {
			return 0
		}
		t += (1 - share) / fma
	}
	return 1 / t
}

// setPeak sets r's int8 share to that of the products' int8 and all multiply-adds, its
// peak and its fraction of it (GFLOPS set).
func (r *ModelResult) setPeak(int8MACs, macs float64) {
	if macs <= 0 {
		return
	}
	r.Int8Share = int8MACs / macs
	r.PeakGOPS = mixedPeak(r.PeakGFLOPS, r.Int8PeakGOPS, r.Int8Share)
	if r.PeakGOPS > 0 {
		r.Fraction = r.GFLOPS / r.PeakGOPS
	}
}

// BenchModel measures the model at path, a file of any kind convert.Open reads (a GGUF
// file is used in place; a Hugging Face or llama2.c model is converted in memory, again
// for each thread count).
func BenchModel(path string, cfg ModelConfig) ([]ModelResult, error) {
	if cfg.Reps <= 0 {
		cfg.Reps = 3
	}
	if len(cfg.Threads) == 0 {
		cfg.Threads = []int{0}
	}
	var out []ModelResult
	for _, th := range cfg.Threads {
		f, err := convert.Open(path, convert.Options{})
		if err != nil {
			return nil, err
		}
		m, err := engine.FromFile(f, engine.Options{Backend: cfg.Backend, Threads: th, Repack: cfg.Repack})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		// Refuse what the model cannot hold before measuring anything.
		if err := fits(cfg, m.Config().ContextLength); err != nil {
			m.Close()
			return nil, err
		}
		var lim limits
		if cfg.Limits {
			lim = measureLimits(m.Backend(), m.Threads())
		}
		res, err := benchLoaded(m, filepath.Base(path), cfg, lim)
		m.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}

// fits checks that the depth and the larger test fit in a context of ctx positions,
// comparing them one at a time: a sum of huge counts could wrap around.
func fits(cfg ModelConfig, ctx int) error {
	if cfg.Depth < 0 || cfg.Prompt < 0 || cfg.Gen < 0 {
		return fmt.Errorf("negative token counts: depth %d, prompt %d, generation %d", cfg.Depth, cfg.Prompt, cfg.Gen)
	}
	if test := max(cfg.Prompt, cfg.Gen); cfg.Depth > ctx || test > ctx-cfg.Depth {
		return fmt.Errorf("depth %d + test %d tokens exceed the context length %d", cfg.Depth, test, ctx)
	}
	return nil
}

// limits are the machine's, at one thread count; zero when not measured.
type limits struct{ readGBps, peakGFLOPS, int8GOPS float64 }

// measureLimits measures read bandwidth with threads goroutines (with the best
// backend's streaming Dot whatever backend is measured: the limit is the machine's) and
// the FMA and int8 peaks of the backend's probes times threads (0 when it has none).
func measureLimits(backend string, threads int) limits {
	k, err := backends.Select(backend)
	if err != nil {
		k = nil
	}
	var l limits
	l.readGBps = ReadBandwidth(threads, 3, backends.Best().New())
	if k != nil {
		if p, ok := FMAPeak(k); ok {
			l.peakGFLOPS = p * float64(threads)
		}
		if p, ok := Int8Peak(k); ok {
			l.int8GOPS = p * float64(threads)
		}
	}
	return l
}

func benchLoaded(m *engine.Model, name string, cfg ModelConfig, lim limits) ([]ModelResult, error) {
	c := m.Config()
	if err := fits(cfg, c.ContextLength); err != nil {
		return nil, err
	}
	s := m.NewSession(engine.SessionOptions{Context: cfg.Depth + max(cfg.Prompt, cfg.Gen)})
	tokens := func(n, seed int) []int {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = (i*7919 + seed*104729) % c.VocabSize
		}
		return ids
	}
	depth := tokens(cfg.Depth, 1)
	prepare := func() error {
		s.Reset()
		if len(depth) > 0 {
			_, err := s.Forward(depth)
			return err
		}
		return nil
	}
	fp := m.Footprint()
	base := ModelResult{Model: name, Backend: m.Backend(), Threads: m.Threads(), Depth: cfg.Depth,
		WeightMB: float64(m.File().DataSize()) / 1e6, RepackedMB: float64(m.RepackedBytes()) / 1e6, StreamedMB: float64(fp.StreamedBytes) / 1e6,
		ReadGBps: lim.readGBps, PeakGFLOPS: lim.peakGFLOPS, Int8PeakGOPS: lim.int8GOPS}
	var out []ModelResult
	if cfg.Prompt > 0 {
		prompt := tokens(cfg.Prompt, 2)
		times := make([]float64, 0, cfg.Reps)
		for r := 0; r < cfg.Reps+1; r++ { // the first run warms caches and page tables
			if err := prepare(); err != nil {
				return nil, err
			}
			t0 := time.Now()
			if _, err := s.Forward(prompt); err != nil {
				return nil, err
			}
			if r > 0 {
				times = append(times, time.Since(t0).Seconds())
			}
		}
		r := base
		r.Test, r.Tokens, r.Seconds = fmt.Sprintf("pp%d", cfg.Prompt), cfg.Prompt, median(times)
		r.TokPerSec = float64(cfg.Prompt) / r.Seconds
		macs, int8 := m.PromptMACs(cfg.Prompt)
		r.GFLOPS = 2 * float64(macs) / r.Seconds / 1e9
		r.setPeak(float64(int8), float64(macs))
		out = append(out, r)
	}
	if cfg.Gen > 0 {
		gen := tokens(cfg.Gen, 3)
		times := make([]float64, 0, cfg.Reps)
		for r := 0; r < cfg.Reps+1; r++ {
			if err := prepare(); err != nil {
				return nil, err
			}
			t0 := time.Now()
			for _, id := range gen {
				if _, err := s.Forward([]int{id}); err != nil {
					return nil, err
				}
			}
			if r > 0 {
				times = append(times, time.Since(t0).Seconds())
			}
		}
		r := base
		r.Test, r.Tokens, r.Seconds = fmt.Sprintf("tg%d", cfg.Gen), cfg.Gen, median(times)
		r.TokPerSec = float64(cfg.Gen) / r.Seconds
		r.WeightGBps = float64(fp.StreamedBytes) * r.TokPerSec / 1e9
		if lim.readGBps > 0 {
			r.Fraction = r.WeightGBps / lim.readGBps
		}
		out = append(out, r)
	}
	if cfg.Gen > 0 && cfg.Sequences > 1 {
		r, err := benchBatched(m, cfg, base, tokens)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// benchBatched measures Sequences sequences generating Gen tokens each in batched steps,
// after Depth tokens of each already in its cache.
func benchBatched(m *engine.Model, cfg ModelConfig, base ModelResult, tokens func(n, seed int) []int) (ModelResult, error) {
	np := cfg.Sequences
	b, err := m.NewBatch(np, np)
	if err != nil {
		return ModelResult{}, err
	}
	sess := make([]*engine.Session, np)
	for i := range sess {
		sess[i] = m.NewSession(engine.SessionOptions{Context: cfg.Depth + cfg.Gen, Batch: max(1, min(cfg.Depth, 64))})
	}
	depth := tokens(cfg.Depth, 1)
	gen := tokens(cfg.Gen*np, 3)
	items := make([]engine.BatchItem, np)
	times := make([]float64, 0, cfg.Reps)
	for r := 0; r < cfg.Reps+1; r++ {
		for _, s := range sess {
			s.Reset()
			if len(depth) > 0 {
				if _, err := s.Forward(depth); err != nil {
					return ModelResult{}, err
				}
			}
		}
		t0 := time.Now()
		for k := 0; k < cfg.Gen; k++ {
			for i, s := range sess {
				items[i] = engine.BatchItem{Session: s, Tokens: gen[k*np+i : k*np+i+1], Logits: true}
			}
			if err := b.Forward(items); err != nil {
				return ModelResult{}, err
			}
		}
		if r > 0 {
			times = append(times, time.Since(t0).Seconds())
		}
	}
	res := base
	res.Test, res.Tokens, res.Seconds = fmt.Sprintf("tg%dx%d", cfg.Gen, np), cfg.Gen*np, median(times)
	res.TokPerSec = float64(res.Tokens) / res.Seconds
	fp := m.Footprint()
	macs := float64(fp.LayerMACs+fp.ClassifierMACs) * float64(res.Tokens)
	res.GFLOPS = 2 * macs / res.Seconds / 1e9
	res.setPeak(float64(fp.Int8LayerMACs+fp.Int8ClassifierMACs)*float64(res.Tokens), macs)
	return res, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
