package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/klauspost/cpuid/v2"
	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/bench"
	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/engine/parallel"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
)

type backendInfo struct {
	Name      string   `json:"name"`
	Available bool     `json:"available"`
	Selected  bool     `json:"selected"`
	Missing   []string `json:"missing,omitempty"`
	// The peaks of one core, measured by the backend's probes (bench.FMAPeak,
	// bench.Int8Peak) unless --peaks=false; 0 when it has none.
	FMAPeakGFLOPS float64 `json:"fma_peak_gflops_1thread,omitempty"`
	Int8PeakGOPS  float64 `json:"int8_peak_gops_1thread,omitempty"`
}

type tensorInfo struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Bytes int64  `json:"bytes"`
}

type infoReport struct {
	CPU      string         `json:"cpu"`
	Arch     string         `json:"arch"`
	Cores    int            `json:"logical_cores"`
	Physical int            `json:"physical_cores"` // as CPUID reports them for the whole processor; 0: unknown
	Threads  int            `json:"default_threads"`
	Features []string       `json:"features"`
	Backends []backendInfo  `json:"backends"`
	Model    string         `json:"model,omitempty"`
	Format   string         `json:"format,omitempty"` // the model file's kind: lmc, gguf, hf, safetensors, llama2c
	Meta     map[string]any `json:"metadata,omitempty"`
	Tensors  []tensorInfo   `json:"tensors,omitempty"`
}

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "show the CPU, the kernel backends, and a model's metadata and tensors",
		UsageText: "lmrun info [-m MODEL] [--tokenizer FILE] [--backend NAME] [--json]",
		Description: "With -m, the model's metadata and tensors as lmrun runs them: for a GGUF, Hugging Face or\n" +
			"llama2.c model, those of its import (lm.* hyper-parameters, lmrun's tensor names).\n" +
			"Each available backend's FMA and int8 peaks on one core are measured first (a fraction\n" +
			"of a second; --peaks=false skips it).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "model `PATH` to describe, of any kind run takes"},
			tokenizerFlag,
			backendFlag,
			&cli.BoolFlag{Name: "peaks", Value: true, Usage: "measure each available backend's FMA and int8 peaks (one core)"},
			&cli.BoolFlag{Name: "json", Usage: "machine-readable output"},
		},
		Action: func(c *cli.Context) error {
			sel, err := backends.Resolve(c.String("backend"))
			if err != nil {
				return err
			}
			r := infoReport{CPU: cpuid.CPU.BrandName, Arch: runtime.GOARCH, Cores: runtime.NumCPU(),
				Physical: cpuid.CPU.PhysicalCores, Threads: parallel.DefaultThreads()}
			for _, f := range bench.SIMDFeatures() {
				if cpuid.CPU.Supports(f) {
					r.Features = append(r.Features, f.String())
				}
			}
			for _, b := range backends.List() {
				bi := backendInfo{Name: b.Name, Available: b.Available(), Selected: b.Name == sel.Name, Missing: b.Missing()}
				if bi.Available && c.Bool("peaks") {
					k := b.New()
					bi.FMAPeakGFLOPS, _ = bench.FMAPeak(k)
					bi.Int8PeakGOPS, _ = bench.Int8Peak(k)
				}
				r.Backends = append(r.Backends, bi)
			}
			if path := c.String("model"); path != "" {
				kind, err := convert.Detect(path)
				if err != nil {
					return err
				}
				f, err := convert.Open(path, convert.Options{TokenizerPath: c.String("tokenizer")})
				if err != nil {
					return err
				}
				defer f.Close()
				r.Model, r.Format = path, kind.String()
				r.Meta = map[string]any{}
				for k, v := range f.Meta {
					r.Meta[k] = v
				}
				for _, t := range f.Tensors {
					r.Tensors = append(r.Tensors, tensorInfo{t.Name, t.DType.String(), t.Shape, t.Size})
				}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printInfo(c.App.Writer, r)
			return nil
		},
	}
}

