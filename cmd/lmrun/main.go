// Command lmrun runs, converts, inspects and benchmarks language models in the lmrun
// checkpoint format. See the README for a tour; every command has --help.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

func main() {
	app := newApp(os.Stdout, os.Stderr)
	if err := app.Run(flagsFirst(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "lmrun: "+oneLine(err.Error()))
		os.Exit(1)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "lmrun",
		Usage:     "run GPT-style language models on the CPU, in pure Go",
		UsageText: "lmrun COMMAND [options]\n\n   lmrun synth --preset stories15m -o s15m.lmc\n   lmrun run -m s15m.lmc -p \"Once upon a time\" -n 64",
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed once, by main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			runCommand(),
			logitsCommand(),
			tokenizeCommand(), detokenizeCommand(), pplCommand(),
			convertCommand(),
			synthCommand(),
			infoCommand(),
			verifyCommand(),
			demoCommand(),
			benchCommand(),
		},
	}
}

// Flags shared by the commands that load a model.
var (
	modelFlag   = &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "checkpoint `FILE` (.lmc)", Required: true}
	threadsFlag = &cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "threads (0: one per physical core)"}
	backendFlag = &cli.StringFlag{Name: "backend", Usage: "kernel backend `NAME` (default: $LMRUN_BACKEND, else the best this CPU runs; see lmrun info)"}
	tokensFlag  = &cli.StringFlag{Name: "tokens", Usage: "prompt as comma-separated token `IDS` (instead of -p)"}
	promptFlag  = &cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "prompt `TEXT`, tokenized with the model's tokenizer"}
	f32ActFlag  = &cli.BoolFlag{Name: "f32-activations", Usage: "multiply q8_0/q4_0 weights with exact f32 activations (default: activations quantized to q8_0 blocks, as llama.cpp does)"}
)

// parseIDs parses "1,2,3" (spaces allowed).
func parseIDs(s string) ([]int, error) {
	var ids []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("--tokens: %q is not a token id", f)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, errors.New("--tokens: no token ids given")
	}
	return ids, nil
}

// progress returns a callback that shows "what done/total" on one stderr line when
// stderr is a terminal, and prints nothing otherwise (logs stay clean).
func progress(w io.Writer, what string) func(done, total int) {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return func(done, total int) {
		fmt.Fprintf(w, "\r%s %d/%d", what, done, total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
}

// flagsFirst moves a command's flags ahead of its positional arguments, so that
// "lmrun convert IN -o OUT" works: urfave/cli v2 stops parsing flags at the first
// positional argument. Everything after "--" stays positional.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 3 {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return args
	}
	head := 2 // args[:head] is the program and the command path
	for head < len(args) {
		sub := cmd.Command(args[head])
		if sub == nil {
			break
		}
		cmd = sub
		head++
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, positional []string
	rest := args[head:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(rest) {
				i++
				flags = append(flags, rest[i])
			}
			continue
		}
		positional = append(positional, a)
	}
	out := append(append([]string(nil), args[:head]...), flags...)
	return append(out, positional...)
}
