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

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/serve"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve a model over HTTP with the OpenAI API (chat and text completions)",
		UsageText: "lmrun serve -m MODEL [--host 127.0.0.1] [--port 8080] [--parallel N] [-c N] [--api-key KEY] [--chat-template FILE|NAME] [-t N]",
		Description: "Answers POST /v1/chat/completions, POST /v1/completions (streamed as Server-Sent Events\n" +
			"with \"stream\": true), GET /v1/models and GET /health. Each request takes one of --parallel\n" +
			"sessions (its own KV cache; the weights are shared) or waits in a bounded queue; a full queue\n" +
			"is answered 429. SIGINT or SIGTERM stops accepting requests, lets the running ones finish\n" +
			"and exits 0.",
		Flags: []cli.Flag{
			modelFlag, tokenizerFlag, chatTemplateFlag, threadsFlag, backendFlag, f32ActFlag,
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address `HOST` to listen on (0.0.0.0: every interface)"},
			&cli.IntFlag{Name: "port", Value: 8080, Usage: "TCP `PORT` to listen on (0: any free port, printed)"},
			&cli.IntFlag{Name: "parallel", Aliases: []string{"np"}, Value: 1, Usage: "`N` requests generating at once, each with its own KV cache"},
			&cli.IntFlag{Name: "queue", Usage: "`N` requests that may wait for a session before 429", DefaultText: "4 × --parallel"},
			&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Usage: "context length `N` of each session", DefaultText: "the model's"},
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
	so, noChat, err := serverOptions(c, m)
	if err != nil {
		return err
	}
	if noChat != nil {
		fmt.Fprintf(stderr, "lmrun: %v; /v1/chat/completions is off\n", noChat)
	}
	srv, err := serve.New(m, so)
	if err != nil {
		return err
	}
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
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}

// serverOptions returns the serve.Options of the flags of lmrun serve (and of those of
// them lmrun bench serve has) for m. When the chat template cannot be found or parsed,
// Template is nil, so chat completions are off, and noChat says why, unless
// --chat-template named it: then it is an error.
func serverOptions(c *cli.Context, m *engine.Model) (so serve.Options, noChat, err error) {
	tmpl, noChat := chatTemplate(c, m)
	if noChat != nil && c.IsSet("chat-template") {
		return serve.Options{}, nil, noChat
	}
	ro, err := renderOptions(m, true)
	if err != nil {
		return serve.Options{}, nil, err
	}
	return serve.Options{
		Name: filepath.Base(c.String("model")), Template: tmpl, Render: ro, Specials: specialTokens(m),
		Parallel: c.Int("parallel"), Queue: c.Int("queue"), Context: c.Int("ctx"), APIKey: c.String("api-key"),
	}, noChat, nil
}
