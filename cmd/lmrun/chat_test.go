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
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/internal/fixtures"
	"github.com/lmrun/lmrun/model"
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

// chatTerm is lmrun chat running in a pseudo-terminal.
type chatTerm struct {
	t       *testing.T
	cmd     *exec.Cmd
	f       *os.File
	out     bytes.Buffer
	outCh   chan []byte
	prompts int
	stderr  string // file receiving the command's standard error
}

// startChat runs lmrun chat with args in a pseudo-terminal, its standard error to a file.
func startChat(t *testing.T, dir string, args ...string) *chatTerm {
	t.Helper()
	c := &chatTerm{t: t, outCh: make(chan []byte, 64), stderr: filepath.Join(dir, "stderr")}
	stderr, err := os.Create(c.stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stderr.Close() })
	c.cmd = exec.Command(os.Args[0], append([]string{"chat"}, args...)...)
	c.cmd.Env = append(os.Environ(), "LMRUN_TEST_MAIN=1", "SOURCE_DATE_EPOCH=1733356800")
	c.cmd.Stderr = stderr
	if c.f, err = pty.Start(c.cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.f.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.f.Read(buf)
			if n > 0 {
				c.outCh <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				close(c.outCh)
				return
			}
		}
	}()
	return c
}

// waitFor reads the terminal until it has shown want count times in all.
func (c *chatTerm) waitFor(want string, count int) {
	c.t.Helper()
	deadline := time.After(30 * time.Second)
	for strings.Count(c.out.String(), want) < count {
		select {
		case b, ok := <-c.outCh:
			if !ok {
				c.t.Fatalf("lmrun chat ended before %q:\n%s", want, c.out.String())
			}
			c.out.Write(b)
		case <-deadline:
			c.t.Fatalf("no %q after 30 s:\n%s", want, c.out.String())
		}
	}
}

// send types line at the next prompt.
func (c *chatTerm) send(line string) {
	c.t.Helper()
	c.prompts++
	c.waitFor("> ", c.prompts)
	if _, err := c.f.Write([]byte(line + "\n")); err != nil {
		c.t.Fatal(err)
	}
}

// exit types /exit and waits for a clean exit; it returns the standard error.
func (c *chatTerm) exit() string {
	c.t.Helper()
	c.send("/exit")
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	for {
		select {
		case b, ok := <-c.outCh:
			if ok {
				c.out.Write(b)
			} else {
				c.outCh = nil
			}
			continue
		case err := <-done:
			if err != nil {
				c.t.Fatalf("exit: %v\n%s", err, c.out.String())
			}
		case <-time.After(30 * time.Second):
			c.cmd.Process.Kill()
			c.t.Fatalf("lmrun chat did not exit after /exit:\n%s", c.out.String())
		}
		break
	}
	log, err := os.ReadFile(c.stderr)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(log)
}

// TestChatFamilies: three turns with each current family's own chat template (Llama 3,
// Qwen2.5 — SmolLM2's ChatML is TestChatTerminal's —, Mistral v0.3, Phi-3.5) on a
// random-weight model, through a pseudo-terminal. Every turn after the first reuses the
// cache: it prefills nothing of what came before the previous reply (a template may
// render a past reply differently, e.g. trimmed, and the session then rewinds to before
// it), and its prefill is at most the previous reply plus its own message's render.
func TestChatFamilies(t *testing.T) {
	dir := t.TempDir()
	// Llama 3's templates write a dated system block each time: three turns need more
	// than the tiny preset's 256 positions (RoPE: the context is metadata alone).
	tiny := tinyModel(t, dir, "tiny.lmc", func(ck *format.Checkpoint, _ model.Config) {
		ck.Meta[model.KeyContextLength] = int64(1024)
	})
	for _, name := range []string{"tokenizer_config-llama3", "meta-llama-Llama-3.2-3B-Instruct", "tokenizer_config-qwen2", "tokenizer_config-mistral", "microsoft-Phi-3.5-mini-instruct"} {
		t.Run(name, func(t *testing.T) {
			tmpl := fixtures.Path(t, "chat", "templates", name+".jinja")
			sub := t.TempDir()
			c := startChat(t, sub, "-m", tiny, "--chat-template", tmpl, "-n", "4", "--temp", "0", "-v", "-t", "1")
			msgs := []string{"Hello there", "Tell me more", "Thanks"}
			for _, m := range msgs {
				c.send(m)
			}
			log := c.exit()
			turns := chatTurnLine.FindAllStringSubmatch(log, -1)
			if len(turns) != len(msgs) {
				t.Fatalf("%d turn lines, want %d:\n%s\n%s", len(turns), len(msgs), log, c.out.String())
			}
			t.Logf("%s", strings.Join(chatTurnLine.FindAllString(log, -1), "\n"))
			num := func(s string) int { n, _ := strconv.Atoi(s); return n }
			for i := 1; i < len(turns); i++ {
				prevReused, prevPrefilled, prevGen := num(turns[i-1][3]), num(turns[i-1][2]), num(turns[i-1][4])
				prefilled, reused := num(turns[i][2]), num(turns[i][3])
				if reused < prevReused+prevPrefilled {
					t.Errorf("turn %d reused %d tokens, less than the %d before the previous reply:\n%s", i+1, reused, prevReused+prevPrefilled, log)
				}
				// One byte a token: this turn's own message and its template text stay
				// well under 200 bytes for these templates.
				if prefilled > prevGen+len(msgs[i])+200 {
					t.Errorf("turn %d prefilled %d tokens: more than the previous reply (%d) and its own message:\n%s", i+1, prefilled, prevGen, log)
				}
			}
		})
	}
}
