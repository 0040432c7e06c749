package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/engine"
)

func pplCommand() *cli.Command {
	return &cli.Command{
		Name:  "ppl",
		Usage: "measure a model's perplexity on a text",
		UsageText: "lmrun ppl -m MODEL [--tokenizer FILE] -f TEXT [-c N] [--stride S] [--json]\n\n" +
			"   lmrun ppl -m stories260K.lmc -f tinystories_valid.txt\n" +
			"   lmrun ppl -m gpt2-hf-dir -f wiki.test.raw --ctx 1024 --stride 512",
		Description: "The whole file is tokenized with the model's tokenizer as one text, with BOS first when\n" +
			"the model adds it to prompts (--bos=false to leave it out). Then every token after the\n" +
			"first is scored exactly once: its negative log-likelihood (natural log; log-softmax in\n" +
			"float64) given the tokens before it in its window.\n\n" +
			"Window k holds tokens k·S .. k·S+N−1 (N = --ctx, default the model's context length;\n" +
			"S = --stride, default N−1), cut at the end of the text, and is run from an empty KV\n" +
			"cache; the last window is the first that reaches the end. A window scores the tokens\n" +
			"after the end of the previous one (the first window: all but its first token). With\n" +
			"the default stride each window starts on the last token of the previous one, which is\n" +
			"context only, so the windows do not overlap otherwise; a smaller stride gives each\n" +
			"scored token more context, as in Hugging Face's sliding-window evaluation, at the cost\n" +
			"of evaluating overlapping tokens again.\n\n" +
			"Prints tokens_scored, mean_nll (nats) and ppl = exp(mean_nll) to stdout; progress and\n" +
			"speed (tokens scored per second) go to stderr.",
		Flags: []cli.Flag{
			f32ActFlag, repackFlag,
			modelFlag, tokenizerFlag, threadsFlag, backendFlag,
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "text `FILE` to score", Required: true},
			&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Usage: "window length `N` in tokens", DefaultText: "the model's context length"},
			&cli.IntFlag{Name: "stride", Usage: "distance `S` between window starts, 1..N−1", DefaultText: "N−1"},
			&cli.BoolFlag{Name: "bos", Usage: "start the text with BOS", DefaultText: "as the model does"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		},
		Action: func(c *cli.Context) error {
			text, err := os.ReadFile(c.String("file"))
			if err != nil {
				return err
			}
			m, err := openModel(c, engineOptions(c))
			if err != nil {
				return err
			}
			defer m.Close()
			tok := m.Tokenizer()
			if tok == nil {
				return fmt.Errorf("%s carries no tokenizer; give one with --tokenizer FILE", c.String("model"))
			}
			bos := tok.AddBOS()
			if c.IsSet("bos") {
				bos = c.Bool("bos")
			}
			ids, err := tok.Encode(string(text), bos, false)
			if err != nil {
				return fmt.Errorf("tokenizing %s: %w", c.String("file"), err)
			}
			W := c.Int("ctx")
			if W == 0 {
				W = m.Config().ContextLength
			}
			S := c.Int("stride")
			if S == 0 {
				S = W - 1
			}
			stderr := c.App.ErrWriter
			fmt.Fprintf(stderr, "lmrun: %s, backend %s, %d threads%s; %s: %d bytes, %d tokens; windows of %d, stride %d\n",
				c.String("model"), m.Backend(), m.Threads(), repackNote(m), c.String("file"), len(text), len(ids), W, S)
			ctx, stop := interruptible(c.Context)
			defer stop()
			res, err := m.Perplexity(ctx, ids, engine.PerplexityOptions{Context: W, Stride: S, Progress: progress(stderr, "scored")})
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "%d tokens scored in %d windows (%d evaluated) in %.2f s: %.1f tokens/s\n",
				res.Tokens, res.Windows, res.Evaluated, res.Duration.Seconds(), res.TokensPerSecond())
			if c.Bool("json") {
				return writeJSON(c.App.Writer, map[string]any{
					"tokens_scored": res.Tokens, "mean_nll": res.MeanNLL(), "ppl": res.Perplexity(), "nll_sum": res.NLL,
					"windows": res.Windows, "ctx": W, "stride": S, "bos": bos, "tokens_evaluated": res.Evaluated,
					"seconds": res.Duration.Seconds(), "tokens_per_second": res.TokensPerSecond(),
				})
			}
			fmt.Fprintf(c.App.Writer, "tokens_scored=%d mean_nll=%.6f ppl=%.6f\n", res.Tokens, res.MeanNLL(), res.Perplexity())
			return nil
		},
	}
}
