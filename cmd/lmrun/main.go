// Command lmrun runs, converts, inspects and benchmarks language models in the lmrun
// checkpoint format. See the README for a tour; every command has --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	_ "github.com/lmrun/lmrun/backends/all" // the command links every backend this build has
)

func main() {
	app := newApp(os.Stdout, os.Stderr)
	err := app.Run(flagsFirst(app, os.Args))
	if err == nil {
		return
	}
	code := exitCode(err)
	if code == exitInterrupted {
		fmt.Fprintln(os.Stderr, "lmrun: interrupted")
	} else {
		fmt.Fprintln(os.Stderr, "lmrun: "+oneLine(err.Error()))
	}
	os.Exit(code)
}

// exitInterrupted is the exit status of a command stopped by Ctrl-C: 128 + SIGINT, what
// a shell reports for a process killed by it.
const exitInterrupted = 130

// exitCode returns the exit status for a command's error: 0 for none, 130 when it was
// interrupted (its context cancelled), 1 otherwise.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	}
	return 1
}

// interruptible returns a context that the first SIGINT (Ctrl-C) cancels. The signal is
// then released, so a second one ends the process at once (Go's default action). stop
// releases it in any case.
func interruptible(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	go func() {
		select {
		case <-sig:
			signal.Stop(sig)
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(sig)
		cancel()
	}
}

// version describes the build: the module version and the VCS revision when the Go
// toolchain recorded them, and the Go version and platform.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information), " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	}
	return versionOf(info)
}

func versionOf(info *debug.BuildInfo) string {
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" {
		v += ", revision " + rev[:min(len(rev), 12)]
		if modified {
			v += " with local changes"
		}
		if when != "" {
			v += " of " + when
		}
	}
	return v + ", " + info.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "lmrun",
		Usage:     "run GPT-style language models on the CPU, in pure Go",
		UsageText: "lmrun COMMAND [options]\n\n   lmrun synth --preset stories15m -o s15m.lmc\n   lmrun run -m s15m.lmc -p \"Once upon a time\" -n 64",
		Version:   version(),
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed once, by main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the command to `FILE` (go tool pprof reads it)"},
		},
		Before: startProfile,
		After:  stopProfile,
		Commands: []*cli.Command{
			runCommand(),
			logitsCommand(),
			tokenizeCommand(), detokenizeCommand(), pplCommand(),
			renderCommand(), chatCommand(), serveCommand(),
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
	threadsFlag = &cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "run a forward pass on `N` threads", DefaultText: "one per physical core"}
	backendFlag = &cli.StringFlag{Name: "backend", Usage: "kernel backend `NAME` (see lmrun info)", DefaultText: "$LMRUN_BACKEND, else the best this CPU runs"}
	tokensFlag  = &cli.StringFlag{Name: "tokens", Usage: "prompt as comma-separated token `IDS` (instead of -p)"}
	promptFlag  = &cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "prompt `TEXT`, tokenized with the model's tokenizer"}
	repackFlag  = &cli.BoolFlag{Name: "repack", Usage: "lay q8_0 weights out at load for the backend's int8 GEMM, which otherwise repacks them on every product: faster batched decoding and prefill, for the memory of the copy (the load line says how much)"}
	f32ActFlag  = &cli.BoolFlag{Name: "f32-activations", Usage: "multiply q8_0/q4_0 weights with exact f32 activations instead of activations quantized to q8_0 blocks, and bf16 weights instead of activations rounded to bf16 on backends with a bf16 product (as llama.cpp does)"}
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

// startProfile starts the CPU profile --cpuprofile asks for; stopProfile ends it.
func startProfile(c *cli.Context) error {
	name := c.String("cpuprofile")
	if name == "" {
		return nil
	}
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpuprofile %s: %w", name, err)
	}
	c.App.Metadata = map[string]any{"cpuprofile": f}
	return nil
}

func stopProfile(c *cli.Context) error {
	f, ok := c.App.Metadata["cpuprofile"].(*os.File)
	if !ok {
		return nil
	}
	pprof.StopCPUProfile()
	delete(c.App.Metadata, "cpuprofile")
	if err := f.Close(); err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	return nil
}
