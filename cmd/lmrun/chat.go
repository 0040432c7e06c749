package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/chat"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/tokenizer"
)

func chatCommand() *cli.Command {
	flags := []cli.Flag{
		modelFlag, tokenizerFlag, chatTemplateFlag,
		&cli.StringFlag{Name: "system", Usage: "system message `TEXT` starting the conversation"},
		threadsFlag, backendFlag, f32ActFlag, repackFlag,
		&cli.IntFlag{Name: "n", Value: -1, Usage: "generate at most `N` tokens a reply (-1: until the end of the turn or a full context)"},
	}
	flags = append(flags, samplingFlags()...)
	flags = append(flags,
		&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Usage: "context length `N` of the conversation", DefaultText: "the model's"},
		kvFlag,
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print, after each reply, the tokens prefilled and generated and the speeds (stderr)"},
		&cli.DurationFlag{Name: "token-delay", Hidden: true, Usage: "pause after each generated token (to watch, or to interrupt, a fast model)"},
	)
	return &cli.Command{
		Name:      "chat",
		Usage:     "chat with a model in the terminal, with its chat template",
		UsageText: "lmrun chat -m MODEL [--system TEXT] [--chat-template FILE|NAME] [-n N] [--temp 0.8] ... [-v]",
		Description: "Reads a message a line from standard input and prints the model's reply. The conversation\n" +
			"is rendered with the model's chat template (or --chat-template) at each turn; the KV cache\n" +
			"keeps the conversation so far, so only the new turn's tokens are processed (when the\n" +
			"template renders a past reply differently, from the first turn that differs).\n" +
			"A reply ends at the model's end-of-turn token (<|im_end|>, <|eot_id|>, </s>, …: its EOS and\n" +
			"the end-of-turn tokens of the template), or -n tokens, or a full context.\n\n" +
			"/reset starts a new conversation, /exit (or end of input) leaves. Ctrl-C stops a reply and\n" +
			"returns to the prompt; at the prompt it leaves.",
		Flags:  flags,
		Action: chatAction,
	}
}

// samplingFlags are the sampler's flags, shared by run and chat.
func samplingFlags() []cli.Flag {
	return []cli.Flag{
		&cli.Float64Flag{Name: "temp", Value: 0.8, Usage: "sampling temperature (0: greedy)"},
		&cli.IntFlag{Name: "top-k", Value: 40, Usage: "sample among the `K` most likely tokens (0: all)"},
		&cli.Float64Flag{Name: "top-p", Value: 0.95, Usage: "nucleus sampling mass (1: off; 0: the most likely token only)"},
		&cli.Float64Flag{Name: "min-p", Value: 0.05, Usage: "keep tokens at least this fraction as likely as the most likely one (0: off)"},
		&cli.Float64Flag{Name: "repeat-penalty", Value: 1, Usage: "penalise the tokens of the last --repeat-last-n: logits divided (negative ones multiplied) by this (1: off)"},
		&cli.IntFlag{Name: "repeat-last-n", Value: engine.DefaultRepeatLastN, Usage: "tokens the penalties look back on (0: penalties off; -1: the whole context)"},
		&cli.Float64Flag{Name: "presence-penalty", Usage: "subtracted from the logit of every token in the last --repeat-last-n (0: off)"},
		&cli.Float64Flag{Name: "frequency-penalty", Usage: "subtracted from a token's logit once per occurrence in the last --repeat-last-n (0: off)"},
		&cli.Uint64Flag{Name: "seed", Aliases: []string{"s"}, Usage: "random `SEED`", DefaultText: "from the clock, printed to stderr"},
	}
}

func chatAction(c *cli.Context) error {
	seed := c.Uint64("seed")
	if !c.IsSet("seed") {
		seed = uint64(time.Now().UnixNano())
	}
	scfg, err := samplerConfig(c, seed)
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
	cs, err := newChatSession(c, m, scfg, half)
	if err != nil {
		return err
	}
	stderr := c.App.ErrWriter
	fmt.Fprintf(stderr, "lmrun: %s, backend %s, %d threads, seed %d, context %d%s; /reset starts over, /exit leaves\n",
		c.String("model"), m.Backend(), m.Threads(), seed, cs.s.Context(), repackNote(m))

	in := c.App.Reader
	if in == nil {
		in = os.Stdin
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)

	out := c.App.Writer
	for {
		fmt.Fprint(out, "> ")
		var line string
		select {
		case l, ok := <-lines:
			if !ok {
				fmt.Fprintln(out)
				return nil
			}
			line = l
		case <-sig:
			fmt.Fprintln(out)
			return nil
		case <-c.Context.Done():
			return c.Context.Err()
		}
		switch strings.TrimSpace(line) {
		case "":
			continue
		case "/exit", "/quit":
			return nil
		case "/reset":
			cs.reset()
			fmt.Fprintln(out, "(new conversation)")
			continue
		}
		ctx, cancel := context.WithCancel(c.Context)
		done := make(chan struct{})
		go func() {
			select {
			case <-sig:
				cancel()
			case <-done:
			}
		}()
		st, err := cs.reply(ctx, line, func(text string) error {
			_, err := io.WriteString(out, text)
			return err
		})
		close(done)
		cancel()
		fmt.Fprintln(out)
		switch {
		case errors.Is(err, context.Canceled):
			fmt.Fprintln(out, "(interrupted)")
		case errors.Is(err, engine.ErrContextFull):
			fmt.Fprintf(out, "(%v; /reset starts a new conversation)\n", err)
			continue
		case err != nil:
			return err
		case st.full:
			fmt.Fprintln(out, "(the context is full; /reset starts a new conversation)")
		}
		if c.Bool("verbose") {
			fmt.Fprintf(stderr, "turn %d: prefilled %d tokens (%d reused from the cache), generated %d tokens | prompt %.1f tok/s, generation %.1f tok/s\n",
				cs.turns, st.PromptTokens, st.reused, st.Generated, st.PromptTokensPerSecond(), st.GenTokensPerSecond())
		}
	}
}

