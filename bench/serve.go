package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/serve"
	"github.com/lmrun/lmrun/serve/loadtest"
)

// The serving load's targets (see BenchServe).
const (
	// MinAggOverSingle is the least aggregate generation throughput of the concurrent
	// clients, as a multiple of one stream's alone, on f32 weights.
	MinAggOverSingle = 4.0
	// MinAggOverPP is the least aggregate generation throughput as a fraction of the
	// engine's batched prompt throughput (pp) at the same threads, on every dtype.
	MinAggOverPP = 0.8
	// MaxGapP99Ratio is the most the p99 time between streamed tokens under load may
	// be, as a multiple of one stream's alone.
	MaxGapP99Ratio = 3.0
)

// ServeConfig says what BenchServe measures.
type ServeConfig struct {
	// Clients is the number of concurrent streaming clients (0: 8).
	Clients int
	// Duration is the length of the concurrent run (0: 60 s): no request starts after
	// it, the running ones finish.
	Duration time.Duration
	// SingleDuration is the length of the single-stream baseline (0: Duration / 4).
	SingleDuration time.Duration
	// MaxTokens is each request's max_tokens (0: 128).
	MaxTokens int
	// Prompt is the size of the pp test the load is compared with (0: 128).
	Prompt int
	// Chat sends chat completions (the server needs a template) instead of completions.
	Chat bool
	// Progress, if not nil, receives a line as each phase starts.
	Progress io.Writer
}

// Check is one pass-or-fail mark of a serving benchmark.
type Check struct {
	Name string `json:"name"`
	// Value is compared with Limit: Value ≥ Limit passes when AtLeast, Value ≤ Limit
	// otherwise.
	Value   float64 `json:"value"`
	Limit   float64 `json:"limit"`
	AtLeast bool    `json:"at_least"`
	// Applies is false when the target does not hold for this model (the 4× target is
	// for f32 weights); such a check never fails.
	Applies bool   `json:"applies"`
	Pass    bool   `json:"pass"`
	Note    string `json:"note,omitempty"`
}

// ServeResult is what BenchServe measured.
type ServeResult struct {
	Model    string `json:"model"`
	Backend  string `json:"backend"`
	Threads  int    `json:"threads"`
	DType    string `json:"dtype"` // the type holding most of the weight matrices' bytes
	Parallel int    `json:"parallel"`
	// Single is one client alone, Load the concurrent clients.
	Single loadtest.Report `json:"single"`
	Load   loadtest.Report `json:"load"`
	// PP is the engine's batched prompt throughput at the same threads.
	PP ModelResult `json:"pp"`
	// SlotError is why the server did not serve Parallel requests at once after the
	// load ("" when it did).
	SlotError string `json:"slot_error,omitempty"`
	// AggOverSingle and AggOverPP are Load's aggregate generation throughput over
	// Single's and over PP's; GapP99Ratio is Load's p99 time between tokens over
	// Single's.
	AggOverSingle float64 `json:"aggregate_over_single"`
	AggOverPP     float64 `json:"aggregate_over_pp"`
	GapP99Ratio   float64 `json:"gap_p99_over_single"`
	// DecodeWork is a generated token's matrix work (every layer and the classifier)
	// over a prompt token's in the pp test (engine.Model.PromptMACs over the prompt's
	// tokens): 1/DecodeWork is the share of pp a batched decode step reaches when its
	// products run exactly as fast as pp's, and above which no step can go unless they
	// run faster.
	DecodeWork float64 `json:"decode_work_over_pp"`
	Checks     []Check `json:"checks"`
	Pass       bool    `json:"pass"`
}

