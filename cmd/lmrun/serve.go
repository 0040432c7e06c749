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
		UsageText: "lmrun serve -m MODEL [--host 127.0.0.1] [--port 8080] [--parallel N] [-c N] [-ub N] [--api-key KEY] [--timeout SECONDS] [--chat-template FILE|NAME] [-t N]",
		Description: "Answers POST /v1/chat/completions, POST /v1/completions (streamed as Server-Sent Events\n" +
			"with \"stream\": true), GET /v1/models, GET /health and GET /metrics (Prometheus). Up to\n" +
			"--parallel sequences (each with its own KV cache; the weights are shared) are decoded together,\n" +
			"one batched forward pass per token; a newcomer's prompt joins in chunks of --ubatch-size\n" +
			"tokens; more requests wait in a bounded queue, and a full queue is answered 429. A prompt that\n" +
			"begins as an idle sequence's cache does reuses it. A completion request is limited to\n" +
			"--timeout seconds from its arrival to its last byte: one cut short before its response began\n" +
			"is answered 504, a stream ends with an error event. Clients that send slowly are cut off: a\n" +
			"request's header must arrive within 10 s, the whole request within 60 s. SIGINT or SIGTERM\n" +
			"stops accepting requests (503), lets the running ones finish (cancelling them after\n" +
			"--shutdown-grace) and exits 0.",
		Flags: []cli.Flag{
			modelFlag, tokenizerFlag, chatTemplateFlag, threadsFlag, backendFlag, f32ActFlag, repackFlag, kvFlag,
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address `HOST` to listen on (0.0.0.0: every interface)"},
			&cli.IntFlag{Name: "port", Value: 8080, Usage: "TCP `PORT` to listen on (0: any free port, printed)"},
			&cli.IntFlag{Name: "parallel", Aliases: []string{"np"}, Value: 1, Usage: "`N` requests generating at once, each with its own KV cache"},
			&cli.IntFlag{Name: "queue", Usage: "`N` requests that may wait for a session before 429", DefaultText: "4 × --parallel"},
			&cli.IntFlag{Name: "ctx", Aliases: []string{"c"}, Usage: "context length `N` of each session", DefaultText: "the model's"},
			&cli.IntFlag{Name: "ubatch-size", Aliases: []string{"ub"}, Value: 32, Usage: "the most prompt tokens `N` a batched step feeds (beside generating sequences, no more than there are of them, at least N/2)"},
			&cli.DurationFlag{Name: "shutdown-grace", Value: 30 * time.Second, Usage: "on SIGTERM, how long running requests may go on before they are cancelled"},
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"LMRUN_API_KEY"}, Usage: "require \"Authorization: Bearer `KEY`\""},
			&cli.IntFlag{Name: "timeout", Aliases: []string{"to"}, Value: 600, Usage: "limit a completion request to `SECONDS` from arrival to last byte (0: no limit)"},
		},
		Action: serveAction,
	}
}

func serveAction(c *cli.Context) error {
	if p := c.Int("port"); p < 0 || p > 65535 {
		return fmt.Errorf("--port %d: want 0 to 65535", p)
	}
	if t := c.Int("timeout"); t < 0 {
		return fmt.Errorf("--timeout %d: want ≥ 0 seconds (0: no limit)", t)
	}
	timeout := time.Duration(c.Int("timeout")) * time.Second
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
	so.RequestTimeout = timeout
	srv, err := serve.New(m, so)
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
	hs := newHTTPServer(srv, defaultLimits, timeout)
	hs.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	fmt.Fprintf(stderr, "lmrun: serving %s on http://%s/v1 (backend %s, %d threads, %d parallel%s)\n",
		c.String("model"), ln.Addr(), m.Backend(), m.Threads(), c.Int("parallel"), repackNote(m))
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

// httpLimits bound what a client can hold of the server: a slow client (slowloris,
// sending a byte now and then, or not reading the response) is cut off, a huge header
// refused. The body's size is limited by serve.Options.MaxBodyBytes.
type httpLimits struct {
	// readHeader is the time to read a request's header; read the time to read the
	// whole request, header and body.
	readHeader, read time.Duration
	// idle is the time a kept-alive connection may wait for its next request.
	idle time.Duration
	// writeGrace is added to the request timeout for the time to write a response:
	// past it, writes to a client that stopped reading fail. The request's deadline
	// ends generation, but not a write blocked on such a client.
	writeGrace time.Duration
	// maxHeaderBytes limits a request's header (net/http allows 4 KiB more).
	maxHeaderBytes int
}

// defaultLimits are lmrun serve's: a header arrives within 10 s, a request (at most
// 1 MiB) within 60 s.
var defaultLimits = httpLimits{readHeader: 10 * time.Second, read: 60 * time.Second, idle: 120 * time.Second,
	writeGrace: 10 * time.Second, maxHeaderBytes: 64 << 10}

// newHTTPServer returns the HTTP server of h with the limits lim; requestTimeout is h's
// limit of a request (0: none), which the write timeout extends by lim.writeGrace.
// ReadTimeout does not cut a long response short: net/http lifts the read deadline
// once the body is read.
func newHTTPServer(h http.Handler, lim httpLimits, requestTimeout time.Duration) *http.Server {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: lim.readHeader, ReadTimeout: lim.read,
		IdleTimeout: lim.idle, MaxHeaderBytes: lim.maxHeaderBytes}
	if requestTimeout > 0 {
		hs.WriteTimeout = requestTimeout + lim.writeGrace
	}
	return hs
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
	half, err := halfKV(c)
	if err != nil {
		return serve.Options{}, nil, err
	}
	return serve.Options{
		HalfKV: half,
		Name:   filepath.Base(c.String("model")), Template: tmpl, Render: ro, Specials: specialTokens(m),
		Parallel: c.Int("parallel"), Queue: c.Int("queue"), Context: c.Int("ctx"), Chunk: c.Int("ubatch-size"),
		APIKey: c.String("api-key"),
	}, noChat, nil
}
