package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/convert"
)

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:  "convert",
		Usage: "convert a llama2.c or Hugging Face checkpoint to an lmrun checkpoint",
		UsageText: "lmrun convert IN -o OUT.lmc [--tokenizer FILE]\n\n" +
			"   lmrun convert stories260K.bin --tokenizer tok512.bin -o stories260K.lmc\n" +
			"   lmrun convert path/to/hf-model-dir -o model.lmc",
		Description: "The input type is detected from the content: a llama2.c .bin (legacy or ak42 v1),\n" +
			"a Hugging Face directory (config.json + model.safetensors or a sharded index), or a\n" +
			"single .safetensors file with config.json beside it. Supported HF architectures:\n" +
			"GPT2LMHeadModel, LlamaForCausalLM, GPTNeoForCausalLM, OPTForCausalLM.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `FILE` (.lmc)", Required: true},
			&cli.StringFlag{Name: "tokenizer", Usage: "llama2.c tokenizer.bin `FILE` to embed"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("convert takes one input path, got %d", c.NArg())
			}
			in := c.Args().First()
			kind, err := convert.Detect(in)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", in, kind)
			ck, err := convert.Import(in, convert.Options{TokenizerPath: c.String("tokenizer")})
			if err != nil {
				return err
			}
			out := c.String("output")
			if err := ck.WriteFile(out, progress(c.App.ErrWriter, "writing tensors")); err != nil {
				return fmt.Errorf("writing %s: %w", out, err)
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "wrote %s: %d tensors, %.1f MiB\n", out, len(ck.Tensors), float64(st.Size())/(1<<20))
			return nil
		},
	}
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
