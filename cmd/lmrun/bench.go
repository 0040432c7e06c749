package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/bench"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "benchmark models (and kernels)",
		Subcommands: []*cli.Command{
			{
				Name:  "model",
				Usage: "prompt processing and generation speed, as llama-bench reports them",
				UsageText: "lmrun bench model -m MODEL.lmc [-m MODEL2.lmc] [-p 128] [-n 64] [-t 1,2] [--depth 0] [--json]\n\n" +
					"   lmrun bench model -m gpt2.lmc -m neo.lmc -p 0 -n 32 --depth 1024   # decode cost at a 1024-token context",
				Description: "pp N: a prompt of N tokens in one batched pass; tg N: N tokens generated one at a\n" +
					"time. Both start after --depth tokens already in the KV cache. Each figure is the\n" +
					"median of --reps runs after one warm-up run. weight GB/s = checkpoint bytes × tg tokens/s.",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "model", Aliases: []string{"m"}, Usage: "checkpoint `FILE` (repeatable)", Required: true},
					&cli.IntFlag{Name: "p", Value: 128, Usage: "prompt tokens (0: skip)"},
					&cli.IntFlag{Name: "n", Value: 64, Usage: "generated tokens (0: skip)"},
					&cli.StringFlag{Name: "threads", Aliases: []string{"t"}, Value: "0", Usage: "comma-separated thread `COUNTS` (0: all cores)"},
					&cli.IntFlag{Name: "depth", Usage: "tokens in the KV cache before each test"},
					&cli.IntFlag{Name: "reps", Value: 3, Usage: "repetitions (the median is reported)"},
					backendFlag,
					&cli.BoolFlag{Name: "json", Usage: "machine-readable output"},
				},
				Action: func(c *cli.Context) error {
					threads, err := parseInts(c.String("threads"))
					if err != nil {
						return fmt.Errorf("--threads: %w", err)
					}
					if c.Int("p") < 0 || c.Int("n") < 0 || c.Int("depth") < 0 {
						return fmt.Errorf("-p, -n and --depth must be ≥ 0")
					}
					cfg := bench.ModelConfig{Prompt: c.Int("p"), Gen: c.Int("n"), Depth: c.Int("depth"), Threads: threads,
						Backend: c.String("backend"), Reps: c.Int("reps")}
					var all []bench.ModelResult
					for _, path := range c.StringSlice("model") {
						res, err := bench.BenchModel(path, cfg)
						if err != nil {
							return err
						}
						all = append(all, res...)
					}
					if c.Bool("json") {
						enc := json.NewEncoder(c.App.Writer)
						enc.SetIndent("", "  ")
						return enc.Encode(all)
					}
					printModelTable(c.App.Writer, all)
					return nil
				},
			},
		},
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func printModelTable(w io.Writer, rs []bench.ModelResult) {
	fmt.Fprintln(w, "| model | size MB | backend | threads | test | depth | t/s | weight GB/s |")
	fmt.Fprintln(w, "|---|---:|---|---:|---|---:|---:|---:|")
	for _, r := range rs {
		gbps := ""
		if r.WeightGBps > 0 {
			gbps = fmt.Sprintf("%.2f", r.WeightGBps)
		}
		fmt.Fprintf(w, "| %s | %.1f | %s | %d | %s | %d | %.2f | %s |\n", r.Model, r.WeightMB, r.Backend, r.Threads, r.Test, r.Depth, r.TokPerSec, gbps)
	}
}
