package tokenizer

import (
	"unicode/utf8"
)

// Stream decodes ids one at a time, for printing generated text as it comes. It
// returns only complete UTF-8: bytes of a multi-byte character split across several
// ids (byte-fallback pieces) are held back until the character is complete. Bytes
// that can never become valid UTF-8 are emitted as U+FFFD, one per byte.
//
// A Stream is not safe for concurrent use; the Tokenizer it reads may be shared.
type Stream struct {
	t       Tokenizer
	prev    int
	pending []byte
}

// NewStream returns a Stream that decodes with t, starting a new sequence.
func NewStream(t Tokenizer) *Stream {
	return &Stream{t: t, prev: -1}
}

// Add appends the piece of id (following the previously added id) and returns the
// text that is now complete, possibly "". It returns an error, and changes nothing,
// when id is out of range.
func (s *Stream) Add(id int) (string, error) {
	p, err := s.t.Piece(s.prev, id)
	if err != nil {
		return "", err
	}
	s.prev = id
	s.pending = append(s.pending, p...)
	var out []byte
	i := 0
	for i < len(s.pending) {
		rest := s.pending[i:]
		if !utf8.FullRune(rest) {
			break // an incomplete sequence at the end: wait for more bytes
		}
		r, n := utf8.DecodeRune(rest)
		if r == utf8.RuneError && n == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, rest[:n]...)
		}
		i += n
	}
	s.pending = append(s.pending[:0], s.pending[i:]...)
	return string(out), nil
}

// Flush returns the held-back bytes, each invalid byte as U+FFFD, and empties the
// buffer. The stream continues the same sequence: the next Add still follows the
// last added id.
func (s *Stream) Flush() string {
	var out []byte
	for i := 0; i < len(s.pending); {
		r, n := utf8.DecodeRune(s.pending[i:])
		if r == utf8.RuneError && n == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, s.pending[i:i+n]...)
		}
		i += n
	}
	s.pending = s.pending[:0]
	return string(out)
}
