package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/convert/synth"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:      "demo",
		Usage:     "synthesize a random-weight model and generate from it (no download needed)",
		UsageText: "lmrun demo [--preset stories15m] [-p TEXT] [-n 64]",
		Description: "Writes a seeded random-weight model of a real shape to a temporary file, runs\n" +
			"`lmrun run` on it and removes it. The text is gibberish; the speed is real.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "preset", Value: "stories15m", Usage: "model shape `NAME` (lmrun synth --list)"},
			&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Value: "Once upon a time", Usage: "prompt `TEXT`"},
			&cli.IntFlag{Name: "n", Value: 64, Usage: "tokens to generate"},
			threadsFlag, backendFlag,
		},
		Action: func(c *cli.Context) error {
			p, err := synth.Lookup(c.String("preset"))
			if err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "lmrun-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			path := filepath.Join(dir, p.Name+".lmc")
			ck, err := p.Build(1)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "synthesizing %s (%s)\n", p.Name, p.About)
			if err := ck.WriteFile(path, progress(c.App.ErrWriter, "writing tensors")); err != nil {
				return err
			}
			args := []string{"lmrun", "run", "-m", path, "-p", c.String("prompt"), "-n", fmt.Sprint(c.Int("n")), "--seed", "1",
				"-t", fmt.Sprint(c.Int("threads"))}
			if b := c.String("backend"); b != "" {
				args = append(args, "--backend", b)
			}
			return c.App.Run(args)
		},
	}
}
