package engine_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
)

// synthModel writes a seeded random model of cfg and loads it.
func synthModel(t testing.TB, cfg model.Config, opts engine.Options) *engine.Model {
	t.Helper()
	ck, err := synth.Build(cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	return writeAndLoad(t, ck, opts)
}

// writeAndLoad writes a checkpoint to a temporary file and loads it.
func writeAndLoad(t testing.TB, ck *format.Checkpoint, opts engine.Options) *engine.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.lmc")
	if err := ck.WriteFile(path, nil); err != nil {
		t.Fatal(err)
	}
	m, err := engine.Load(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func preset(t testing.TB, name string) model.Config {
	t.Helper()
	p, err := synth.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return p.Config
}

func randomTokens(n, vocab int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 1))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = r.IntN(vocab)
	}
	return ids
}

// maxRelDiff returns max|a-b| / max|b|.
func maxRelDiff(a []float32, b []float32) float64 {
	var d, m float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = math.Max(m, math.Abs(float64(b[i])))
	}
	return d / m
}

// TestDecodeMatchesPrefill checks that token-by-token decoding with the KV cache gives
// the logits of one batched pass, for both stacks and with prompts longer than a batch.
func TestDecodeMatchesPrefill(t *testing.T) {
	for _, name := range []string{"tiny", "tiny-gpt2"} {
		t.Run(name, func(t *testing.T) {
			m := synthModel(t, preset(t, name), engine.Options{Threads: 2})
			v := m.Config().VocabSize
			ids := randomTokens(40, v, 3)
			all, err := m.NewSession(engine.SessionOptions{Batch: 16}).ForwardAll(ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := m.NewSession(engine.SessionOptions{})
			for i, id := range ids {
				logits, err := s.Forward([]int{id})
				if err != nil {
					t.Fatal(err)
				}
				if d := maxRelDiff(logits, all[i*v:(i+1)*v]); d > 1e-5 {
					t.Fatalf("position %d: decode differs from prefill by %.3g of max|logit|", i, d)
				}
			}
			// Forward (last logits only) in uneven chunks agrees as well.
			s.Reset()
			if _, err := s.Forward(ids[:13]); err != nil {
				t.Fatal(err)
			}
			last, err := s.Forward(ids[13:])
			if err != nil {
				t.Fatal(err)
			}
			if d := maxRelDiff(last, all[(len(ids)-1)*v:]); d > 1e-5 {
				t.Fatalf("chunked prefill differs by %.3g", d)
			}
		})
	}
}

// TestThreadCountInvariance: the work split never changes a result bit, on f32, f16
// and bf16 weights, with rows long enough (an FFN of 1408) that the products over the
// prompt lay x out part by part where a backend does (kernels.XPreparer), once per
// product for every thread.
func TestThreadCountInvariance(t *testing.T) {
	cfg := preset(t, "tiny-gpt2")
	cfg.FFNDim = 1408
	ids := randomTokens(30, cfg.VocabSize, 5)
	base, err := synth.Build(cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		ck, err := convert.WithDType(base, dt)
		if err != nil {
			t.Fatal(err)
		}
		var ref []float32
		for _, threads := range []int{1, 2, 3, 5} {
			m := writeAndLoad(t, ck, engine.Options{Threads: threads})
			got, err := m.NewSession(engine.SessionOptions{}).ForwardAll(ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ref == nil {
				ref = got
				continue
			}
			for i := range ref {
				if math.Float32bits(ref[i]) != math.Float32bits(got[i]) {
					t.Fatalf("%v, %d threads: logit %d is %v, 1 thread gave %v", dt, threads, i, got[i], ref[i])
				}
			}
		}
	}
}

func TestContextFullAndBadTokens(t *testing.T) {
	m := synthModel(t, preset(t, "tiny"), engine.Options{Threads: 1})
	s := m.NewSession(engine.SessionOptions{Context: 10})
	if _, err := s.Forward(randomTokens(11, 512, 1)); !errors.Is(err, engine.ErrContextFull) {
		t.Fatalf("11 tokens into a 10-token context: got %v, want ErrContextFull", err)
	}
	if s.Pos() != 0 {
		t.Fatalf("a rejected call moved the position to %d", s.Pos())
	}
	if _, err := s.Forward(randomTokens(10, 512, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Forward([]int{1}); !errors.Is(err, engine.ErrContextFull) {
		t.Fatalf("token past a full context: got %v", err)
	}
	s.Reset()
	for _, bad := range [][]int{{512}, {-1}, {3, math.MaxInt32}, {}} {
		if _, err := s.Forward(bad); err == nil {
			t.Errorf("Forward(%v) succeeded", bad)
		}
	}
}

// TestSharedModelConcurrent: sessions on one Model in parallel goroutines generate what
// one session alone does.
func TestSharedModelConcurrent(t *testing.T) {
	m := synthModel(t, preset(t, "tiny"), engine.Options{Threads: 2})
	gen := func(seed uint64) []int {
		s := m.NewSession(engine.SessionOptions{})
		var out []int
		smp, err := engine.NewSampler(engine.SamplerConfig{Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: seed})
		if err != nil {
			t.Error(err)
			return nil
		}
		_, err = s.Generate(t.Context(), []int{256, 72, 105}, engine.GenerateOptions{MaxTokens: 30, Sampler: smp, IgnoreEOS: true},
			func(id int) error { out = append(out, id); return nil })
		if err != nil {
			t.Error(err)
		}
		return out
	}
	want := [2][]int{gen(1), gen(2)}
	var wg sync.WaitGroup
	got := make([][]int, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = gen(uint64(i%2 + 1))
		}()
	}
	wg.Wait()
	for i, g := range got {
		w := want[i%2]
		if len(g) != len(w) || len(g) != 30 {
			t.Fatalf("goroutine %d: %d tokens, want %d", i, len(g), len(w))
		}
		for j := range g {
			if g[j] != w[j] {
				t.Fatalf("goroutine %d differs at token %d", i, j)
			}
		}
	}
}

// TestKVCacheGrowth: the cache starts small, grows as positions are used (never past the
// context), and decoding across the growth points matches a batched pass.
func TestKVCacheGrowth(t *testing.T) {
	cfg := preset(t, "tiny")
	cfg.ContextLength = 700
	m := synthModel(t, cfg, engine.Options{Threads: 2})
	v := cfg.VocabSize
	perPos := int64(cfg.KVDim() * cfg.NLayers * 2 * 4)
	ids := randomTokens(600, v, 11)
	all, err := m.NewSession(engine.SessionOptions{}).ForwardAll(ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := m.NewSession(engine.SessionOptions{})
	if got := s.KVBytes(); got != 256*perPos {
		t.Fatalf("new session holds %d bytes of cache, want 256 positions (%d)", got, 256*perPos)
	}
	if s.KVMaxBytes() != 700*perPos {
		t.Fatalf("KVMaxBytes %d", s.KVMaxBytes())
	}
	if _, err := s.Forward(ids[:250]); err != nil {
		t.Fatal(err)
	}
	for i := 250; i < len(ids); i++ {
		logits, err := s.Forward(ids[i : i+1])
		if err != nil {
			t.Fatal(err)
		}
		if d := maxRelDiff(logits, all[i*v:(i+1)*v]); d > 1e-5 {
			t.Fatalf("position %d: %.3g", i, d)
		}
	}
	if got := s.KVBytes(); got != 700*perPos {
		t.Fatalf("after 600 positions the cache holds %d bytes, want the capped %d", got, 700*perPos)
	}
}

// TestForwardAllocatesNothing: once a session exists, a forward pass allocates nothing
// (every buffer is the session's, made by NewSession) — a decode step after a prefill,
// and prefill batches of the session's batch size and of an odd size — on every backend
// this CPU runs, for every weight dtype (the k-quants, alone and mixed with q8_0 and q4_0
// in one product, on a model of their own), with quantized or exact f32 activations,
// with an f32 or f16 KV cache, on two threads (and on one for f32 weights). The models are small but
// have rows long enough (an FFN of 1056 columns) that the kernels' scratch would not fit
// a bounded stack array; the GPT-2-style one adds biases, a local (ring) layer and
// projected embeddings.
func TestForwardAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	llama := preset(t, "tiny")
	llama.Dim, llama.NLayers, llama.NHeads, llama.NKVHeads, llama.HeadDim = 32, 1, 2, 1, 16
	llama.RopeDim, llama.FFNDim, llama.VocabSize, llama.AttnWindows = 16, 1056, 260, []int{0}
	gpt2 := preset(t, "tiny-gpt2")
	gpt2.Dim, gpt2.NHeads, gpt2.HeadDim, gpt2.FFNDim, gpt2.VocabSize = 32, 2, 16, 128, 260
	gpt2.NKVHeads, gpt2.AttnWindows, gpt2.EmbedDim = 2, []int{0, 8}, 64
	models := map[string]*format.Checkpoint{}
	for name, cfg := range map[string]model.Config{"llama": llama, "gpt2": gpt2} {
		ck, err := synth.Build(cfg, 7)
		if err != nil {
			t.Fatal(err)
		}
		models[name] = ck
	}
	dtypes := []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0}
	// The k-quants need rows of a multiple of 256: a llama of width 256 with an FFN of
	// 1280, its matrices all of one k-quant, or mixed so that q, k and v (and gate and up)
	// take q8_k and q8_0 activations in one product.
	kcfg := preset(t, "tiny")
	kcfg.Dim, kcfg.NLayers, kcfg.NHeads, kcfg.NKVHeads, kcfg.HeadDim = 256, 1, 4, 2, 64
	kcfg.RopeDim, kcfg.FFNDim, kcfg.VocabSize, kcfg.AttnWindows = 64, 1280, 260, []int{0}
	kmodels := map[string]*format.Checkpoint{}
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		kmodels[dt.String()] = kquantModel(t, kcfg, func(string) dtype.DType { return dt })
	}
	mixed := map[string]dtype.DType{"attn_q": dtype.Q4_K, "attn_k": dtype.Q8_0, "attn_v": dtype.Q6_K,
		"attn_output": dtype.Q5_K, "ffn_gate": dtype.Q4_0, "ffn_up": dtype.Q4_K, "ffn_down": dtype.Q6_K}
	kmodels["mixed"] = kquantModel(t, kcfg, func(name string) dtype.DType {
		for k, dt := range mixed {
			if strings.Contains(name, k) {
				return dt
			}
		}
		return dtype.Q6_K // token_embd, the tied classifier
	})
	const batch, odd = 64, 37
	prompt := randomTokens(batch, 258, 9)
	for _, b := range backends.List() {
		t.Run(b.Name, func(t *testing.T) {
			if !b.Available() {
				t.Skipf("this CPU cannot run %s: it lacks %s", b.Name, strings.Join(b.Missing(), ", "))
			}
			for _, arch := range []string{"llama", "gpt2"} {
				for _, dt := range dtypes {
					ck, err := convert.WithDType(models[arch], dt)
					if err != nil {
						t.Fatal(err)
					}
					acts := []bool{false}
					if dt == dtype.Q8_0 || dt == dtype.Q4_0 {
						acts = append(acts, true)
					}
					threadCounts := []int{2}
					if dt == dtype.F32 {
						threadCounts = append(threadCounts, 1)
					}
					for _, f32Act := range acts {
						for _, threads := range threadCounts {
							m := writeAndLoad(t, ck, engine.Options{Backend: b.Name, Threads: threads, F32Activations: f32Act})
							for _, half := range []bool{false, true} {
								name := fmt.Sprintf("%s %v, f32 activations %v, %d threads, f16 KV %v", arch, dt, f32Act, threads, half)
								s := m.NewSession(engine.SessionOptions{Batch: batch, HalfKV: half})
								forwardAllocs(t, name, s, prompt, odd)
							}
						}
					}
				}
			}
			for _, name := range []string{"q4_k", "q5_k", "q6_k", "mixed"} {
				for _, f32Act := range []bool{false, true} {
					m := writeAndLoad(t, kmodels[name], engine.Options{Backend: b.Name, Threads: 2, F32Activations: f32Act})
					s := m.NewSession(engine.SessionOptions{Batch: batch})
					forwardAllocs(t, fmt.Sprintf("llama %s, f32 activations %v", name, f32Act), s, prompt, odd)
				}
			}
		})
	}
}

// kquantModel returns a seeded random model of cfg whose matrices (all but the position
// table) are stored as dtypeOf(name): k-quants as random super-blocks with small scales
// (lmrun has no k-quant quantizer), other types converted.
func kquantModel(t *testing.T, cfg model.Config, dtypeOf func(name string) dtype.DType) *format.Checkpoint {
	t.Helper()
	ck, err := synth.Build(cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	out := &format.Checkpoint{Meta: ck.Meta}
	for _, s := range ck.Tensors {
		dt := dtypeOf(s.Name)
		switch {
		case len(s.Shape) != 2 || s.Name == "position_embd.weight":
		case dt.KQuant():
			s = format.Bytes(s.Name, dt, s.Shape, randomKQuant(r, dt, s.Shape[0]*s.Shape[1]))
		default:
			one, err := convert.WithDType(&format.Checkpoint{Meta: ck.Meta, Tensors: []format.Source{s}}, dt)
			if err != nil {
				t.Fatal(err)
			}
			s = one.Tensors[0]
		}
		out.Tensors = append(out.Tensors, s)
	}
	return out
}

// randomKQuant returns n elements of random k-quant super-blocks of dtype dt whose f16
// scales are small normal numbers (2⁻¹⁴ to 2⁻¹³), so that the weights stay below about
// 0.25 in magnitude.
func randomKQuant(r *rand.Rand, dt dtype.DType, n int) []byte {
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

// forwardAllocs checks that s allocates nothing in prefill passes of len(prompt) and of
// odd tokens from position 0, and in decode steps after a prefill. The first pass of
// each runs before AllocsPerRun measures.
func forwardAllocs(t *testing.T, name string, s *engine.Session, prompt []int, odd int) {
	t.Helper()
	forward := func(ids []int) {
		if _, err := s.Forward(ids); err != nil {
			t.Fatal(err)
		}
	}
	for _, T := range []int{len(prompt), odd} {
		if n := testing.AllocsPerRun(2, func() { s.Reset(); forward(prompt[:T]) }); n != 0 {
			t.Errorf("%s: %.1f allocations per prefill of %d tokens", name, n, T)
		}
	}
	s.Reset()
	forward(prompt)
	id := 0
	if n := testing.AllocsPerRun(5, func() { forward([]int{id}); id++ }); n != 0 {
		t.Errorf("%s: %.1f allocations per decoded token", name, n)
	}
}

// TestLocalLayers: GPT-Neo-style alternating global/local layers decode token by token
// (through the ring buffers) to the logits of batched passes (through the banded stage),
// well past the window; local layers' cache memory stays constant.
func TestLocalLayers(t *testing.T) {
	cfg := preset(t, "tiny-gpt2")
	cfg.NLayers, cfg.AttnWindows, cfg.AttnScale = 4, []int{0, 8, 0, 5}, 1
	m := synthModel(t, cfg, engine.Options{Threads: 2})
	v := cfg.VocabSize
	ids := randomTokens(100, v, 21)
	all, err := m.NewSession(engine.SessionOptions{Batch: 13}).ForwardAll(ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := m.NewSession(engine.SessionOptions{Batch: 16})
	if _, err := s.Forward(ids[:20]); err != nil { // prefill longer than both windows
		t.Fatal(err)
	}
	for i := 20; i < len(ids); i++ {
		logits, err := s.Forward(ids[i : i+1])
		if err != nil {
			t.Fatal(err)
		}
		if d := maxRelDiff(logits, all[i*v:(i+1)*v]); d > 1e-5 {
			t.Fatalf("position %d: decode differs from the batched pass by %.3g", i, d)
		}
	}

	// All-local: the cache is exactly the windows, whatever the length.
	cfg.AttnWindows = []int{8, 5, 8, 5}
	m = synthModel(t, cfg, engine.Options{Threads: 1})
	s = m.NewSession(engine.SessionOptions{})
	perPos := int64(cfg.KVDim() * 2 * 4)
	want := (8 + 5 + 8 + 5) * perPos
	for i, id := range randomTokens(cfg.ContextLength, v, 3) {
		if _, err := s.Forward([]int{id}); err != nil {
			t.Fatal(err)
		}
		if got := s.KVBytes(); got != want {
			t.Fatalf("after %d tokens the local caches hold %d bytes, want %d", i+1, got, want)
		}
	}
	if s.KVMaxBytes() != want {
		t.Fatalf("KVMaxBytes %d, want %d", s.KVMaxBytes(), want)
	}
}

// TestHalfKV: an f16 cache takes half the memory and moves the logits only by the
// rounding of keys and values to 11 significant bits, for global and ring (local) layers,
// in batched and token-by-token passes.
func TestHalfKV(t *testing.T) {
	cfg := preset(t, "tiny-gpt2")
	cfg.NLayers, cfg.AttnWindows = 4, []int{0, 6, 0, 6}
	m := synthModel(t, cfg, engine.Options{Threads: 2})
	v := cfg.VocabSize
	ids := randomTokens(60, v, 8)
	full, err := m.NewSession(engine.SessionOptions{}).ForwardAll(ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := m.NewSession(engine.SessionOptions{HalfKV: true, Batch: 16})
	f32 := m.NewSession(engine.SessionOptions{Batch: 16})
	if s.KVBytes()*2 != f32.KVBytes() || s.KVMaxBytes()*2 != f32.KVMaxBytes() {
		t.Fatalf("f16 cache %d bytes (max %d), f32 %d (max %d)", s.KVBytes(), s.KVMaxBytes(), f32.KVBytes(), f32.KVMaxBytes())
	}
	half, err := s.ForwardAll(ids[:30], nil)
	if err != nil {
		t.Fatal(err)
	}
	worst := maxRelDiff(half, full[:30*v])
	for i := 30; i < len(ids); i++ {
		logits, err := s.Forward(ids[i : i+1])
		if err != nil {
			t.Fatal(err)
		}
		worst = max(worst, maxRelDiff(logits, full[i*v:(i+1)*v]))
	}
	if worst > 2e-3 || worst == 0 {
		t.Fatalf("f16 cache moves the logits by %.3g of max|logit| (want small but non-zero)", worst)
	}
	t.Logf("f16 cache: max|Δ|/max|logit| = %.2g", worst)
}

// TestLocalLayersGrowLazily: rings wider than a new session's cache start small and grow
// with the sequence as global layers do, then wrap; decoding through every stage matches
// the batched pass.
func TestLocalLayersGrowLazily(t *testing.T) {
	cfg := preset(t, "tiny-gpt2")
	cfg.NLayers, cfg.AttnWindows, cfg.AttnScale, cfg.ContextLength = 4, []int{0, 300, 0, 270}, 1, 700
	m := synthModel(t, cfg, engine.Options{Threads: 2})
	v := cfg.VocabSize
	ids := randomTokens(650, v, 5)
	all, err := m.NewSession(engine.SessionOptions{Batch: 37}).ForwardAll(ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	perPos := int64(cfg.KVDim() * 2 * 4)
	s := m.NewSession(engine.SessionOptions{Batch: 16})
	if got := s.KVBytes(); got != 4*256*perPos {
		t.Fatalf("new session holds %d bytes of cache, want 256 positions a layer (%d)", got, 4*256*perPos)
	}
	if _, err := s.Forward(ids[:250]); err != nil {
		t.Fatal(err)
	}
	for i := 250; i < len(ids); i++ {
		logits, err := s.Forward(ids[i : i+1])
		if err != nil {
			t.Fatal(err)
		}
		if d := maxRelDiff(logits, all[i*v:(i+1)*v]); d > 1e-5 {
			t.Fatalf("position %d: decode differs from the batched pass by %.3g", i, d)
		}
	}
	if got, want := s.KVBytes(), (700+300+700+270)*perPos; got != want {
		t.Fatalf("after %d positions the cache holds %d bytes, want %d", len(ids), got, want)
	}
	// A prefill past a window that is still growing.
	s = m.NewSession(engine.SessionOptions{Batch: 16})
	if _, err := s.Forward(ids[:20]); err != nil {
		t.Fatal(err)
	}
	logits, err := s.Forward(ids[20:600])
	if err != nil {
		t.Fatal(err)
	}
	if d := maxRelDiff(logits, all[599*v:600*v]); d > 1e-5 {
		t.Fatalf("prefill across the ring's growth differs from the batched pass by %.3g", d)
	}
}

// TestAbsurdWindowCostsNothing: attention windows as wide as the longest context lmrun
// accepts cost nothing until positions fill them, as the global layers' caches do.
func TestAbsurdWindowCostsNothing(t *testing.T) {
	cfg := preset(t, "tiny")
	cfg.ContextLength = 1 << 21
	cfg.AttnWindows = []int{cfg.ContextLength - 1, cfg.ContextLength - 1}
	m := synthModel(t, cfg, engine.Options{Threads: 1})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s := m.NewSession(engine.SessionOptions{})
	if _, err := s.Forward([]int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Fatalf("a session over windows of %d positions allocated %d MB up front", cfg.ContextLength-1, alloc>>20)
	}
}

// TestPromptAttentionBlocksBitwise: a prompt's attention taken by blocks of queries (a
// pass of at least two blocks, on a backend whose scores are matrix products) gives
// every position exactly the logits small batches give, which take each query alone —
// over global layers, over local ones whose windows are shorter than a block, after
// earlier positions in the cache, on every backend this CPU runs.
func TestPromptAttentionBlocksBitwise(t *testing.T) {
	local := preset(t, "tiny")
	local.AttnWindows = []int{0, 5}
	gpt2 := preset(t, "tiny-gpt2")
	gpt2.AttnWindows = []int{9, 0}
	cfgs := map[string]model.Config{"llama": preset(t, "tiny"), "gpt2": preset(t, "tiny-gpt2"), "llama local 5": local, "gpt2 local 9": gpt2}
	for _, b := range backends.List() {
		if !b.Available() {
			continue
		}
		for name, cfg := range cfgs {
			m := synthModel(t, cfg, engine.Options{Backend: b.Name, Threads: 2})
			v := cfg.VocabSize
			ids := randomTokens(90, v, 11)
			forward := func(batch int) []float32 {
				s := m.NewSession(engine.SessionOptions{Batch: batch})
				// 7 tokens first, so that the blocks start past position 0.
				first, err := s.ForwardAll(ids[:7], nil)
				if err != nil {
					t.Fatal(err)
				}
				rest, err := s.ForwardAll(ids[7:], nil)
				if err != nil {
					t.Fatal(err)
				}
				return append(first, rest...)
			}
			want, got := forward(4), forward(128)
			for i := range want {
				if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
					t.Fatalf("%s, %s: position %d logit %d is %v in one pass, %v in batches of 4", b.Name, name, i/v, i%v, got[i], want[i])
				}
			}
		}
	}
}

// TestLastLayerRowsOnly: a pass that wants only its last token's logits runs the last
// layer past the cache writes on that row alone, and a chunk that wants none stops
// there; the logits are the bits of a pass that computes every row (ForwardAll), and
// the cache the chunks leave gives the next token the bits it gets after one pass, on
// both stacks, with local layers, and with a float32 or half-size cache.
func TestLastLayerRowsOnly(t *testing.T) {
	local := preset(t, "tiny-gpt2")
	local.NLayers, local.AttnWindows = 4, []int{0, 8, 0, 5}
	for _, c := range []struct {
		name string
		cfg  model.Config
	}{{"tiny", preset(t, "tiny")}, {"tiny-gpt2", preset(t, "tiny-gpt2")}, {"local", local}} {
		m := synthModel(t, c.cfg, engine.Options{Threads: 2})
		v := m.Config().VocabSize
		ids := randomTokens(41, v, 17)
		for _, half := range []bool{false, true} {
			all, err := m.NewSession(engine.SessionOptions{Batch: 64, HalfKV: half}).ForwardAll(ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := m.NewSession(engine.SessionOptions{Batch: 64, HalfKV: half})
			if _, err := s.Forward(ids[:40]); err != nil {
				t.Fatal(err)
			}
			last, err := s.Forward(ids[40:])
			if err != nil {
				t.Fatal(err)
			}
			one, err := m.NewSession(engine.SessionOptions{Batch: 64, HalfKV: half}).Forward(ids)
			if err != nil {
				t.Fatal(err)
			}
			chunked := m.NewSession(engine.SessionOptions{Batch: 16, HalfKV: half})
			if _, err := chunked.Forward(ids[:40]); err != nil { // chunks of 16, 16 and 8
				t.Fatal(err)
			}
			next, err := chunked.Forward(ids[40:])
			if err != nil {
				t.Fatal(err)
			}
			want := all[40*v : 41*v]
			for i := range want {
				if math.Float32bits(one[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s half=%v: logit %d of a prompt's last token: %v, every row computed gives %v", c.name, half, i, one[i], want[i])
				}
				if math.Float32bits(next[i]) != math.Float32bits(last[i]) {
					t.Fatalf("%s half=%v: logit %d after chunks of 16: %v, after one pass %v", c.name, half, i, next[i], last[i])
				}
			}
		}
	}
}
