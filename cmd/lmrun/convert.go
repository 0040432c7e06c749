package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/quant/calib"
)

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:  "convert",
		Usage: "convert a llama2.c, Hugging Face or GGUF checkpoint to an lmrun checkpoint (or an lmrun checkpoint to GGUF)",
		UsageText: "lmrun convert IN -o OUT [--tokenizer FILE] [--dtype f32|f16|bf16|q8_0|q4_0 [--gptq]] [--to lmc|gguf]\n\n" +
			"   lmrun convert stories260K.bin --tokenizer tok512.bin -o stories260K.lmc\n" +
			"   lmrun convert path/to/hf-model-dir --dtype q8_0 -o model-q8.lmc\n" +
			"   lmrun convert stories260K.lmc --dtype q4_0 --gptq -o stories260K-q4.lmc\n" +
			"   lmrun convert model.gguf -o model.lmc\n" +
			"   lmrun convert model.lmc --to gguf -o model.gguf",
		Description: "The input type is detected from the content: a llama2.c .bin (legacy or ak42 v1/v2),\n" +
			"a Hugging Face directory (config.json + model.safetensors or a sharded index), a\n" +
			"single .safetensors file with config.json beside it, a GGUF file (architectures llama\n" +
			"and gpt2; tensor types F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, kept as they are),\n" +
			"or an lmrun checkpoint (to change its dtype or export it). Supported HF architectures:\n" +
			"GPT2LMHeadModel, LlamaForCausalLM, GPTNeoForCausalLM, OPTForCausalLM.\n\n" +
			"--dtype stores every weight matrix in that type (the position table, norms and biases\n" +
			"stay f32; with q8_0/q4_0, matrices whose rows are not a multiple of 32 become f16);\n" +
			"without it, tensors keep the type the importer gives them. --to gguf writes a GGUF v3\n" +
			"file llama.cpp loads (llama and gpt2 models).\n\n" +
			"--gptq (with --dtype q4_0) quantizes with GPTQ: the model, written as f32 to a temporary\n" +
			"file beside OUT, generates --gptq-seqs sequences of --gptq-len tokens from BOS (sampling\n" +
			"at temperature 1, fixed seed), the inputs x of every matrix are summed into H = Σ x xᵀ,\n" +
			"and each matrix is quantized to minimise its output error under H (the layout is plain\n" +
			"q4_0). It costs a float64 cols² matrix per distinct matrix input per layer in memory\n" +
			"(0.6 GB for a 768-wide, 12-layer model) and a forward pass over the calibration tokens\n" +
			"(stories110M's shape: 13 minutes on 2 cores; fewer or shorter sequences calibrate faster).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `FILE` (.lmc, or .gguf with --to gguf)", Required: true},
			&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer `FILE` or directory to embed: tokenizer.bin (llama2.c), tokenizer.model (SentencePiece), tokenizer.json (Hugging Face), vocab.json/encoder.json + merges.txt/vocab.bpe"},
			&cli.StringFlag{Name: "dtype", Usage: "store weight matrices as `TYPE`: f32, f16, bf16, q8_0 or q4_0", DefaultText: "as imported"},
			&cli.StringFlag{Name: "to", Value: "lmc", Usage: "output `FORMAT`: lmc or gguf"},
			&cli.BoolFlag{Name: "gptq", Usage: "with --dtype q4_0: quantize with GPTQ, calibrated on text the model generates"},
			&cli.IntFlag{Name: "gptq-seqs", Value: calib.DefaultSeqs, Usage: "GPTQ calibration sequences"},
			&cli.IntFlag{Name: "gptq-len", Value: calib.DefaultLen, Usage: "GPTQ calibration sequence length in tokens (capped at the context length)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("convert takes one input path, got %d", c.NArg())
			}
			to := c.String("to")
			if to != "lmc" && to != "gguf" {
				return fmt.Errorf("--to %q: want lmc or gguf", to)
			}
			var dt dtype.DType
			if s := c.String("dtype"); s != "" {
				var err error
				if dt, err = dtype.Parse(s); err != nil {
					return fmt.Errorf("--dtype: %w", err)
				}
				if !dt.Quantizable() {
					return fmt.Errorf("--dtype %s: lmrun reads and runs k-quants but cannot quantize to them (want f32, f16, bf16, q8_0 or q4_0)", dt)
				}
			}
			gptq := c.Bool("gptq")
			if gptq && (!c.IsSet("dtype") || dt != dtype.Q4_0) {
				return errors.New("--gptq needs --dtype q4_0")
			}
			if !gptq && (c.IsSet("gptq-seqs") || c.IsSet("gptq-len")) {
				return errors.New("--gptq-seqs and --gptq-len need --gptq")
			}
			if c.Int("gptq-seqs") < 1 || c.Int("gptq-len") < 2 {
				return fmt.Errorf("--gptq-seqs %d, --gptq-len %d: want at least 1 sequence of 2 tokens", c.Int("gptq-seqs"), c.Int("gptq-len"))
			}
			in := c.Args().First()
			kind, err := convert.Detect(in)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", in, kind)
			var ck *format.Checkpoint
			if kind == convert.KindLMC && (to == "gguf" || c.IsSet("dtype")) {
				if c.IsSet("tokenizer") {
					return fmt.Errorf("--tokenizer: %s is already an lmrun checkpoint", in)
				}
				f, err := format.Open(in)
				if err != nil {
					return err
				}
				defer f.Close()
				ck = convert.FromLMC(f)
			} else if ck, err = convert.Import(in, convert.Options{TokenizerPath: c.String("tokenizer")}); err != nil {
				if errors.Is(err, convert.ErrAlreadyLMC) {
					return fmt.Errorf("%w (use --dtype or --to gguf to re-encode it)", err)
				}
				return err
			}
			out := c.String("output")
			switch {
			case gptq:
				start := time.Now()
				opts := calib.Options{Seqs: c.Int("gptq-seqs"), Len: c.Int("gptq-len"), Progress: progress(c.App.ErrWriter, "gptq calibration")}
				if ck, err = calib.Quantize(c.Context, ck, filepath.Dir(out), opts); err != nil {
					return fmt.Errorf("gptq: %w", err)
				}
				fmt.Fprintf(c.App.ErrWriter, "gptq: calibrated in %v\n", time.Since(start).Round(time.Millisecond))
			case c.IsSet("dtype"):
				if ck, err = convert.WithDType(ck, dt); err != nil {
					return err
				}
			}
			if to == "gguf" {
				err = gguf.ExportFile(ck, out, progress(c.App.ErrWriter, "writing tensors"))
			} else {
				err = ck.WriteFile(out, progress(c.App.ErrWriter, "writing tensors"))
			}
			if err != nil {
				return fmt.Errorf("writing %s: %w", out, err)
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "wrote %s: %d tensors (%s), %.1f MiB\n", out, len(ck.Tensors), dtypeCounts(ck), float64(st.Size())/(1<<20))
			return nil
		},
	}
}

// dtypeCounts summarizes the tensors' dtypes: "14 q8_0, 9 f32".
func dtypeCounts(ck *format.Checkpoint) string {
	n := map[dtype.DType]int{}
	for _, s := range ck.Tensors {
		n[s.DType]++
	}
	var parts []string
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K, dtype.Q4_0, dtype.Q8_0, dtype.BF16, dtype.F16, dtype.F32} {
		if n[dt] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[dt], dt))
		}
	}
	return strings.Join(parts, ", ")
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check every tensor checksum of a checkpoint",
		UsageText: "lmrun verify MODEL.lmc",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("verify takes one checkpoint path, got %d", c.NArg())
			}
			f, err := format.Open(c.Args().First())
			if err != nil {
				return err
			}
			defer f.Close()
			if err := f.Verify(nil); err != nil {
				return fmt.Errorf("%s: %w", c.Args().First(), err)
			}
			fmt.Fprintf(c.App.Writer, "%s: OK, %d tensors, %d bytes checked\n", c.Args().First(), len(f.Tensors), f.DataSize())
			return nil
		},
	}
}
