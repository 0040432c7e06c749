package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/serve"
)

// openSynth synthesizes the preset into dir and opens it on threads threads.
func openSynth(tb testing.TB, dir, preset string, threads int) *engine.Model {
	tb.Helper()
	path, err := SynthModel(dir, preset, 1)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := convert.Open(path, convert.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := engine.FromFile(f, engine.Options{Threads: threads})
	if err != nil {
		f.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// TestBenchServeSmall runs the serving benchmark briefly on a small preset: every phase
// runs, nothing fails, and the figures are consistent.
func TestBenchServeSmall(t *testing.T) {
	// stories15m, not tiny: tiny generates its whole context in less than the scheduler
	// takes to start 3 requests, which the check of free sessions cannot tell from a leak.
	m := openSynth(t, t.TempDir(), "stories15m", 1)
	res, err := BenchServe(context.Background(), m, "stories15m", serve.Options{},
		ServeConfig{Clients: 3, Duration: 300 * time.Millisecond, SingleDuration: 200 * time.Millisecond, MaxTokens: 8, Prompt: 16})
	if err != nil {
		t.Fatal(err)
	}
	if res.Parallel != 3 || res.DType != "f32" || res.Threads != 1 {
		t.Fatalf("result %+v", res)
	}
	for _, rep := range []struct {
		name    string
		clients int
		r       float64
	}{{"single", 1, res.Single.GenTokPerSec}, {"load", 3, res.Load.GenTokPerSec}} {
		if rep.r <= 0 {
			t.Errorf("%s: %g tokens/s", rep.name, rep.r)
		}
	}
	if res.Single.Errors+res.Load.Errors != 0 || res.SlotError != "" {
		t.Fatalf("errors %v %v, slots %q", res.Single.ErrorSamples, res.Load.ErrorSamples, res.SlotError)
	}
	if res.Load.Requests < 3 || res.Load.Clients != 3 || res.PP.Test != "pp16" || res.PP.TokPerSec <= 0 {
		t.Fatalf("load %+v, pp %+v", res.Load, res.PP)
	}
	if len(res.Checks) != 5 || !res.Checks[0].Pass || !res.Checks[1].Pass {
		t.Fatalf("checks %+v", res.Checks)
	}
	if res.AggOverPP != res.Load.GenTokPerSec/res.PP.TokPerSec {
		t.Fatalf("aggregate / pp %g", res.AggOverPP)
	}
	// A llama layer's products: q and o dim², k and v dim·kvDim, the SwiGLU's three
	// dim·ffn; the classifier vocab·dim. In pp, the classifier and the last layer's o
	// and SwiGLU run once for the 16 prompt tokens.
	c := m.Config()
	layer := float64(c.NLayers * (2*c.Dim*c.Dim + 2*c.Dim*c.KVDim() + 3*c.Dim*c.FFNDim))
	tail := float64(c.Dim*c.Dim + 3*c.Dim*c.FFNDim)
	cls := float64(c.VocabSize * c.Dim)
	if want := (layer + cls) / (layer - tail*15/16 + cls/16); math.Abs(res.DecodeWork-want) > 1e-9*want || want < 2 {
		t.Fatalf("decode work %g × pp's, want %g", res.DecodeWork, want)
	}
	if n := res.Checks[3].Note; !strings.Contains(n, fmt.Sprintf("%.2f×", res.DecodeWork)) {
		t.Fatalf("the pp check's note %q does not give the decode work", n)
	}
	if _, err := BenchServe(context.Background(), m, "stories15m", serve.Options{}, ServeConfig{Chat: true}); err == nil {
		t.Fatal("chat without a template was accepted")
	}
}

// BenchmarkServeLoad serves a synthesized model on 2 threads and measures 8 concurrent
// streaming clients through HTTP against one stream alone and the engine's pp (see
// BenchServe). It runs the load once, however large b.N. By default it is short
// (stories15m's shape, 10 s of load); LMRUN_SERVE_PRESET, LMRUN_SERVE_DURATION and
// LMRUN_SERVE_MAX_TOKENS set the preset, the length of the load and max_tokens, e.g.
//
//	LMRUN_SERVE_PRESET=stories110m LMRUN_SERVE_DURATION=60s \
//	    go test ./bench -run '^$' -bench ServeLoad -benchtime 1x -timeout 30m
func BenchmarkServeLoad(b *testing.B) {
	preset, dur, maxTokens := "stories15m", 10*time.Second, 64
	if p := os.Getenv("LMRUN_SERVE_PRESET"); p != "" {
		preset = p
	}
	if s := os.Getenv("LMRUN_SERVE_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("LMRUN_SERVE_DURATION: %v", err)
		}
		dur = d
	}
	if s := os.Getenv("LMRUN_SERVE_MAX_TOKENS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("LMRUN_SERVE_MAX_TOKENS %q: want a count ≥ 1", s)
		}
		maxTokens = n
	}
	m := openSynth(b, b.TempDir(), preset, 2)
	var res ServeResult
	for b.Loop() {
		var err error
		res, err = BenchServe(context.Background(), m, preset, serve.Options{},
			ServeConfig{Clients: 8, Duration: dur, MaxTokens: maxTokens})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.Load.GenTokPerSec, "agg_tok/s")
	b.ReportMetric(res.Load.StreamTokPerSec, "stream_tok/s")
	b.ReportMetric(res.Single.GenTokPerSec, "single_tok/s")
	b.ReportMetric(res.PP.TokPerSec, "pp_tok/s")
	b.ReportMetric(res.AggOverSingle, "agg/single")
	b.ReportMetric(res.AggOverPP, "agg/pp")
	b.ReportMetric(res.Load.Gap.P99, "p99_gap_ms")
	b.ReportMetric(res.GapP99Ratio, "p99_gap/single")
	b.ReportMetric(res.Load.TTFT.P99, "p99_ttft_ms")
	b.ReportMetric(float64(res.Single.Errors+res.Load.Errors), "errors")
	for _, c := range res.Checks {
		if !c.Pass {
			b.Logf("FAIL %s: %.3g (limit %.3g) %s", c.Name, c.Value, c.Limit, c.Note)
		}
	}
}