func printInfo(w io.Writer, r infoReport) {
	physical := "unknown"
	if r.Physical > 0 {
		physical = fmt.Sprint(r.Physical)
	}
	fmt.Fprintf(w, "CPU:      %s (%s, %d logical CPUs available; physical cores per CPUID: %s)\n", r.CPU, r.Arch, r.Cores, physical)
	fmt.Fprintf(w, "Threads:  %d by default (-t 0: one per physical core, at most GOMAXPROCS)\n", r.Threads)
	fmt.Fprintf(w, "SIMD:     %s\n", strings.Join(r.Features, " "))
	fmt.Fprintf(w, "Backends:\n")
	for _, b := range r.Backends {
		avail := "yes"
		if !b.Available {
			avail = "no (needs " + strings.Join(b.Missing, ", ") + ")"
		}
		mark := " "
		if b.Selected {
			mark = "*"
		}
		var peaks []string
		if b.FMAPeakGFLOPS > 0 {
			peaks = append(peaks, fmt.Sprintf("FMA %.1f GFLOP/s", b.FMAPeakGFLOPS))
		}
		if b.Int8PeakGOPS > 0 {
			peaks = append(peaks, "int8 "+bench.FormatOps(b.Int8PeakGOPS))
		}
		peak := ""
		if len(peaks) > 0 {
			peak = "  peak " + strings.Join(peaks, ", ") + " (1 thread)"
		}
		fmt.Fprintf(w, "  %s %-8s available: %s%s\n", mark, b.Name, avail, peak)
	}
	fmt.Fprintf(w, "  (* selected; override with --backend NAME or %s)\n", backends.EnvVar)
	if r.Model == "" {
		return
	}
	fmt.Fprintf(w, "\nModel %s (%s)\nMetadata:\n", r.Model, formatNote(r.Format))
	keys := format.Metadata(r.Meta).Keys()
	for _, k := range keys {
		fmt.Fprintf(w, "  %-28s %s\n", k, showValue(r.Meta[k]))
	}
	if ws, ok := r.Meta[model.KeyAttnWindows].([]int64); ok && len(ws) > 0 {
		fmt.Fprintf(w, "Attention per layer:\n  %s\n", attentionLayout(ws))
	}
	var total int64
	fmt.Fprintf(w, "Tensors (%d):\n", len(r.Tensors))
	for _, t := range r.Tensors {
		fmt.Fprintf(w, "  %-32s %-5s %-16s %10d bytes\n", t.Name, t.DType, fmt.Sprint(t.Shape), t.Bytes)
		total += t.Bytes
	}
	fmt.Fprintf(w, "  total %.2f MiB\n", float64(total)/(1<<20))
}

// formatNote says how a model of the given kind (convert.Kind's name) is opened.
func formatNote(kind string) string {
	switch kind {
	case "lmc", "gguf":
		return kind + ", mapped and used in place"
	case "":
		return "unknown format"
	}
	return kind + ", converted in memory at each start; lmrun convert makes an .lmc that opens at once"
}

// showValue prints scalars and short arrays whole and long arrays as a count.
func showValue(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 80 { // e.g. a SentencePiece precompiled_charsmap
			return fmt.Sprintf("%q… (%d bytes)", x[:60], len(x))
		}
		return fmt.Sprintf("%q", x)
	case []string:
		if len(x) > 8 {
			return fmt.Sprintf("[%d strings]", len(x))
		}
		return fmt.Sprintf("%q", x)
	case []float32:
		if len(x) > 8 {
			return fmt.Sprintf("[%d floats]", len(x))
		}
	case []int64:
		if len(x) > 32 {
			return fmt.Sprintf("[%d ints]", len(x))
		}
	}
	return fmt.Sprint(v)
}

// attentionLayout describes each layer's attention: "0:global 1:local(256) ...".
func attentionLayout(windows []int64) string {
	parts := make([]string, len(windows))
	for i, w := range windows {
		if w == 0 {
			parts[i] = fmt.Sprintf("%d:global", i)
		} else {
			parts[i] = fmt.Sprintf("%d:local(%d)", i, w)
		}
	}
	return strings.Join(parts, " ")
}
