package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/convert/synth"
)

func synthCommand() *cli.Command {
	return &cli.Command{
		Name:      "synth",
		Usage:     "write a seeded random-weight model of a named shape (no download needed)",
		UsageText: "lmrun synth --preset NAME -o OUT.lmc [--seed 1]\n   lmrun synth --list\n\n   lmrun synth --preset stories15m -o s15m.lmc",
		Description: "The weights are random, so the text is gibberish; the shapes, and so the speed, are\n" +
			"those of the real models. Models carry a byte-level tokenizer, so -p works.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "preset", Usage: "shape `NAME` (see --list)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `FILE` (.lmc)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed of the weights"},
			&cli.BoolFlag{Name: "list", Usage: "list the presets"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("list") {
				for _, p := range synth.Presets() {
					fmt.Fprintf(c.App.Writer, "%-12s %s\n", p.Name, p.About)
				}
				return nil
			}
			if c.String("preset") == "" || c.String("output") == "" {
				return fmt.Errorf("synth needs --preset NAME and -o FILE (lmrun synth --list shows the presets)")
			}
			p, err := synth.Lookup(c.String("preset"))
			if err != nil {
				return err
			}
			ck, err := p.Build(c.Uint64("seed"))
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
			fmt.Fprintf(c.App.ErrWriter, "wrote %s: preset %s, %.1f MiB\n", out, p.Name, float64(st.Size())/(1<<20))
			return nil
		},
	}
}
