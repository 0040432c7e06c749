package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/chat"
	"github.com/lmrun/lmrun/serve"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve a model over HTTP with the OpenAI API (chat and text completions)",
		UsageText: "lmrun serve -m MODEL [--host 127.0.0.1] [--port 8080] [--parallel N] [-c N] [-ub N] [--api-key KEY] [--chat-template FILE|NAME] [-t N]",
		Description: "Answers POST /v1/chat/completions, POST /v1/completions (streamed as Server-Sent Events\n" +
			"with \"stream\": true), GET /v1/models, GET /health and GET /metrics (Prometheus). Up to\n" +
			"--parallel sequences (each with its own KV cache; the weights are shared) are decoded together,\n" +
			"one batched forward pass per token; a newcomer's prompt joins in chunks of --ubatch-size\n" +
			"tokens; more requests wait in a bounded queue, and a full queue is answered 429. A prompt that\n" +
			"begins as an idle sequence's cache does reuses it. SIGINT or SIGTERM stops accepting requests\n" +
			"(503), lets the running ones finish (cancelling them after --shutdown-grace) and exits 0.",
		Flags: []cli.Flag{
			modelFlag, tokenizerFlag, chatTemplateFlag, threadsFlag, backendFlag, f32ActFlag,
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address `HOST` to listen on (0.0.0.0: every interface)"},
			&cli.IntFlag{Name: "port", Value: 8080, Usage: "TCP `PORT` to listen on (0: any free port, printed)"},
			&cli.IntFlag{Name: "parallel", Aliases: []string{"np"}, Value: 1, Usage: "`N` requests generating at once, each with its own KV cache"},
			&cli.IntFlag{Name: "queue", Usage: "`N` requests that may wait for a session before 429", DefaultText: "4 × --parallel"},
			&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Usage: "context length `N` of each session", DefaultText: "the model's"},
			&cli.IntFlag{Name: "ubatch-size", Aliases: []string{"ub"}, Value: 32, Usage: "prompt tokens `N` a sequence feeds per batched step (the most a newcomer delays the others' next token)"},
			&cli.DurationFlag{Name: "shutdown-grace", Value: 30 * time.Second, Usage: "on SIGTERM, how long running requests may go on before they are cancelled"},
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"LMRUN_API_KEY"}, Usage: "require \"Authorization: Bearer `KEY`\""},
		},
		Action: serveAction,
	}
}

func serveAction(c *cli.Context) error {
	if p := c.Int("port"); p < 0 || p > 65535 {
		return fmt.Errorf("--port %d: want 0 to 65535", p)
	}
	m, err := openModel(c, engineOptions(c))
	if err != nil {
		return err
	}
	defer m.Close()
	stderr := c.App.ErrWriter
	var tmpl *chat.Template
	if t, err := chatTemplate(c, m); err == nil {
		tmpl = t
	} else if c.IsSet("chat-template") {
		return err
	} else {
		fmt.Fprintf(stderr, "lmrun: %v; /v1/chat/completions is off\n", err)
	}
	ro, err := renderOptions(m, true)
	if err != nil {
		return err
	}
	srv, err := serve.New(m, serve.Options{
		Name: filepath.Base(c.String("model")), Template: tmpl, Render: ro, Specials: specialTokens(m),
		Parallel: c.Int("parallel"), Queue: c.Int("queue"), Context: c.Int("ctx"), Chunk: c.Int("ubatch-size"),
		APIKey: c.String("api-key"),
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", net.JoinHostPort(c.String("host"), strconv.Itoa(c.Int("port"))))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second, BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	fmt.Fprintf(stderr, "lmrun: serving %s on http://%s/v1 (backend %s, %d threads, %d parallel)\n",
		c.String("model"), ln.Addr(), m.Backend(), m.Threads(), c.Int("parallel"))
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "lmrun: shutting down")
	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-grace"))
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// The grace period is over: cancel what still runs.
		fmt.Fprintln(stderr, "lmrun: cancelling the requests still running")
		srv.Close()
		if err := hs.Close(); err != nil {
			return fmt.Errorf("shutting down: %w", err)
		}
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}
