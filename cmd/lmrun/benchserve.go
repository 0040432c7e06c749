package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/bench"
	"github.com/lmrun/lmrun/serve/loadtest"
)

func benchServeCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serving throughput and latency: concurrent streaming clients of lmrun serve, through HTTP",
		UsageText: "lmrun bench serve -m MODEL [-t N] [--clients 8] [--duration 60s] [--max-tokens 128] [--parallel N] [-p 128] [--chat] [--json]\n\n" +
			"   lmrun bench serve -m stories110m.lmc -t 2 --duration 20s",
		Description: "Serves the model in-process on a loopback port, as lmrun serve does, and measures it as\n" +
			"its clients see it: one streaming client alone for --single-duration (the baseline),\n" +
			"then --clients streaming clients at once for --duration, each sending one greedy\n" +
			"request of --max-tokens after the other, with a prompt of its own; then --parallel\n" +
			"requests at once, which must all start before any ends (no session leaked); then the\n" +
			"engine's batched prompt throughput (pp, as lmrun bench model) at the same threads.\n\n" +
			"Reported, as llama-server's figures: tokens/s of each stream (mean over requests) and\n" +
			"of all together, time to first token and between streamed tokens. Marked PASS or FAIL:\n" +
			"no errors, no session leaked, aggregate ≥ 4× one stream alone (f32 weights), aggregate\n" +
			"≥ 80% of pp, p99 time between tokens ≤ 3× one stream's alone.",
		Flags: []cli.Flag{
			modelFlag, tokenizerFlag, chatTemplateFlag, threadsFlag, backendFlag, f32ActFlag, repackFlag, kvFlag,
			&cli.IntFlag{Name: "clients", Value: 8, Usage: "`N` concurrent streaming clients"},
			&cli.DurationFlag{Name: "duration", Value: time.Minute, Usage: "length of the concurrent run (no request starts after it)"},
			&cli.DurationFlag{Name: "single-duration", Usage: "length of the single-stream baseline", DefaultText: "--duration / 4"},
			&cli.IntFlag{Name: "max-tokens", Aliases: []string{"n"}, Value: 128, Usage: "max_tokens `N` of each request"},
			&cli.IntFlag{Name: "parallel", Aliases: []string{"np"}, Usage: "`N` sessions of the server", DefaultText: "--clients"},
			&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Usage: "context length `N` of each session", DefaultText: "the model's, at most 1024"},
			&cli.IntFlag{Name: "ubatch-size", Aliases: []string{"ub"}, Value: 32, Usage: "the most prompt tokens `N` a batched step feeds (as lmrun serve --ubatch-size)"},
			&cli.IntFlag{Name: "p", Value: 128, Usage: "prompt tokens of the pp test the load is compared with"},
			&cli.BoolFlag{Name: "chat", Usage: "send chat completions (the model's template or --chat-template) instead of completions"},
			&cli.BoolFlag{Name: "json", Usage: "machine-readable output"},
			&cli.BoolFlag{Name: "check", Usage: "exit with an error when a target is not met (for scripts and CI)"},
		},
		Action: benchServeAction,
	}
}

func benchServeAction(c *cli.Context) error {
	if c.Int("clients") < 1 || c.Int("max-tokens") < 1 || c.Int("p") < 1 || c.Int("parallel") < 0 || c.Int("ctx") < 0 {
		return errors.New("--clients, --max-tokens and -p must be ≥ 1, --parallel and --ctx ≥ 0")
	}
	if c.Duration("duration") <= 0 || c.Duration("single-duration") < 0 {
		return errors.New("--duration must be > 0 and --single-duration ≥ 0")
	}
	m, err := openModel(c, engineOptions(c))
	if err != nil {
		return err
	}
	defer m.Close()
	so, noChat, err := serverOptions(c, m)
	if err != nil {
		return err
	}
	if c.Bool("chat") && noChat != nil {
		return fmt.Errorf("--chat: %w", noChat)
	}
	cfg := bench.ServeConfig{Clients: c.Int("clients"), Duration: c.Duration("duration"), SingleDuration: c.Duration("single-duration"),
		MaxTokens: c.Int("max-tokens"), Prompt: c.Int("p"), Chat: c.Bool("chat"), Progress: c.App.ErrWriter}
	res, err := bench.BenchServe(c.Context, m, filepath.Base(c.String("model")), so, cfg)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printServeResult(c.App.Writer, res, cfg.MaxTokens)
	}
	if c.Bool("check") && !res.Pass {
		return errors.New("bench serve: " + failedChecks(res))
	}
	return nil
}

// failedChecks names the checks of r that apply and fail, as "targets not met: a, b".
func failedChecks(r bench.ServeResult) string {
	var names []string
	for _, ch := range r.Checks {
		if ch.Applies && !ch.Pass {
			names = append(names, ch.Name)
		}
	}
	return "targets not met: " + strings.Join(names, ", ")
}

// printServeResult prints a serving benchmark as two tables: the runs, and the checks.
func printServeResult(w io.Writer, r bench.ServeResult, maxTokens int) {
	fmt.Fprintf(w, "model %s (%s), backend %s, %d threads, %d sessions, max_tokens %d\n\n",
		r.Model, r.DType, r.Backend, r.Threads, r.Parallel, maxTokens)
	fmt.Fprintln(w, "| run | clients | requests | errors | tokens | t/s per stream | t/s aggregate | prompt t/s | TTFT p50 ms | TTFT p99 ms | gap p50 ms | gap p99 ms | gap max ms |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, run := range []struct {
		name string
		rep  loadtest.Report
	}{{"single stream", r.Single}, {"concurrent", r.Load}} {
		rep := run.rep
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %.2f | %.2f | %.1f | %.0f | %.0f | %.1f | %.1f | %.1f |\n",
			run.name, rep.Clients, rep.Requests, rep.Errors, rep.GenTokens, rep.StreamTokPerSec, rep.GenTokPerSec,
			rep.PromptTokPerSec, rep.TTFT.P50, rep.TTFT.P99, rep.Gap.P50, rep.Gap.P99, rep.Gap.Max)
	}
	fmt.Fprintf(w, "| engine %s | | | | %d | | %.2f | | | | | | |\n\n", r.PP.Test, r.PP.Tokens, r.PP.TokPerSec)
	fmt.Fprintln(w, "| check | value | target | result |")
	fmt.Fprintln(w, "|---|---:|---:|---|")
	for _, ch := range r.Checks {
		var value, target string
		switch {
		case strings.Contains(ch.Name, "pp"):
			value, target = fmt.Sprintf("%.0f%%", 100*ch.Value), fmt.Sprintf("≥ %.0f%%", 100*ch.Limit)
		case strings.Contains(ch.Name, "/"):
			op := map[bool]string{true: "≥", false: "≤"}[ch.AtLeast]
			value, target = fmt.Sprintf("%.2f×", ch.Value), fmt.Sprintf("%s %g×", op, ch.Limit)
		default:
			value, target = fmt.Sprintf("%.0f", ch.Value), fmt.Sprintf("%.0f", ch.Limit)
		}
		mark := map[bool]string{true: "PASS", false: "FAIL"}[ch.Pass]
		if !ch.Applies {
			mark = "n/a"
		}
		if ch.Note != "" {
			mark += " (" + ch.Note + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", ch.Name, value, target, mark)
	}
	for _, e := range append(r.Single.ErrorSamples, r.Load.ErrorSamples...) {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	fmt.Fprintf(w, "\n%s\n", map[bool]string{true: "PASS", false: "FAIL"}[r.Pass])
}
