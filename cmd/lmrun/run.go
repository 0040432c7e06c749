package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/tokenizer"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "generate text from a prompt",
		UsageText: "lmrun run -m MODEL [--tokenizer FILE] (-p TEXT | -f FILE | --tokens 1,2,3) [-n 128] [--temp 0.8] [--top-k 40] [--top-p 0.95]\n" +
			"      [--min-p 0.05] [--repeat-penalty 1.1] [--repeat-last-n 64] [-s SEED] [-c CTX] [--stop STRING]...\n\n" +
			"   lmrun run -m stories260K.lmc -p \"Once upon a time\" -n 100 --temp 0\n" +
			"   lmrun run -m model.gguf -f prompt.txt -n -1 --stop \"\\n\\n\"\n" +
			"   lmrun run -m stories260K.bin --tokenizer tok512.bin -p \"Once upon a time\"   # llama2.c, converted in memory",
		Description: "MODEL is an .lmc or GGUF file (mapped and used in place), a Hugging Face directory or a\n" +
			"llama2.c checkpoint (converted in memory at each start), told apart by content.\n\n" +
			"Streams the completion to stdout as it is produced, after the prompt; prompt and generation\n" +
			"speed go to stderr. With none of -p, -f and --tokens, generation starts from the BOS token alone.\n\n" +
			"Sampling is llama.cpp's default chain, with its defaults: the penalties (--repeat-penalty,\n" +
			"--frequency-penalty, --presence-penalty, over the last --repeat-last-n tokens, the prompt's\n" +
			"included), then --top-k, --top-p and --min-p on the penalised logits, then --temp on the\n" +
			"tokens kept, then a draw. --temp 0 is greedy (the largest penalised logit).\n\n" +
			"Generation stops after -n tokens, at the model's end-of-sequence token (for llama2.c models\n" +
			"also at BOS, as llama2.c does) unless --ignore-eos, at a --stop string (not printed), or when\n" +
			"the context is full. Ctrl-C stops it, within one batch of the prompt: the text so far and\n" +
			"the speed are printed and lmrun exits with status 130; a second Ctrl-C exits at once.",
		Flags: append(append([]cli.Flag{
			modelFlag, tokenizerFlag, promptFlag,
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the prompt from `FILE` (- for standard input; a final newline is dropped)"},
			tokensFlag, threadsFlag, backendFlag, f32ActFlag, repackFlag,
			&cli.IntFlag{Name: "n", Value: 128, Usage: "generate at most `N` tokens (-1: until the context is full; 0: none)"},
		}, samplingFlags()...), []cli.Flag{
			&cli.GenericFlag{Name: "stop", Value: &stringList{}, Usage: "stop when the generated text contains `STRING`, not printed (repeatable)"},
			&cli.BoolFlag{Name: "ids", Usage: "print the generated token ids instead of text"},
			&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Usage: "context length `N` of the session", DefaultText: "the model's"},
			kvFlag,
			&cli.BoolFlag{Name: "ignore-eos", Usage: "keep generating past the end-of-sequence token (it is printed)"},
			&cli.BoolFlag{Name: "chat", Usage: "-p is a user message: render it with the chat template and print the assistant's reply"},
			chatTemplateFlag,
			&cli.StringFlag{Name: "system", Usage: "with --chat: a system message `TEXT` before -p"},
		}...),
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	n := c.Int("n")
	if n < -1 {
		return fmt.Errorf("-n %d: want ≥ -1 (-1: until the context is full)", n)
	}
	seed := c.Uint64("seed")
	if !c.IsSet("seed") {
		seed = uint64(time.Now().UnixNano())
	}
	scfg, err := samplerConfig(c, seed)
	if err != nil {
		return err
	}
	smp, err := engine.NewSampler(scfg)
	if err != nil {
		return err
	}
	half, err := halfKV(c)
	if err != nil {
		return err
	}
	m, err := openModel(c, engineOptions(c))
	if err != nil {
		return err
	}
	defer m.Close()
	if c.Bool("chat") {
		return runChat(c, m, scfg, half, seed)
	}
	prompt, err := promptIDs(c, m)
	if err != nil {
		return err
	}
	stops := c.Generic("stop").(*stringList).values
	text := m.Tokenizer() != nil && !c.Bool("ids")
	if len(stops) > 0 && !text {
		return errors.New("--stop needs text output: it cannot be used with --ids or a model without a tokenizer")
	}
	// The session caps a larger context at the model's; a number the model cannot hold is
	// a mistake to report, not to round.
	if n, limit := c.Int("ctx"), m.Config().ContextLength; n < 0 || n > limit {
		return fmt.Errorf("--ctx %d: want 0 (the model's context length) to %d", n, limit)
	}
	s := m.NewSession(engine.SessionOptions{Context: c.Int("ctx"), HalfKV: half})

	// From here on Ctrl-C cancels generation instead of killing the process.
	ctx, stop := interruptible(c.Context)
	defer stop()
	stderr := c.App.ErrWriter
	fmt.Fprintf(stderr, "lmrun: %s, backend %s, %d threads, seed %d, KV cache %.1f MiB (up to %.1f MiB)%s\n",
		c.String("model"), m.Backend(), m.Threads(), seed, float64(s.KVBytes())/(1<<20), float64(s.KVMaxBytes())/(1<<20), repackNote(m))

	out := bufio.NewWriter(c.App.Writer)
	opts := engine.GenerateOptions{MaxTokens: n, IgnoreEOS: c.Bool("ignore-eos"), StopStrings: stops, Sampler: smp}
	var st engine.Stats
	if text {
		echo := tokenizer.NewStream(m.Tokenizer()) // the prompt first, as llama2.c does
		for _, id := range prompt {
			piece, err := echo.Add(id)
			if err != nil {
				return err
			}
			out.WriteString(piece)
		}
		if err := out.Flush(); err != nil {
			return err
		}
		st, err = s.GenerateText(ctx, prompt, opts, func(text string) error {
			out.WriteString(text)
			return out.Flush()
		})
	} else {
		first := true
		st, err = s.Generate(ctx, prompt, opts, func(id int) error {
			if !first {
				out.WriteByte(' ')
			}
			first = false
			out.WriteString(strconv.Itoa(id))
			return out.Flush()
		})
	}
	out.WriteString("\n")
	out.Flush()
	promptTokens := strconv.Itoa(st.PromptTokens)
	if st.PromptTokens < len(prompt) {
		promptTokens += " of " + strconv.Itoa(len(prompt))
	}
	fmt.Fprintf(stderr, "prompt: %s tokens, %.1f tok/s | generation: %d tokens, %.1f tok/s\n",
		promptTokens, st.PromptTokensPerSecond(), st.Generated, st.GenTokensPerSecond())
	return err
}

