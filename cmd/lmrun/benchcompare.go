package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/bench"
)

func benchCompareCommand() *cli.Command {
	return &cli.Command{
		Name:      "compare",
		Usage:     "lay the bench kernels --json results of several machines side by side",
		ArgsUsage: "A.json B.json ...",
		UsageText: "lmrun bench compare A.json B.json ... [--all-backends] [--svg FILE] [--json]\n\n" +
			"   lmrun bench kernels --json > zen5.json    # on each machine\n" +
			"   lmrun bench compare zen5.json m2.json --svg compare.svg",
		Description: "Reads the output of lmrun bench kernels --json from each file and matches the results\n" +
			"by kernel and shape: per machine (a column, named by the CPU model and architecture the\n" +
			"file records, else by the file name) the time of its fastest backend, which backend that\n" +
			"is and its GB/s or GFLOP/s, and for every machine after the first its speedup over the\n" +
			"first (× first, above 1: faster). --all-backends compares backend by backend instead.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all-backends", Usage: "one row per kernel, shape and backend instead of each machine's fastest backend"},
			&cli.StringFlag{Name: "svg", Usage: "also draw the comparison as a chart into `FILE`"},
			&cli.BoolFlag{Name: "json", Usage: "machine-readable output"},
		},
		Action: func(c *cli.Context) error {
			files := c.Args().Slice()
			if len(files) < 2 {
				return fmt.Errorf("bench compare needs two or more files written by lmrun bench kernels --json, got %d", len(files))
			}
			reports := make([]bench.KernelReport, len(files))
			for i, f := range files {
				r, err := bench.ReadKernelReport(f)
				if err != nil {
					return err
				}
				reports[i] = r
			}
			cmp, err := bench.Compare(files, reports, c.Bool("all-backends"))
			if err != nil {
				return err
			}
			if path := c.String("svg"); path != "" {
				if err := writeFileWith(path, cmp.WriteSVG); err != nil {
					return err
				}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(cmp); err != nil {
					return fmt.Errorf("writing the comparison: %w", err)
				}
				return nil
			}
			for i, col := range cmp.Columns {
				fmt.Fprintf(c.App.Writer, "%d. %s: %s\n", i+1, col.Label, col.File)
			}
			fmt.Fprintln(c.App.Writer)
			return cmp.WriteMarkdown(c.App.Writer)
		},
	}
}
