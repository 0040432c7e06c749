package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testLimits are httpLimits short enough for a test to wait them out.
var testLimits = httpLimits{readHeader: 300 * time.Millisecond, read: 600 * time.Millisecond, idle: time.Second,
	writeGrace: time.Second, maxHeaderBytes: 8 << 10}

// limitedServer serves h with testLimits on a free port and returns its address.
func limitedServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := newHTTPServer(h, testLimits, 0)
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// readBody is a handler that reads the body and answers its length.
var readBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	io.WriteString(w, strings.Repeat("x", len(b)))
})

// dribble sends prefix at once, then rest a byte every gap, until the server closes the
// connection; it returns how long the connection lasted after prefix and whether all
// of rest was sent.
func dribble(t *testing.T, addr, prefix, rest string, gap time.Duration) (time.Duration, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan struct{})
	go func() { // the server's answer, if any, then the end of the connection
		io.Copy(io.Discard, conn)
		close(closed)
	}()
	start := time.Now()
	if _, err := io.WriteString(conn, prefix); err != nil {
		t.Fatal(err)
	}
	for i := range len(rest) {
		select {
		case <-closed:
			return time.Since(start), false
		case <-time.After(gap):
		}
		if _, err := conn.Write([]byte{rest[i]}); err != nil {
			<-closed
			return time.Since(start), false
		}
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection is still open 10 s after the request")
	}
	return time.Since(start), true
}

// TestSlowloris sends a request's header, then its body, a byte at a time: the server
// closes the connection at the header's or the request's deadline.
func TestSlowloris(t *testing.T) {
	addr := limitedServer(t, readBody)
	header := "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
	took, sent := dribble(t, addr, "", header, 100*time.Millisecond)
	if sent || took > testLimits.readHeader+time.Second {
		t.Errorf("a header a byte at a time: the connection lasted %v (all sent %v), the header's limit is %v", took, sent, testLimits.readHeader)
	}
	took, sent = dribble(t, addr, header, strings.Repeat(" ", 40), 100*time.Millisecond)
	if sent || took > testLimits.read+time.Second {
		t.Errorf("a body a byte at a time: the connection lasted %v (all sent %v), the request's limit is %v", took, sent, testLimits.read)
	}
	// In time, the same request is answered.
	took, sent = dribble(t, addr, header, strings.Repeat(" ", 40), time.Millisecond)
	if !sent {
		t.Errorf("a request in time: the connection was closed after %v", took)
	}
}

// TestHugeHeader sends a header beyond the limit: 431.
func TestHugeHeader(t *testing.T) {
	addr := limitedServer(t, readBody)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/completions", strings.NewReader("{}"))
	req.Header.Set("X-Filler", strings.Repeat("f", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

// TestLongResponseOutlivesReadTimeout checks that a response taking longer than the
// read timeout, once the request is read, is not cancelled by it: net/http's background
// read of the connection, which cancels the request's context when it fails, must not
// keep the read deadline.
func TestLongResponseOutlivesReadTimeout(t *testing.T) {
	addr := limitedServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for i := range 10 { // 2 × the read timeout, streaming
			select {
			case <-r.Context().Done():
				return
			case <-time.After(testLimits.read / 5):
			}
			io.WriteString(w, "data: "+strings.Repeat("x", i)+"\n\n")
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	resp, err := http.Post("http://"+addr+"/v1/completions", "application/json", strings.NewReader(`{"prompt": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	last := ""
	for sc.Scan() {
		if sc.Text() != "" {
			last = sc.Text()
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if last != "data: [DONE]" {
		t.Errorf("the stream ended with %q, want data: [DONE]: cut off at the read timeout", last)
	}
}

// TestServeTimeoutFlag checks --timeout's validation.
func TestServeTimeoutFlag(t *testing.T) {
	_, _, err := lmrun(t, "serve", "-m", "no-such-model.lmc", "--timeout", "-1")
	if err == nil || !strings.Contains(err.Error(), "--timeout -1") {
		t.Errorf("--timeout -1: %v, want an error naming it", err)
	}
}

// TestNewHTTPServer checks the limits newHTTPServer sets: the write timeout follows the
// request timeout, with a grace, or is off with it.
func TestNewHTTPServer(t *testing.T) {
	hs := newHTTPServer(http.NotFoundHandler(), defaultLimits, 600*time.Second)
	if hs.ReadHeaderTimeout != 10*time.Second || hs.ReadTimeout != time.Minute || hs.IdleTimeout == 0 ||
		hs.MaxHeaderBytes != 64<<10 || hs.WriteTimeout != 610*time.Second {
		t.Errorf("limits: header %v, read %v, idle %v, write %v, header bytes %d", hs.ReadHeaderTimeout, hs.ReadTimeout,
			hs.IdleTimeout, hs.WriteTimeout, hs.MaxHeaderBytes)
	}
	if hs := newHTTPServer(http.NotFoundHandler(), defaultLimits, 0); hs.WriteTimeout != 0 {
		t.Errorf("no request timeout: write timeout %v, want none", hs.WriteTimeout)
	}
}
