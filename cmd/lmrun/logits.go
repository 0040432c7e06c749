package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/format/npy"
)

func logitsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logits",
		Usage:     "write the logits of every position to a NumPy .npy file",
		UsageText: "lmrun logits -m MODEL (--tokens 1,2,3 | -p TEXT) -o out.npy\n\n   lmrun logits -m llama.gguf --tokens 1,403,407 -o logits.npy   # float32 [3, vocab]",
		Description: "Row t of the float32 [T, vocab] array holds the logits after reading tokens 0..t,\n" +
			"starting at position 0 with an empty KV cache.",
		Flags: []cli.Flag{
			modelFlag, tokenizerFlag, tokensFlag, promptFlag, threadsFlag, backendFlag, f32ActFlag, repackFlag,
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `FILE` (.npy)", Required: true},
		},
		Action: func(c *cli.Context) error {
			m, err := openModel(c, engineOptions(c))
			if err != nil {
				return err
			}
			defer m.Close()
			if !c.IsSet("tokens") && !c.IsSet("prompt") {
				return fmt.Errorf("give the sequence with --tokens IDS or -p TEXT")
			}
			ids, err := promptIDs(c, m)
			if err != nil {
				return err
			}
			s := m.NewSession(engine.SessionOptions{})
			logits, err := s.ForwardAll(ids, nil)
			if err != nil {
				return err
			}
			if err := npy.WriteFile(c.String("output"), []int{len(ids), m.Config().VocabSize}, logits); err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "wrote %s: float32 [%d, %d]\n", c.String("output"), len(ids), m.Config().VocabSize)
			return nil
		},
	}
}
