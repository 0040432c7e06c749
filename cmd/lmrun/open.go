package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/engine"
)

// Flags of the commands that open a model: a model file of any kind convert.Open reads,
// and a tokenizer to use with it.
var (
	modelFlag = &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Required: true,
		Usage: "model `PATH`: an .lmc or GGUF file (used in place), a Hugging Face directory or a llama2.c checkpoint (converted in memory); the format is told from the content"}
	tokenizerFlag = &cli.StringFlag{Name: "tokenizer",
		Usage: "tokenizer `FILE` or directory to use instead of the model's (a llama2.c checkpoint has none): tokenizer.bin, tokenizer.model, tokenizer.json, vocab.json + merges.txt"}
)

// openModel opens the --model of any kind (lmc, GGUF, Hugging Face, llama2.c; see
// convert.Open) with the --tokenizer, if given, and prepares it for inference.
func openModel(c *cli.Context, opts engine.Options) (*engine.Model, error) {
	return loadModel(c.String("model"), c.String("tokenizer"), opts)
}

// loadModel opens the model at path of any kind, with the tokenizer at tokPath unless
// it is empty, and prepares it for inference.
func loadModel(path, tokPath string, opts engine.Options) (*engine.Model, error) {
	f, err := convert.Open(path, convert.Options{TokenizerPath: tokPath})
	if err != nil {
		return nil, err
	}
	m, err := engine.FromFile(f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// engineOptions returns the engine options of the --backend, --threads,
// --f32-activations and --repack flags.
func engineOptions(c *cli.Context) engine.Options {
	return engine.Options{Backend: c.String("backend"), Threads: c.Int("threads"), F32Activations: c.Bool("f32-activations"),
		Repack: c.Bool("repack")}
}

// repackNote returns ", 12.3 MiB repacked" for the load line of a model whose weights
// were packed at load (--repack), "" otherwise.
func repackNote(m *engine.Model) string {
	if b := m.RepackedBytes(); b > 0 {
		return fmt.Sprintf(", %.1f MiB repacked", float64(b)/(1<<20))
	}
	return ""
}