// samplerConfig returns the sampler configuration of run's flags, with llama.cpp's
// meaning where the engine's differs: --repeat-last-n 0 turns the penalties off, and
// --top-p 0 keeps the most likely token only.
func samplerConfig(c *cli.Context, seed uint64) (engine.SamplerConfig, error) {
	cfg := engine.SamplerConfig{
		Temperature: c.Float64("temp"), TopK: c.Int("top-k"), TopP: c.Float64("top-p"), MinP: c.Float64("min-p"),
		RepeatPenalty: c.Float64("repeat-penalty"), RepeatLastN: c.Int("repeat-last-n"),
		FrequencyPenalty: c.Float64("frequency-penalty"), PresencePenalty: c.Float64("presence-penalty"),
		Seed: seed,
	}
	if !(cfg.RepeatPenalty > 0) {
		return cfg, fmt.Errorf("--repeat-penalty %g: want > 0 (1: off)", cfg.RepeatPenalty)
	}
	if cfg.RepeatLastN == 0 {
		cfg.RepeatPenalty, cfg.FrequencyPenalty, cfg.PresencePenalty = 1, 0, 0
	}
	if cfg.TopP == 0 {
		cfg.TopK = 1
	}
	return cfg, nil
}

// stringList is a repeatable string flag whose values are kept whole (urfave/cli's
// slice flags split them at commas).
type stringList struct{ values []string }

func (l *stringList) Set(v string) error {
	l.values = append(l.values, v)
	return nil
}

func (l *stringList) String() string { return strings.Join(l.values, ", ") }