// chatSession is a conversation with a model whose KV cache holds the conversation so
// far: each turn renders the whole conversation and processes only what follows the
// text already in the cache.
type chatSession struct {
	m        *engine.Model
	s        *engine.Session
	tmpl     *chat.Template
	opts     chat.Options
	conv     *chat.Conversation
	system   string
	specials []chat.Special // special tokens written in rendered text, longest first
	stopIDs  []int
	stops    []string // end-of-turn strings, for models without such tokens
	scfg     engine.SamplerConfig
	smp      *engine.Sampler
	max      int
	delay    time.Duration
	cached   string // the text whose tokens the cache holds
	marks    []mark // the rendered prompts of the turns in the cache
	turns    int
}

// mark is a turn's rendered prompt and the position after its tokens: where the
// session can be rewound to when a later render of the past differs from the cache.
type mark struct {
	text string
	pos  int
}

// turnStats reports a reply: the engine's stats, the cached tokens reused, whether the
// context filled up.
type turnStats struct {
	engine.Stats
	reused int
	full   bool
}

func newChatSession(c *cli.Context, m *engine.Model, scfg engine.SamplerConfig, halfKV bool) (*chatSession, error) {
	tok := m.Tokenizer()
	if tok == nil {
		if m.TokenizerErr() != nil {
			return nil, m.TokenizerErr()
		}
		return nil, errors.New("the model carries no tokenizer; give one with --tokenizer FILE")
	}
	tmpl, err := chatTemplate(c, m)
	if err != nil {
		return nil, err
	}
	opts, err := renderOptions(m, true)
	if err != nil {
		return nil, err
	}
	if n, limit := c.Int("ctx"), m.Config().ContextLength; n < 0 || n > limit {
		return nil, fmt.Errorf("--ctx %d: want 0 (the model's context length) to %d", n, limit)
	}
	if n := c.Int("n"); n < -1 {
		return nil, fmt.Errorf("-n %d: want ≥ -1 (-1: until the end of the turn)", n)
	}
	cs := &chatSession{
		m: m, s: m.NewSession(engine.SessionOptions{Context: c.Int("ctx"), HalfKV: halfKV}),
		tmpl: tmpl, opts: opts, system: c.String("system"), scfg: scfg,
		specials: specialTokens(m), max: c.Int("n"), delay: c.Duration("token-delay"),
	}
	// The end-of-turn strings the template writes stop a reply: as tokens when the
	// vocabulary has them, else as text.
	if cs.stopIDs, cs.stops, err = chat.Ends(tmpl, opts, cs.specials); err != nil {
		return nil, err
	}
	cs.reset()
	return cs, nil
}

func (cs *chatSession) specialID(text string) (int, bool) {
	for _, sp := range cs.specials {
		if sp.Text == text {
			return sp.ID, true
		}
	}
	return 0, false
}

// reset starts a new conversation (the system message only) and a new sampler.
func (cs *chatSession) reset() {
	cs.conv = &chat.Conversation{}
	if cs.system != "" {
		cs.conv.Append("system", cs.system)
	}
	cs.s.Reset()
	cs.cached, cs.marks = "", nil
	cs.smp, _ = engine.NewSampler(cs.scfg) // the configuration was checked by samplerConfig
	cs.turns = 0
}