// BenchServe serves m with so (Parallel defaulting to the clients; Context to the
// model's, at most 1024) on a loopback port and measures it through HTTP, as any
// OpenAI client would see it: a warm-up request; one streaming client alone for
// cfg.SingleDuration (the baseline); cfg.Clients concurrent streaming clients for
// cfg.Duration; then Parallel requests at once, which must all start before any ends
// (no session leaked); and the engine's own batched prompt throughput (pp) at the same
// threads. It checks the load against MinAggOverSingle (f32 weights only),
// MinAggOverPP and MaxGapP99Ratio, with no request failing.
func BenchServe(ctx context.Context, m *engine.Model, name string, so serve.Options, cfg ServeConfig) (ServeResult, error) {
	if cfg.Clients < 0 || cfg.Duration < 0 || cfg.SingleDuration < 0 || cfg.MaxTokens < 0 || cfg.Prompt < 0 || so.Parallel < 0 {
		return ServeResult{}, fmt.Errorf("bench serve: clients %d, duration %v, single %v, max tokens %d, prompt %d, parallel %d: want ≥ 0",
			cfg.Clients, cfg.Duration, cfg.SingleDuration, cfg.MaxTokens, cfg.Prompt, so.Parallel)
	}
	if cfg.Clients == 0 {
		cfg.Clients = 8
	}
	if cfg.Duration == 0 {
		cfg.Duration = time.Minute
	}
	if cfg.SingleDuration == 0 {
		cfg.SingleDuration = cfg.Duration / 4
	}
	if cfg.MaxTokens == 0 {
		cfg.MaxTokens = 128
	}
	if cfg.Prompt == 0 {
		cfg.Prompt = 128
	}
	if so.Parallel == 0 {
		so.Parallel = cfg.Clients
	}
	if so.Context == 0 {
		so.Context = min(m.Config().ContextLength, 1024)
	}
	if so.Name == "" {
		so.Name = name
	}
	if cfg.Chat && so.Template == nil {
		return ServeResult{}, errors.New("bench serve: chat completions need a chat template")
	}
	if err := fits(ModelConfig{Prompt: cfg.Prompt}, m.Config().ContextLength); err != nil {
		return ServeResult{}, fmt.Errorf("bench serve: the pp test: %w", err)
	}
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	srv, err := serve.New(m, so)
	if err != nil {
		return ServeResult{}, fmt.Errorf("bench serve: %w", err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ServeResult{}, fmt.Errorf("bench serve: listening: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-served
	}()

	res := ServeResult{Model: name, Backend: m.Backend(), Threads: m.Threads(), DType: mainDType(m), Parallel: so.Parallel}
	o := loadtest.Options{URL: "http://" + ln.Addr().String() + "/v1", MaxTokens: cfg.MaxTokens, Chat: cfg.Chat, APIKey: so.APIKey, Seed: 1}
	say("serving %s on %s (%d sessions of %d tokens, %d threads)", name, o.URL, so.Parallel, so.Context, m.Threads())

	warm := o
	warm.Clients, warm.MaxRequests, warm.MaxTokens = 1, 1, min(cfg.MaxTokens, 8)
	if rep, err := loadtest.Run(ctx, warm); err != nil {
		return res, fmt.Errorf("bench serve: warming up: %w", err)
	} else if rep.Errors > 0 {
		return res, fmt.Errorf("bench serve: warming up: %s", rep.ErrorSamples[0])
	}

	say("one stream alone for %v ...", cfg.SingleDuration)
	single := o
	single.Clients, single.Duration = 1, cfg.SingleDuration
	if res.Single, err = loadtest.Run(ctx, single); err != nil {
		return res, fmt.Errorf("bench serve: single stream: %w", err)
	}

	say("%d concurrent streams for %v ...", cfg.Clients, cfg.Duration)
	load := o
	load.Clients, load.Duration = cfg.Clients, cfg.Duration
	if res.Load, err = loadtest.Run(ctx, load); err != nil {
		return res, fmt.Errorf("bench serve: %d streams: %w", cfg.Clients, err)
	}

	say("%d requests at once: are all sessions free? ...", so.Parallel)
	slots := o
	slots.MaxTokens = so.Context // long: the check closes them once all have started
	if err := loadtest.CheckSlots(ctx, slots, so.Parallel, 5*time.Minute); err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("bench serve: %w", err)
		}
		res.SlotError = err.Error()
	}

	say("engine pp%d at %d threads ...", cfg.Prompt, m.Threads())
	pp, err := benchLoaded(m, name, ModelConfig{Prompt: cfg.Prompt, Reps: 3}, limits{})
	if err != nil {
		return res, fmt.Errorf("bench serve: pp%d: %w", cfg.Prompt, err)
	}
	res.PP = pp[0]
	fp := m.Footprint()
	if macs, _ := m.PromptMACs(cfg.Prompt); macs > 0 {
		per := float64(macs) / float64(cfg.Prompt)
		res.DecodeWork = float64(fp.LayerMACs+fp.ClassifierMACs) / per
	}
	res.judge()
	return res, nil
}

// judge computes the ratios and the checks.
func (r *ServeResult) judge() {
	ratio := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return a / b
	}
	r.AggOverSingle = ratio(r.Load.GenTokPerSec, r.Single.GenTokPerSec)
	r.AggOverPP = ratio(r.Load.GenTokPerSec, r.PP.TokPerSec)
	r.GapP99Ratio = ratio(r.Load.Gap.P99, r.Single.Gap.P99)
	errs := float64(r.Single.Errors + r.Load.Errors)
	slotNote := "all sessions free after the load"
	if r.SlotError != "" {
		slotNote = r.SlotError
	}
	f32 := r.DType == "f32"
	ppNote := ""
	if r.DecodeWork > 0 {
		ppNote = fmt.Sprintf("a generated token is %.2f× a prompt token's matrix work: %.0f%% at pp's own speed",
			r.DecodeWork, 100/r.DecodeWork)
	}
	r.Checks = []Check{
		{Name: "errors", Value: errs, Limit: 0, Applies: true, Pass: errs == 0},
		{Name: "sessions leaked", Value: map[bool]float64{true: 1, false: 0}[r.SlotError != ""], Limit: 0, Applies: true,
			Pass: r.SlotError == "", Note: slotNote},
		{Name: "aggregate / single stream", Value: r.AggOverSingle, Limit: MinAggOverSingle, AtLeast: true, Applies: f32,
			Pass: !f32 || r.AggOverSingle >= MinAggOverSingle, Note: map[bool]string{true: "", false: "target for f32 weights only"}[f32]},
		{Name: "aggregate / engine pp", Value: r.AggOverPP, Limit: MinAggOverPP, AtLeast: true, Applies: true,
			Pass: r.AggOverPP >= MinAggOverPP, Note: ppNote},
		{Name: "p99 token gap / single stream", Value: r.GapP99Ratio, Limit: MaxGapP99Ratio, Applies: true,
			Pass: r.GapP99Ratio > 0 && r.GapP99Ratio <= MaxGapP99Ratio},
	}
	r.Pass = true
	for _, c := range r.Checks {
		r.Pass = r.Pass && c.Pass
	}
}

// mainDType returns the name of the type holding most bytes of m's matrices.
func mainDType(m *engine.Model) string {
	bytes := map[string]int64{}
	for _, t := range m.File().Tensors {
		if len(t.Shape) >= 2 {
			bytes[t.DType.String()] += t.Size
		}
	}
	best := ""
	for dt, n := range bytes {
		if best == "" || n > bytes[best] || (n == bytes[best] && dt < best) {
			best = dt
		}
	}
	return best
}
