package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/bench"
	"github.com/lmrun/lmrun/engine/parallel"
	"github.com/lmrun/lmrun/kernels"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "benchmark models (and kernels)",
		Subcommands: []*cli.Command{
			benchKernelsCommand(),
			benchCompareCommand(),
			benchServeCommand(),
			{
				Name:  "model",
				Usage: "prompt processing and generation speed, as llama-bench reports them",
				UsageText: "lmrun bench model -m MODEL [-m MODEL2] [-p 128] [-n 64] [-t 1,2] [--depth 0] [--backend a,b|all] [--json]\n\n" +
					"   lmrun bench model -m gpt2.lmc -m neo.lmc -p 0 -n 32 --depth 1024   # decode cost at a 1024-token context\n" +
					"   lmrun bench model -m llama-q8_0.gguf                                  # a GGUF file, used in place\n" +
					"   lmrun bench model -m gpt2.lmc --backend all                           # every backend this CPU runs, side by side",
				Description: "pp N: a prompt of N tokens in one batched pass; tg N: N tokens generated one at a\n" +
					"time. Both start after --depth tokens already in the KV cache. Each figure is the\n" +
					"median of --reps runs after one warm-up run. tg is bound by memory bandwidth:\n" +
					"achieved = weight bytes one token reads × tokens/s, against the read bandwidth\n" +
					"measured at the same thread count. pp is bound by arithmetic: achieved = 2 operations\n" +
					"per multiply-add of the matrix products, against one core's peak times the threads:\n" +
					"the int8 peak for q8_0, q4_0 and k-quant weights (int8 products), the FMA peak for\n" +
					"float weights, the time both would take for a model with both.",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "model", Aliases: []string{"m"}, Usage: "model `PATH`, of any kind run takes (repeatable)", Required: true},
					&cli.IntFlag{Name: "p", Value: 128, Usage: "prompt tokens (0: skip)"},
					&cli.IntFlag{Name: "n", Value: 64, Usage: "generated tokens (0: skip)"},
					&cli.StringFlag{Name: "threads", Aliases: []string{"t"}, Value: "0", Usage: "comma-separated thread `COUNTS` (0: one per physical core)", DefaultText: "one per physical core"},
					&cli.IntFlag{Name: "depth", Usage: "tokens in the KV cache before each test"},
					&cli.IntFlag{Name: "reps", Value: 3, Usage: "repetitions (the median is reported)"},
					&cli.IntFlag{Name: "np", Usage: "also tg with `N` sequences decoded together, one batched pass per token (what lmrun serve --parallel N does at full load; t/s counts all N)"},
					&cli.BoolFlag{Name: "limits", Value: true, Usage: "measure the machine's read bandwidth and FMA and int8 peaks first and report each result as a fraction of them (--limits=false skips it)"},
					&cli.StringFlag{Name: "backend", Usage: "kernel backend `NAMES`, comma-separated, each measured in turn (with its own peaks), or all: every one this CPU runs", DefaultText: "$LMRUN_BACKEND, else the best this CPU runs"},
					repackFlag,
					&cli.BoolFlag{Name: "json", Usage: "machine-readable output"},
				},
				Action: func(c *cli.Context) error {
					threads, err := parseInts(c.String("threads"))
					if err != nil {
						return fmt.Errorf("--threads: %w", err)
					}
					if c.Int("p") < 0 || c.Int("n") < 0 || c.Int("depth") < 0 || c.Int("np") < 0 || c.Int("np") > 1024 {
						return fmt.Errorf("-p, -n and --depth must be ≥ 0, --np 0 to 1024")
					}
					backendNames, err := modelBackends(c.String("backend"))
					if err != nil {
						return err
					}
					cfg := bench.ModelConfig{Prompt: c.Int("p"), Gen: c.Int("n"), Depth: c.Int("depth"), Threads: threads,
						Reps: c.Int("reps"), Limits: c.Bool("limits"), Sequences: c.Int("np"), Repack: c.Bool("repack")}
					if cfg.Limits {
						fmt.Fprintln(c.App.ErrWriter, "measuring the machine at each thread count and backend: read bandwidth, FMA and int8 peaks ...")
					}
					var all []bench.ModelResult
					for _, path := range c.StringSlice("model") {
						for _, b := range backendNames {
							cfg.Backend = b
							res, err := bench.BenchModel(path, cfg)
							if err != nil {
								return err
							}
							all = append(all, res...)
						}
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

// modelBackends parses bench model's --backend: "" is the default selection, "all"
// every backend this CPU runs, else comma-separated names, each checked.
func modelBackends(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return []string{""}, nil
	}
	var names []string
	if s == "all" {
		for _, b := range backends.List() {
			if b.Available() {
				names = append(names, b.Name)
			}
		}
		return names, nil
	}
	seen := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		b, err := backends.Resolve(strings.TrimSpace(n))
		if err != nil {
			return nil, fmt.Errorf("--backend: %w", err)
		}
		if !seen[b.Name] {
			seen[b.Name] = true
			names = append(names, b.Name)
		}
	}
	return names, nil
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
	fmt.Fprintln(w, "| model | size MB | backend | threads | test | depth | t/s | achieved | limit | of limit |")
	fmt.Fprintln(w, "|---|---:|---|---:|---|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		var got, frac string
		limit := r.LimitText()
		if r.WeightGBps > 0 { // tg: bandwidth-bound
			got = fmt.Sprintf("%.2f GB/s", r.WeightGBps)
		} else if r.GFLOPS > 0 && r.Int8Share > 0 { // pp: compute-bound, int8 products
			got = bench.FormatOps(r.GFLOPS)
		} else if r.GFLOPS > 0 {
			got = fmt.Sprintf("%.1f GFLOP/s", r.GFLOPS)
		}
		if r.Fraction > 0 {
			frac = fmt.Sprintf("%.0f%%", 100*r.Fraction)
		}
		fmt.Fprintf(w, "| %s | %.1f | %s | %d | %s | %d | %.2f | %s | %s | %s |\n", r.Model, r.WeightMB, backendCell(r), r.Threads, r.Test, r.Depth, r.TokPerSec, got, limit, frac)
	}
}

