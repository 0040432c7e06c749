package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// chatTurnLine matches the stats lines of chat -v: turn, tokens prefilled, tokens reused.
var chatTurnLine = regexp.MustCompile(`turn (\d+): prefilled (\d+) tokens \((\d+) reused from the cache\), generated (\d+) tokens`)

// TestChatTerminal drives lmrun chat through a pseudo-terminal, as a person would: three
// turns on a random-weight model with a ChatML template given by --chat-template, where
// each turn after the first prefills only its own tokens (the bytes tokenizer makes one
// token a byte); Ctrl-C in the middle of a slow reply returns to the prompt; /reset
// starts over; /exit leaves with status 0.
func TestChatTerminal(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.lmc")
	mustRun(t, "synth", "--preset", "tiny", "-o", model)
	tmpl := filepath.Join(dir, "chatml.jinja")
	src := "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	if err := os.WriteFile(tmpl, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	stderrFile := filepath.Join(dir, "stderr")
	stderr, err := os.Create(stderrFile)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	// The reply to "slow" is paced so that Ctrl-C lands in its middle.
	cmd := exec.Command(os.Args[0], "chat", "-m", model, "--chat-template", tmpl, "--system", "Be brief.",
		"-n", "6", "--temp", "0", "-v", "-t", "1", "--token-delay", "150ms")
	cmd.Env = append(os.Environ(), "LMRUN_TEST_MAIN=1")
	cmd.Stderr = stderr
	f, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	outCh := make(chan []byte, 64)
	go func() {
		r := bufio.NewReader(f)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				outCh <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				close(outCh)
				return
			}
		}
	}()
	// waitFor reads the terminal until it has shown want count times in all.
	waitFor := func(want string, count int) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for strings.Count(out.String(), want) < count {
			select {
			case b, ok := <-outCh:
				if !ok {
					t.Fatalf("lmrun chat ended before %q:\n%s", want, out.String())
				}
				out.Write(b)
			case <-deadline:
				t.Fatalf("no %q after 30 s:\n%s", want, out.String())
			}
		}
	}
	prompts := 0
	send := func(line string) {
		t.Helper()
		prompts++
		waitFor("> ", prompts)
		if _, err := f.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	send("Hi")
	send("And?")
	send("More")
	send("/reset")
	waitFor("(new conversation)", 1)
	send("Again")
	time.Sleep(300 * time.Millisecond)            // the reply takes 6 × 150 ms
	if _, err := f.Write([]byte{3}); err != nil { // Ctrl-C: the terminal sends SIGINT
		t.Fatal(err)
	}
	waitFor("(interrupted)", 1)
	send("/exit")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case b, ok := <-outCh:
			if ok {
				out.Write(b)
				continue
			}
			outCh = nil
			continue
		case err := <-done:
			if err != nil {
				t.Fatalf("exit: %v\n%s", err, out.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("lmrun chat did not exit after /exit:\n%s", out.String())
		}
		break
	}
	log, _ := os.ReadFile(stderrFile)
	turns := chatTurnLine.FindAllStringSubmatch(string(log), -1)
	if len(turns) != 4 {
		t.Fatalf("%d turn lines, want 4:\n%s", len(turns), log)
	}
	if testing.Verbose() {
		t.Logf("terminal:\n%s\nstderr:\n%s", out.String(), log)
	}
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	// One byte a token: the first turn prefills its whole render; later turns prefill
	// what the render adds after the cached text: the end of the reply's turn, the
	// user's turn and the assistant's opening.
	first := len("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
	next := func(msg string) int {
		return len("<|im_end|>\n<|im_start|>user\n" + msg + "<|im_end|>\n<|im_start|>assistant\n")
	}
	want := [][2]int{{first, 0}, {next("And?"), 0}, {next("More"), 0}, {first - len("Hi") + len("Again"), 0}}
	reused := 0
	for i, tl := range turns {
		prefilled, got := num(tl[2]), num(tl[3])
		if prefilled != want[i][0] {
			t.Errorf("turn %d prefilled %d tokens, want %d", i+1, prefilled, want[i][0])
		}
		if i == 1 || i == 2 {
			if got != reused {
				t.Errorf("turn %d reused %d cached tokens, want %d (everything so far)", i+1, got, reused)
			}
		} else if got != 0 {
			t.Errorf("turn %d reused %d cached tokens after a reset", i+1, got)
		}
		reused = got + prefilled + num(tl[4])
	}
	if g := num(turns[3][4]); g >= 6 {
		t.Errorf("the interrupted reply generated %d tokens, all it was allowed", g)
	}
}

// TestRunChat checks run --chat: -p is rendered as the user's message with the
// template (one byte a token on the synthetic model) and the reply is generated.
func TestRunChat(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.lmc")
	mustRun(t, "synth", "--preset", "tiny", "-o", model)
	_, stderr, err := lmrun(t, "run", "-m", model, "--chat", "--chat-template", "chatml", "--system", "S", "-p", "Hi", "-n", "3", "--temp", "0")
	if err != nil {
		t.Fatal(err)
	}
	want := len("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
	if !strings.Contains(stderr, "prompt: "+strconv.Itoa(want)+" tokens") || !strings.Contains(stderr, "generation: 3 tokens") {
		t.Errorf("stderr %q, want %d prompt tokens and 3 generated", stderr, want)
	}
	for _, args := range [][]string{
		{"run", "-m", model, "--chat", "-p", "Hi"},                                      // no template in the model
		{"run", "-m", model, "--chat", "--chat-template", "chatml"},                     // no message
		{"run", "-m", model, "--chat", "--chat-template", "chatml", "-p", "x", "--ids"}, // text only
		{"chat", "-m", model, "--chat-template", filepath.Join(dir, "missing.jinja")},   // no such template
		{"chat", "-m", model, "--chat-template", "chatml", "--ctx", "100000"},           // context too large
	} {
		if _, _, err := lmrun(t, args...); err == nil {
			t.Errorf("lmrun %v: no error", args)
		}
	}
}

// TestChatRewind uses a template that trims past replies, so the second turn's render
// does not start with the cached text: the session is rewound to the end of the first
// turn's prompt, which is reused, and the trimmed reply and the new turn are prefilled.
func TestChatRewind(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.lmc")
	mustRun(t, "synth", "--preset", "tiny", "-o", model)
	tmpl := filepath.Join(dir, "trim.jinja")
	src := "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	if err := os.WriteFile(tmpl, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	app := newApp(&out, &errb)
	app.Reader = strings.NewReader("Hi\nAnd?\n/exit\n")
	if err := app.Run([]string{"lmrun", "chat", "-m", model, "--chat-template", tmpl, "-n", "6", "--temp", "0", "-v"}); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	turns := chatTurnLine.FindAllStringSubmatch(errb.String(), -1)
	if len(turns) != 2 {
		t.Fatalf("%d turn lines, want 2:\n%s", len(turns), errb.String())
	}
	first := len("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
	next := len("<|im_end|>\n<|im_start|>user\nAnd?<|im_end|>\n<|im_start|>assistant\n")
	prefilled, reused := turns[1][2], turns[1][3]
	if reused != strconv.Itoa(first) {
		t.Errorf("turn 2 reused %s tokens, want %d (the first turn's prompt)", reused, first)
	}
	if p, _ := strconv.Atoi(prefilled); p < next || p > next+6*3 {
		t.Errorf("turn 2 prefilled %d tokens, want the trimmed reply and %d", p, next)
	}
}

// TestChatEncodeSpecials checks that the special tokens a template writes are encoded
// as their ids and the text between them as text.
func TestChatEncodeSpecials(t *testing.T) {
	m, err := loadModel(fixtures.Path(t, "hf", "fake_gpt2"), "", engine.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cs := &chatSession{m: m, specials: specialTokens(m)}
	eot := m.Tokenizer().EOS()
	if id, ok := cs.specialID("<|endoftext|>"); !ok || id != eot {
		t.Fatalf("specialID(<|endoftext|>) = %d, %v; want %d", id, ok, eot)
	}
	tok := m.Tokenizer()
	a, _ := tok.Encode("Hi there", false, false)
	b, _ := tok.Encode(" and <|endof", false, false)
	want := append(append(append([]int{eot}, a...), eot, eot), b...)
	if got := cs.encode("<|endoftext|>Hi there<|endoftext|><|endoftext|> and <|endof"); !slices.Equal(got, want) {
		t.Errorf("encode = %v, want %v", got, want)
	}
}

// TestChatContextFull checks that a message the context cannot hold is a message, not
// the end of the chat, and that the conversation goes on.
func TestChatContextFull(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.lmc")
	mustRun(t, "synth", "--preset", "tiny", "-o", model)
	var out, errb bytes.Buffer
	app := newApp(&out, &errb)
	app.Reader = strings.NewReader(strings.Repeat("x", 300) + "\nHi\n")
	if err := app.Run([]string{"lmrun", "chat", "-m", model, "--chat-template", "chatml", "-n", "2", "--temp", "0", "-v"}); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "context full") || !strings.Contains(out.String(), "/reset starts a new conversation") {
		t.Errorf("no context-full message:\n%s", out.String())
	}
	if turns := chatTurnLine.FindAllStringSubmatch(errb.String(), -1); len(turns) != 1 || turns[0][3] != "0" {
		t.Errorf("want one turn after the refused message, from an empty cache:\n%s", errb.String())
	}
}
