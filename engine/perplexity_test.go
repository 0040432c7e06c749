package engine_test

import (
	"context"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// readPPL parses expected/stories260K_ppl_*.txt: "tokens_scored=N mean_nll=X ppl=Y".
func readPPL(t *testing.T, path string) (tokens int, mean, ppl float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("%s: field %q", path, f)
		}
		var err error
		switch k {
		case "tokens_scored":
			tokens, err = strconv.Atoi(v)
		case "mean_nll":
			mean, err = strconv.ParseFloat(v, 64)
		case "ppl":
			ppl, err = strconv.ParseFloat(v, 64)
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if tokens == 0 || mean == 0 || ppl == 0 {
		t.Fatalf("%s: incomplete: %q", path, b)
	}
	return tokens, mean, ppl
}

// TestPerplexityStories260K reproduces the reference perplexity of stories260K on
// TinyStories text: BOS + the whole text tokenized with tok512, windows of 512.
func TestPerplexityStories260K(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates 105k tokens")
	}
	wantTokens, wantMean, wantPPL := readPPL(t, fixtures.Path(t, "expected", "stories260K_ppl_tinystories_valid_a.txt"))
	text, err := os.ReadFile(fixtures.Path(t, "text", "tinystories_valid_a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m := convertAndLoad(t, fixtures.Path(t, "llama2c", "stories260K.bin"), fixtures.Path(t, "llama2c", "tok512.bin"), engine.Options{})
	ids, err := m.Tokenizer().Encode(string(text), true, false)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	res, err := m.Perplexity(context.Background(), ids, engine.PerplexityOptions{Context: 512, Progress: func(done, total int) {
		calls++
		if total != len(ids)-1 || done > total {
			t.Errorf("progress %d/%d", done, total)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tokens in %d windows, mean NLL %.6f, perplexity %.6f, %.0f tokens/s", res.Tokens, res.Windows, res.MeanNLL(), res.Perplexity(), res.TokensPerSecond())
	if res.Tokens != wantTokens {
		t.Errorf("%d tokens scored, want %d", res.Tokens, wantTokens)
	}
	if d := math.Abs(res.MeanNLL() - wantMean); d > 5e-6 {
		t.Errorf("mean NLL %.6f, want %.6f", res.MeanNLL(), wantMean)
	}
	if got := math.Round(res.Perplexity()*1e4) / 1e4; got != math.Round(wantPPL*1e4)/1e4 {
		t.Errorf("perplexity %.6f, want %.6f to 4 decimals", res.Perplexity(), wantPPL)
	}
	if wantWindows := (len(ids) - 2 + 510) / 511; res.Windows != wantWindows || res.Evaluated != res.Tokens || calls == 0 {
		t.Errorf("%d windows (want %d), %d evaluated, %d progress calls", res.Windows, wantWindows, res.Evaluated, calls)
	}
}

// referenceNLL scores token j with a fresh session over ids[begin:j], one window at
// a time, by the window rule of Perplexity's documentation.
func referenceNLL(t *testing.T, m *engine.Model, ids []int, W, S int) (float64, int) {
	t.Helper()
	var sum float64
	scored := make([]int, len(ids))
	prevEnd := 1
	for begin := 0; ; begin += S {
		end := min(begin+W, len(ids))
		for j := max(prevEnd, begin+1); j < end; j++ {
			out, err := m.NewSession(engine.SessionOptions{}).ForwardAll(ids[begin:j], nil)
			if err != nil {
				t.Fatal(err)
			}
			row := out[(j-begin-1)*m.Config().VocabSize:]
			mx := math.Inf(-1)
			for _, x := range row {
				mx = math.Max(mx, float64(x))
			}
			var z float64
			for _, x := range row {
				z += math.Exp(float64(x) - mx)
			}
			sum += mx + math.Log(z) - float64(row[ids[j]])
			scored[j]++
		}
		prevEnd = end
		if end == len(ids) {
			break
		}
	}
	for j := 1; j < len(ids); j++ {
		if scored[j] != 1 {
			t.Fatalf("reference: token %d scored %d times", j, scored[j])
		}
	}
	return sum, len(ids) - 1
}

func TestPerplexityWindows(t *testing.T) {
	for _, name := range []string{"tiny", "tiny-gpt2"} {
		cfg := preset(t, name)
		m := synthModel(t, cfg, engine.Options{Threads: 1})
		ids := randomTokens(45, cfg.VocabSize, 3)
		for _, c := range []struct{ W, S, chunk int }{
			{8, 0, 0}, {8, 7, 3}, {8, 3, 0}, {8, 1, 2}, {16, 5, 4}, {2, 1, 0}, {64, 0, 5}, {45, 0, 0}, {44, 43, 7},
		} {
			res, err := m.Perplexity(context.Background(), ids, engine.PerplexityOptions{Context: c.W, Stride: c.S, Chunk: c.chunk})
			if err != nil {
				t.Fatalf("%s W %d S %d: %v", name, c.W, c.S, err)
			}
			S := c.S
			if S == 0 {
				S = c.W - 1
			}
			want, n := referenceNLL(t, m, ids, c.W, S)
			if res.Tokens != n || math.Abs(res.NLL-want) > 1e-4*math.Abs(want) {
				t.Errorf("%s W %d S %d: %d tokens, NLL %.6f; want %d, %.6f", name, c.W, S, res.Tokens, res.NLL, n, want)
			}
		}
	}
}

func TestPerplexityErrors(t *testing.T) {
	cfg := preset(t, "tiny")
	m := synthModel(t, cfg, engine.Options{Threads: 1})
	ids := randomTokens(20, cfg.VocabSize, 1)
	for name, c := range map[string]struct {
		ids  []int
		opts engine.PerplexityOptions
	}{
		"one token":      {ids[:1], engine.PerplexityOptions{Context: 8}},
		"stride = W":     {ids, engine.PerplexityOptions{Context: 8, Stride: 8}},
		"negative":       {ids, engine.PerplexityOptions{Context: 8, Stride: -1}},
		"window 1":       {ids, engine.PerplexityOptions{Context: 1}},
		"window too big": {ids, engine.PerplexityOptions{Context: cfg.ContextLength + 1}},
		"bad id":         {append([]int{0}, cfg.VocabSize), engine.PerplexityOptions{Context: 8}},
	} {
		if _, err := m.Perplexity(context.Background(), c.ids, c.opts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Perplexity(ctx, ids, engine.PerplexityOptions{Context: 8}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

// TestPerplexityCancel: a cancellation stops the evaluation before the next batch.
func TestPerplexityCancel(t *testing.T) {
	cfg := preset(t, "tiny")
	m := synthModel(t, cfg, engine.Options{Threads: 1})
	ids := randomTokens(200, cfg.VocabSize, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	_, err := m.Perplexity(ctx, ids, engine.PerplexityOptions{Context: 64, Stride: 16, Chunk: 8, Progress: func(int, int) {
		calls++
		cancel()
	}})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("%v after %d chunks, want context.Canceled after 1", err, calls)
	}
}
