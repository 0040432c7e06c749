package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/lmrun/lmrun/convert/synth"
)

// lmrunWith runs the CLI in-process with a context and standard input.
func lmrunWith(t *testing.T, ctx context.Context, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	app := newApp(&out, &errb)
	app.Reader = strings.NewReader(stdin)
	err := app.RunContext(ctx, flagsFirst(app, append([]string{"lmrun"}, args...)))
	return out.String(), errb.String(), err
}

// TestRunLlamaCppFlags: -c, -s, -f FILE, -f -, -n -1 and -n 0 mean what they mean to
// llama.cpp users.
func TestRunLlamaCppFlags(t *testing.T) {
	model := stories260K(t)
	long := mustRun(t, "run", "-m", model, "--ctx", "64", "--seed", "5", "--temp", "1", "-n", "20", "--ids")
	short := mustRun(t, "run", "-m", model, "-c", "64", "-s", "5", "--temp", "1", "-n", "20", "--ids")
	if long != short || len(strings.Fields(short)) == 0 {
		t.Fatalf("-c/-s: %q, --ctx/--seed: %q", short, long)
	}

	want := mustRun(t, "run", "-m", model, "-p", "Once upon a time", "-n", "20", "--temp", "0")
	file := filepath.Join(t.TempDir(), "prompt.txt")
	if err := os.WriteFile(file, []byte("Once upon a time\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, "run", "-m", model, "-f", file, "-n", "20", "--temp", "0"); got != want {
		t.Fatalf("-f FILE: %q, -p: %q", got, want)
	}
	got, stderr, err := lmrunWith(t, t.Context(), "Once upon a time\n", "run", "-m", model, "-f", "-", "-n", "20", "--temp", "0")
	if err != nil || got != want {
		t.Fatalf("-f -: %q, %v %s; -p: %q", got, err, stderr, want)
	}

	// -n -1: until the context is full. The BOS prompt and 31 tokens fill 32 positions;
	// a 32nd token is sampled from the logits after the last.
	ids := mustRun(t, "run", "-m", model, "--tokens", "1", "-c", "32", "-n", "-1", "--temp", "0", "--ignore-eos", "--ids")
	if n := len(strings.Fields(ids)); n != 32 {
		t.Fatalf("-n -1 in a 32-token context: %d tokens: %s", n, ids)
	}
	if got := mustRun(t, "run", "-m", model, "--tokens", "1", "-n", "0", "--ids"); got != "\n" {
		t.Fatalf("-n 0 generated %q", got)
	}

	for name, args := range map[string][]string{
		"-n -2":                {"-n", "-2"},
		"-p and -f":            {"-p", "x", "-f", file},
		"--stop with --ids":    {"--stop", "x", "--ids"},
		"--repeat-penalty 0":   {"--repeat-penalty", "0"},
		"--repeat-last-n -2":   {"--repeat-last-n", "-2", "--repeat-penalty", "1.1"},
		"--min-p 2":            {"--min-p", "2"},
		"--presence-penalty ∞": {"--presence-penalty", "Inf"},
		"missing -f file":      {"-f", filepath.Join(t.TempDir(), "none.txt")},
	} {
		if _, _, err := lmrun(t, append([]string{"run", "-m", model}, args...)...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRunStopAndPenalties: --stop strings end the text and are not printed (commas are
// part of them), and the sampler flags reach the sampler.
func TestRunStopAndPenalties(t *testing.T) {
	model := stories260K(t)
	run := func(args ...string) string {
		return mustRun(t, append([]string{"run", "-m", model, "-p", "Once upon a time", "-n", "20", "--temp", "0"}, args...)...)
	}
	full := run()
	if !strings.HasPrefix(full, "Once upon a time, there was a little girl named Lily.") {
		t.Fatalf("greedy text: %q", full)
	}
	if got := run("--stop", "little", "--stop", "named"); got != "Once upon a time, there was a \n" {
		t.Fatalf("--stop little: %q", got)
	}
	if got := run("--stop", ", there"); got != "Once upon a time\n" {
		t.Fatalf("--stop with a comma: %q", got)
	}
	if got := run("--stop", "nowhere"); got != full {
		t.Fatalf("a stop string that never occurs changed the text: %q", got)
	}
	// A strong penalty changes greedy text; --repeat-last-n 0 turns it off, as llama.cpp.
	if got := run("--repeat-penalty", "5"); got == full {
		t.Fatal("--repeat-penalty 5 changed nothing")
	}
	if got := run("--repeat-penalty", "5", "--presence-penalty", "3", "--repeat-last-n", "0"); got != full {
		t.Fatalf("--repeat-last-n 0 did not turn the penalties off: %q", got)
	}
	// --top-p 0 keeps the most likely token only (llama.cpp): greedy at any temperature.
	if got := run("--temp", "1.5", "--top-p", "0", "-s", "3"); got != full {
		t.Fatalf("--top-p 0: %q", got)
	}
}

// TestRunCancelled: a cancelled run prints what it has and returns context.Canceled,
// which main turns into exit status 130.
func TestRunCancelled(t *testing.T) {
	model := stories260K(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	out, stderr, err := lmrunWith(t, ctx, "", "run", "-m", model, "-p", "Once upon a time", "-n", "20")
	if !errors.Is(err, context.Canceled) || exitCode(err) != exitInterrupted {
		t.Fatalf("cancelled run: %v (exit %d)", err, exitCode(err))
	}
	if out != "Once upon a time\n" || !strings.Contains(stderr, "prompt: 0 of ") || !strings.Contains(stderr, "generation: 0 tokens") {
		t.Fatalf("cancelled run printed %q, stderr %q", out, stderr)
	}
}

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("bad"), 1},
		{context.Canceled, 130},
		{fmt.Errorf("perplexity: window at 0: %w", context.Canceled), 130},
		{context.DeadlineExceeded, 1},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestVersion(t *testing.T) {
	if out := mustRun(t, "--version"); !strings.HasPrefix(out, "lmrun version ") {
		t.Fatalf("--version: %q", out)
	}
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/lmrun/lmrun", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "c57cf05d0123456789"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2025-01-02T03:04:05Z"}}}
	want := "v0.3.0, revision c57cf05d0123 with local changes of 2025-01-02T03:04:05Z, go1.26.8 "
	if got := versionOf(info); !strings.HasPrefix(got, want) {
		t.Fatalf("version %q, want %q…", got, want)
	}
	if got := versionOf(&debug.BuildInfo{GoVersion: "go1.26.8"}); !strings.HasPrefix(got, "(devel), go1.26.8 ") {
		t.Fatalf("version without VCS information: %q", got)
	}
}

// TestHelpDefaults: no flag's help states a default twice (its usage text and
// urfave/cli's appended "(default: …)"), which is how a zero value that means something
// else ("from the clock", "the model's") used to contradict the usage.
func TestHelpDefaults(t *testing.T) {
	app := newApp(nil, nil)
	var paths [][]string
	for _, c := range app.Commands {
		if len(c.Subcommands) == 0 {
			paths = append(paths, []string{c.Name})
		}
		for _, s := range c.Subcommands {
			paths = append(paths, []string{c.Name, s.Name})
		}
	}
	for _, p := range paths {
		help := mustRun(t, append(p, "--help")...)
		for _, line := range strings.Split(help, "\n") {
			if strings.Count(line, "default:") > 1 {
				t.Errorf("lmrun %s --help: %q", strings.Join(p, " "), strings.TrimSpace(line))
			}
		}
	}
	help := mustRun(t, "run", "--help")
	for _, want := range []string{"(default: from the clock, printed to stderr)", "(default: the model's)", "(default: one per physical core)",
		"--min-p value", "(default: 0.05)", "--repeat-last-n value", "(default: 64)", "--ctx N, -c N", "--seed SEED, -s SEED", "--file FILE, -f FILE"} {
		if !strings.Contains(help, want) {
			t.Errorf("lmrun run --help lacks %q", want)
		}
	}
}

// slowModel writes a random model big enough that a 1000-token prompt takes a while
// on one thread, with a 2048-token context.
func slowModel(t *testing.T) string {
	t.Helper()
	p, err := synth.Lookup("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.Config
	cfg.Dim, cfg.NHeads, cfg.NKVHeads, cfg.HeadDim, cfg.RopeDim = 256, 4, 4, 64, 64
	cfg.FFNDim, cfg.NLayers, cfg.AttnWindows, cfg.ContextLength = 768, 4, make([]int, 4), 2048
	ck, err := synth.Build(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "slow.lmc")
	if err := ck.WriteFile(path, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInterruptPrefill runs the real main on a ~1000-token prompt read with -f and
// sends SIGINT once it has started: it must stop (within one batch of the prompt, see
// engine.TestGenerateCancelPrefill) and exit with status 130, printing the speed line.
func TestInterruptPrefill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a long prompt in a subprocess")
	}
	model := slowModel(t)
	prompt := filepath.Join(t.TempDir(), "prompt.txt")
	if err := os.WriteFile(prompt, []byte(strings.Repeat("Once upon a time, ", 56)[:1000]), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "-m", model, "-f", prompt, "-n", "-1", "-t", "1", "-s", "1")
	cmd.Env = append(os.Environ(), "LMRUN_TEST_MAIN=1")
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	guard := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() }) // only if it hangs
	defer guard.Stop()
	// The first stderr line is printed once Ctrl-C is handled, as the prompt starts.
	r := bufio.NewReader(stderr)
	banner, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(banner, "lmrun: ") {
		t.Fatalf("first stderr line %q: %v", banner, err)
	}
	sent := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	err = cmd.Wait()
	t.Logf("exited %v after SIGINT; stderr: %s", time.Since(sent).Round(time.Millisecond), rest)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("exit: %v, want status 130", err)
	}
	if !strings.Contains(string(rest), "prompt: ") || !strings.HasSuffix(string(rest), "lmrun: interrupted\n") {
		t.Fatalf("stderr after the banner: %q", rest)
	}
}