// backendCell is a result's backend for the table, "avx512 +repack (93 MB)" when its
// weights were packed at load.
func backendCell(r bench.ModelResult) string {
	if r.RepackedMB > 0 {
		return fmt.Sprintf("%s +repack (%.0f MB)", r.Backend, r.RepackedMB)
	}
	return r.Backend
}

func benchKernelsCommand() *cli.Command {
	return &cli.Command{
		Name:  "kernels",
		Usage: "time every kernel at real model shapes on every available backend",
		UsageText: "lmrun bench kernels [--backend generic,avx2] [--quick] [--time 300ms] [--json] [--svg chart.svg]\n\n" +
			"   lmrun bench kernels --svg kernels.svg",
		Description: "Measures the machine's limits first: the read bandwidth of a working set resident in\n" +
			"each cache level (half its size; L1 and L2 with one thread, L3 and DRAM with one and all\n" +
			"threads) and the FMA and int8 peaks of each backend that can probe them. Then reports\n" +
			"each kernel's time, GFLOP/s, GB/s, speedup over generic and fraction of the limit it is\n" +
			"bound by: a bandwidth-bound kernel against the one-thread read bandwidth of the smallest\n" +
			"level its working set (weights, inputs and outputs of one call) fits in, a compute-bound\n" +
			"one against the FMA peak, the products of quantized weights with several tokens (gemm_q8_0\n" +
			"...; GFLOP/s there counts int8 ops) against the int8 peak. --json output is what lmrun\n" +
			"bench compare reads.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "backend", Usage: "comma-separated backend `NAMES` (default: every available one)"},
			&cli.BoolFlag{Name: "quick", Usage: "one shape per kernel"},
			&cli.DurationFlag{Name: "time", Value: 300 * time.Millisecond, Usage: "minimum time per measurement"},
			&cli.BoolFlag{Name: "json", Usage: "machine-readable output"},
			&cli.StringFlag{Name: "svg", Usage: "also draw the results as a chart into `FILE`"},
		},
		Action: func(c *cli.Context) error {
			ks := map[string]kernels.Kernels{}
			var order []string
			names := backends.List()
			if s := c.String("backend"); s != "" {
				names = nil
				for _, n := range strings.Split(s, ",") {
					b, err := backends.Resolve(strings.TrimSpace(n))
					if err != nil {
						return err
					}
					names = append(names, b)
				}
			}
			for _, b := range names {
				if b.Available() {
					ks[b.Name] = b.New()
					order = append(order, b.Name)
				}
			}
			if _, ok := ks["generic"]; !ok {
				ks["generic"] = kernels.Reference{} // the baseline of every speedup
				order = append([]string{"generic"}, order...)
			}
			errw := c.App.ErrWriter
			fmt.Fprintln(errw, "measuring the machine: read bandwidth of each cache level and DRAM, FMA and int8 peaks ...")
			m := bench.MeasureMachine(ks, order, backends.Best().New(), parallel.DefaultThreads(), 3)
			cases := bench.KernelCases(c.Bool("quick"))
			res := bench.BenchKernels(cases, ks, order, m, c.Duration("time"))
			if path := c.String("svg"); path != "" {
				if err := writeFileWith(path, func(w io.Writer) error { return bench.WriteSVG(w, res, m) }); err != nil {
					return err
				}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(bench.KernelReport{Kind: bench.KernelReportKind, Machine: m, Results: res})
			}
			w := c.App.Writer
			fmt.Fprintf(w, "%s\n", m.Title())
			fmt.Fprintf(w, "read bandwidth, GB/s:\n")
			for _, l := range m.Levels {
				size := "-"
				if l.SizeBytes > 0 {
					size = bench.FormatBytes(float64(l.SizeBytes))
				}
				line := fmt.Sprintf("  %-4s %9s  %7.1f (1 thread)", l.Name, size, l.ReadGBps1)
				if l.ReadGBpsN > 0 {
					line += fmt.Sprintf("  %7.1f (%d threads)", l.ReadGBpsN, m.Threads)
				}
				fmt.Fprintln(w, line)
			}
			for _, l := range m.PeakLines() {
				fmt.Fprintln(w, l)
			}
			fmt.Fprintln(w, "\n| kernel | shape | backend | ns/op | GFLOP/s | GB/s | × generic | working set | of limit |")
			fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|")
			for _, r := range res {
				frac := "n/a"
				if r.PeakFrac > 0 {
					frac = bench.FormatPercent(r.PeakFrac) + " " + r.LimitName()
				}
				fmt.Fprintf(w, "| %s | %s | %s | %.0f | %.2f | %.2f | %.2f | %s | %s |\n", r.Kernel, r.Shape, r.Backend, r.NsPerOp, r.GFLOPS, r.GBps, r.Speedup,
					bench.FormatBytes(r.WorkingSet), frac)
			}
			return nil
		},
	}
}

// writeFileWith creates path, lets write fill it and closes it, reporting the first error.
func writeFileWith(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