// promptIDs returns the prompt from --tokens, or -p or -f (tokenized), or BOS alone.
func promptIDs(c *cli.Context, m *engine.Model) ([]int, error) {
	given := 0
	for _, name := range []string{"tokens", "prompt", "file"} {
		if c.IsSet(name) {
			given++
		}
	}
	if given > 1 {
		return nil, errors.New("give one prompt: -p TEXT, -f FILE or --tokens IDS")
	}
	if c.IsSet("tokens") {
		return parseIDs(c.String("tokens"))
	}
	tok := m.Tokenizer()
	var text, from string
	switch {
	case c.IsSet("prompt"):
		text, from = c.String("prompt"), "-p"
	case c.IsSet("file"):
		b, err := readFileArg(c, c.String("file"))
		if err != nil {
			return nil, fmt.Errorf("-f: %w", err)
		}
		text, from = strings.TrimSuffix(string(b), "\n"), "-f "+c.String("file")
	default:
		if tok == nil || tok.BOS() < 0 {
			return nil, errors.New("no prompt: give -p TEXT, -f FILE or --tokens IDS (the model has no BOS token to start from)")
		}
		return []int{tok.BOS()}, nil
	}
	if tok == nil {
		if m.TokenizerErr() != nil {
			return nil, fmt.Errorf("%s: %v; give --tokens IDS", from, m.TokenizerErr())
		}
		return nil, fmt.Errorf("%s: this model carries no tokenizer; give --tokens IDS, or convert it with --tokenizer FILE", from)
	}
	if !utf8Valid(text) {
		return nil, fmt.Errorf("%s: the prompt is not valid UTF-8", from)
	}
	ids, err := tok.Encode(text, tok.AddBOS(), false)
	if err != nil {
		return nil, fmt.Errorf("tokenizing the prompt: %w", err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s: the prompt encodes to no tokens", from)
	}
	return ids, nil
}

// readFileArg reads the file a flag names, "-" being standard input (the app's Reader).
func readFileArg(c *cli.Context, name string) ([]byte, error) {
	if name == "-" {
		r := c.App.Reader
		if r == nil {
			r = os.Stdin
		}
		return io.ReadAll(r)
	}
	return os.ReadFile(name)
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

// runChat is run --chat: -p (or -f) is a user message, rendered with the chat template,
// and the reply ends at the end of the assistant's turn.
func runChat(c *cli.Context, m *engine.Model, scfg engine.SamplerConfig, half bool, seed uint64) error {
	if c.IsSet("tokens") || c.IsSet("ids") || c.IsSet("stop") || c.IsSet("ignore-eos") {
		return errors.New("--chat renders a text message: it cannot be used with --tokens, --ids, --stop or --ignore-eos")
	}
	var msg string
	switch {
	case c.IsSet("prompt") && c.IsSet("file"):
		return errors.New("give one message: -p TEXT or -f FILE")
	case c.IsSet("prompt"):
		msg = c.String("prompt")
	case c.IsSet("file"):
		b, err := readFileArg(c, c.String("file"))
		if err != nil {
			return fmt.Errorf("-f: %w", err)
		}
		msg = strings.TrimSuffix(string(b), "\n")
	default:
		return errors.New("--chat needs the user's message: -p TEXT or -f FILE")
	}
	cs, err := newChatSession(c, m, scfg, half)
	if err != nil {
		return err
	}
	ctx, stop := interruptible(c.Context)
	defer stop()
	stderr := c.App.ErrWriter
	fmt.Fprintf(stderr, "lmrun: %s, backend %s, %d threads, seed %d%s\n", c.String("model"), m.Backend(), m.Threads(), seed, repackNote(m))
	out := bufio.NewWriter(c.App.Writer)
	st, err := cs.reply(ctx, msg, func(text string) error {
		out.WriteString(text)
		return out.Flush()
	})
	out.WriteString("\n")
	out.Flush()
	fmt.Fprintf(stderr, "prompt: %d tokens, %.1f tok/s | generation: %d tokens, %.1f tok/s\n",
		st.PromptTokens, st.PromptTokensPerSecond(), st.Generated, st.GenTokensPerSecond())
	return err
}
