package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// completeWithin is complete under Options.RequestTimeout: the request's context ends
// at the deadline, which stops a wait for a session, the prompt's processing and the
// generation. A request cut short before its response began is answered 504 with an
// OpenAI error of type "timeout"; a stream already begun ends with an error event
// (and no [DONE]). complete writes nothing when its context ends, as when the client
// leaves.
func (s *Server) completeWithin(w http.ResponseWriter, r *http.Request, isChat bool) {
	if s.o.RequestTimeout <= 0 {
		s.complete(w, r, isChat)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.RequestTimeout)
	defer cancel()
	dw := &deadlineWriter{ResponseWriter: w}
	within := r.WithContext(ctx)
	// complete limits the body with http.MaxBytesReader on dw, which cannot tell w to
	// close the connection at the limit (an unexported method): net/http would read on
	// to reuse it. The limit is first set on w, which can.
	within.Body = http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes)
	s.complete(dw, within, isChat)
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || r.Context().Err() != nil {
		return // in time, or the client left
	}
	msg := fmt.Sprintf("the request took longer than the server's limit of %v", s.o.RequestTimeout)
	switch {
	case !dw.wrote:
		writeError(w, http.StatusGatewayTimeout, "timeout", "", "%s", msg)
	case dw.stream && !dw.done:
		code := "timeout"
		b, err := json.Marshal(map[string]apiError{"error": {Message: msg, Type: "timeout", Code: &code}})
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return // the client is gone
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	// A whole response or a stream that ended in time, at the deadline: it stands.
}

// deadlineWriter is the ResponseWriter of a request with a deadline: it records what
// was written, so that completeWithin knows how to end the response at the deadline.
type deadlineWriter struct {
	http.ResponseWriter
	wrote  bool // the header was written
	stream bool // as Server-Sent Events
	done   bool // the stream's last event, [DONE], was written
}

// WriteHeader records the start of the response.
func (w *deadlineWriter) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		w.stream = w.Header().Get("Content-Type") == "text/event-stream"
	}
	w.ResponseWriter.WriteHeader(status)
}

// Write records the end of a stream.
func (w *deadlineWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.stream && bytes.Contains(p, []byte("data: [DONE]")) {
		w.done = true
	}
	return w.ResponseWriter.Write(p)
}

// Flush sends what was written to the client, if the underlying writer can.
func (w *deadlineWriter) Flush() {
	if !w.wrote {
		w.wrote = true
		w.stream = w.Header().Get("Content-Type") == "text/event-stream"
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
