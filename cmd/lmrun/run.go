package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/tokenizer"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "generate text from a prompt",
		UsageText: "lmrun run -m MODEL.lmc (-p TEXT | --tokens 1,2,3) [-n 128] [--temp 0.8] [--top-k 40] [--top-p 0.95] [--seed 1]\n\n   lmrun run -m stories260K.lmc -p \"Once upon a time\" -n 100 --temp 0",
		Description: "Streams the completion to stdout as it is produced; prompt and generation speed go to stderr.\n" +
			"With neither -p nor --tokens, generation starts from the BOS token alone.",
		Flags: []cli.Flag{
			modelFlag, promptFlag, tokensFlag, threadsFlag, backendFlag, f32ActFlag,
			&cli.IntFlag{Name: "n", Value: 128, Usage: "tokens to generate at most (0: until the context is full)"},
			&cli.Float64Flag{Name: "temp", Value: 0.8, Usage: "sampling temperature (0: greedy)"},
			&cli.IntFlag{Name: "top-k", Value: 40, Usage: "sample among the K most likely tokens (0: all)"},
			&cli.Float64Flag{Name: "top-p", Value: 0.95, Usage: "nucleus sampling mass (1: off)"},
			&cli.Uint64Flag{Name: "seed", Usage: "random seed (default: from the clock, printed to stderr)"},
			&cli.BoolFlag{Name: "ids", Usage: "print the generated token ids instead of text"},
			&cli.IntFlag{Name: "ctx", Usage: "context length of the session (0: the model's)"},
			kvFlag,
			&cli.BoolFlag{Name: "ignore-eos", Usage: "keep generating past the end-of-sequence token"},
		},
		Action: func(c *cli.Context) error {
			m, err := engine.Load(c.String("model"), engine.Options{Backend: c.String("backend"), Threads: c.Int("threads"), F32Activations: c.Bool("f32-activations")})
			if err != nil {
				return err
			}
			defer m.Close()
			prompt, err := promptIDs(c, m)
			if err != nil {
				return err
			}
			seed := c.Uint64("seed")
			if !c.IsSet("seed") {
				seed = uint64(time.Now().UnixNano())
			}
			scfg := engine.SamplerConfig{Temperature: c.Float64("temp"), TopK: c.Int("top-k"), TopP: c.Float64("top-p"), Seed: seed}
			if err := scfg.Validate(); err != nil {
				return err
			}
			if c.Int("n") < 0 {
				return fmt.Errorf("-n %d: want ≥ 0", c.Int("n"))
			}
			half, err := halfKV(c)
			if err != nil {
				return err
			}
			// The session caps a larger context at the model's; a number the model cannot
			// hold is a mistake to report, not to round.
			if n, limit := c.Int("ctx"), m.Config().ContextLength; n < 0 || n > limit {
				return fmt.Errorf("--ctx %d: want 0 (the model's context length) to %d", n, limit)
			}
			s := m.NewSession(engine.SessionOptions{Context: c.Int("ctx"), HalfKV: half})
			var stop []int
			if c.Bool("ignore-eos") {
				stop = []int{}
			} else if tok := m.Tokenizer(); tok != nil {
				stop = []int{}
				if tok.EOS() >= 0 {
					stop = append(stop, tok.EOS())
				}
				// llama2.c models delimit stories with BOS: generating it ends the text.
				if tok.Kind() == "llama2c" && tok.BOS() >= 0 {
					stop = append(stop, tok.BOS())
				}
			}
			stderr := c.App.ErrWriter
			fmt.Fprintf(stderr, "lmrun: %s, backend %s, %d threads, seed %d, KV cache %.1f MiB (up to %.1f MiB)\n",
				c.String("model"), m.Backend(), m.Threads(), seed, float64(s.KVBytes())/(1<<20), float64(s.KVMaxBytes())/(1<<20))

			out := bufio.NewWriter(c.App.Writer)
			var stream *tokenizer.Stream
			if m.Tokenizer() != nil && !c.Bool("ids") {
				stream = tokenizer.NewStream(m.Tokenizer())
				for _, id := range prompt { // echo the prompt, as llama2.c does
					piece, err := stream.Add(id)
					if err != nil {
						return err
					}
					out.WriteString(piece)
				}
				out.Flush()
			}
			first := true
			emit := func(id int) error {
				if stream != nil {
					piece, err := stream.Add(id)
					if err != nil {
						return err
					}
					out.WriteString(piece)
				} else {
					if !first {
						out.WriteByte(' ')
					}
					out.WriteString(strconv.Itoa(id))
				}
				first = false
				return out.Flush()
			}
			ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
			defer cancel()
			st, err := s.Generate(ctx, prompt, engine.GenerateOptions{MaxTokens: c.Int("n"), Stop: stop, Sampler: engine.NewSampler(scfg)}, emit)
			if stream != nil {
				out.WriteString(stream.Flush())
			}
			out.WriteString("\n")
			out.Flush()
			fmt.Fprintf(stderr, "prompt: %d tokens, %.1f tok/s | generation: %d tokens, %.1f tok/s\n",
				st.PromptTokens, rate(st.PromptTokens, st.PromptSeconds), st.Generated, rate(st.Generated, st.GenSeconds))
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
}

func rate(n int, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

// promptIDs returns the prompt from --tokens or -p (tokenized), or BOS alone.
func promptIDs(c *cli.Context, m *engine.Model) ([]int, error) {
	if c.IsSet("tokens") && c.IsSet("prompt") {
		return nil, errors.New("give either -p or --tokens, not both")
	}
	if c.IsSet("tokens") {
		return parseIDs(c.String("tokens"))
	}
	tok := m.Tokenizer()
	if !c.IsSet("prompt") {
		if tok == nil || tok.BOS() < 0 {
			return nil, errors.New("no prompt: give -p TEXT or --tokens IDS (the model has no BOS token to start from)")
		}
		return []int{tok.BOS()}, nil
	}
	if tok == nil {
		if m.TokenizerErr() != nil {
			return nil, fmt.Errorf("-p: %v; give --tokens IDS", m.TokenizerErr())
		}
		return nil, errors.New("-p: this model carries no tokenizer; give --tokens IDS, or convert it with --tokenizer FILE")
	}
	text := c.String("prompt")
	if !utf8Valid(text) {
		return nil, errors.New("-p: the prompt is not valid UTF-8")
	}
	ids, err := tok.Encode(text, tok.AddBOS(), false)
	if err != nil {
		return nil, fmt.Errorf("tokenizing the prompt: %w", err)
	}
	if len(ids) == 0 {
		return nil, errors.New("-p: the prompt encodes to no tokens")
	}
	return ids, nil
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// kvFlag selects the KV cache's storage type.
var kvFlag = &cli.StringFlag{Name: "kv", Value: "f32", Usage: "KV cache `TYPE`: f32, or f16 (half the memory)"}

func halfKV(c *cli.Context) (bool, error) {
	switch c.String("kv") {
	case "f32":
		return false, nil
	case "f16":
		return true, nil
	}
	return false, fmt.Errorf("--kv %q: want f32 or f16", c.String("kv"))
}