// reply adds the user's message, generates the assistant's reply and adds it, emitting
// its text as it comes. The cache keeps the conversation: only the text after the
// cached text is processed. When the new render does not start with it (the template
// renders past replies differently), the session is rewound to the latest turn whose
// rendered prompt the render starts with, else emptied and the whole conversation
// processed. An interrupted reply is kept as it is.
func (cs *chatSession) reply(ctx context.Context, user string, emit func(string) error) (turnStats, error) {
	var ts turnStats
	n := cs.conv.Len()
	cs.conv.Append("user", user)
	text, err := cs.tmpl.Render(cs.conv, cs.opts)
	if err != nil {
		cs.conv.Truncate(n)
		return ts, err
	}
	suffix := text
	if cs.cached != "" && strings.HasPrefix(text, cs.cached) {
		suffix = text[len(cs.cached):]
		ts.reused = cs.s.Pos()
	} else {
		rewound := false
		for i := len(cs.marks) - 1; i >= 0 && !rewound; i-- {
			mk := cs.marks[i]
			if strings.HasPrefix(text, mk.text) && cs.s.Rewind(mk.pos) {
				suffix, ts.reused, cs.marks, rewound = text[len(mk.text):], mk.pos, cs.marks[:i+1], true
			}
		}
		if !rewound {
			cs.s.Reset()
			cs.marks = nil
			cs.smp, _ = engine.NewSampler(cs.scfg)
		}
	}
	ids := cs.encode(suffix)
	if len(ids) == 0 {
		cs.conv.Truncate(n)
		return ts, errors.New("the message adds no tokens to the conversation")
	}
	if cs.s.Pos()+len(ids) >= cs.s.Context() {
		cs.conv.Truncate(n)
		return ts, fmt.Errorf("%w: the conversation needs %d tokens, the context holds %d", engine.ErrContextFull, cs.s.Pos()+len(ids), cs.s.Context())
	}
	tok := cs.m.Tokenizer()
	stream := tokenizer.NewStream(tok)
	for _, id := range ids {
		if _, err := stream.Add(id); err != nil {
			return ts, err
		}
	}
	var raw, cachedRaw strings.Builder // the generated text; the text of the tokens in the cache
	printed := 0
	stopped := false
	errStop := errors.New("stop string")
	cs.turns++
	st, err := cs.s.Generate(ctx, ids, engine.GenerateOptions{MaxTokens: cs.max, StopIDs: cs.stopIDs, Sampler: cs.smp}, func(id int) error {
		piece, err := stream.Add(id)
		if err != nil {
			return err
		}
		raw.WriteString(piece)
		r := raw.String()
		if i, ok := firstStop(r, cs.stops); ok {
			stopped = true
			if err := emit(r[printed:i]); err != nil {
				return err
			}
			printed = i
			return errStop // this token is not added to the cache
		}
		cachedRaw.WriteString(piece)
		safe := len(r) - heldBack(r, cs.stops)
		if safe > printed {
			if err := emit(r[printed:safe]); err != nil {
				return err
			}
			printed = safe
		}
		if cs.delay > 0 {
			time.Sleep(cs.delay)
		}
		return nil
	})
	ts.Stats = st
	if st.PromptTokens == len(ids) {
		cs.marks = append(cs.marks, mark{text: text, pos: ts.reused + len(ids)})
	}
	if errors.Is(err, errStop) {
		err = nil
	}
	if !stopped {
		rest := stream.Flush()
		raw.WriteString(rest)
		cachedRaw.WriteString(rest)
		if eerr := emit(raw.String()[printed:]); err == nil {
			err = eerr
		}
		printed = raw.Len()
	}
	reply := raw.String()[:printed]
	cs.conv.Append("assistant", reply)
	cs.cached = text + cachedRaw.String()
	if st.PromptTokens < len(ids) || cs.s.Pos() >= cs.s.Context() {
		// An interrupted prompt or a full context: next turn rewinds or starts over.
		cs.cached = ""
		ts.full = cs.s.Pos() >= cs.s.Context()
	}
	return ts, err
}

// encode tokenizes rendered text: the special tokens written in it are their ids, the
// text between them is encoded as text (no BOS: the template writes it).
func (cs *chatSession) encode(text string) []int {
	tok := cs.m.Tokenizer()
	return chat.Encode(text, cs.specials, func(part string) ([]int, error) { return tok.Encode(part, false, false) })
}

// specialTokens returns the model's control and user-defined tokens (token types 3
// and 4), which chat templates write as text, longest first.
func specialTokens(m *engine.Model) []chat.Special {
	tok := m.Tokenizer()
	var types []int64
	for _, key := range []string{"tokenizer.token_type", "tokenizer.ggml.token_type"} {
		switch v := m.Metadata(key).(type) {
		case []int64:
			types = v
		case []int32:
			for _, x := range v {
				types = append(types, int64(x))
			}
		}
		if types != nil {
			break
		}
	}
	return chat.Specials(types, tok.VocabSize(), tok.Token)
}

// firstStop returns where the first stop string in s starts.
func firstStop(s string, stops []string) (int, bool) {
	at := -1
	for _, stop := range stops {
		if i := strings.Index(s, stop); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	return at, at >= 0
}

// heldBack returns the length of the longest suffix of s that begins a stop string.
func heldBack(s string, stops []string) int {
	hold := 0
	for _, stop := range stops {
		for k := min(len(stop)-1, len(s)); k > hold; k-- {
			if strings.HasSuffix(s, stop[:k]) {
				hold = k
				break
			}
		}
	}
	return hold
}
