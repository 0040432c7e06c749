package tokenizer

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// replaceInvalid replaces every byte of s that is not part of a valid UTF-8 sequence
// by U+FFFD, one per byte, as a Go range loop reads it.
func replaceInvalid(s string) string {
	var sb strings.Builder
	for _, r := range s {
		sb.WriteRune(r)
	}
	return sb.String()
}

// streamAll feeds ids to a new Stream, checking every chunk is valid UTF-8.
func streamAll(t testing.TB, tok Tokenizer, ids []int) string {
	t.Helper()
	s := NewStream(tok)
	var sb strings.Builder
	for _, id := range ids {
		chunk, err := s.Add(id)
		if err != nil {
			t.Fatalf("Add(%d): %v", id, err)
		}
		if !utf8.ValidString(chunk) {
			t.Fatalf("Add(%d) = %q: invalid UTF-8", id, chunk)
		}
		sb.WriteString(chunk)
	}
	rest := s.Flush()
	if !utf8.ValidString(rest) {
		t.Fatalf("Flush() = %q: invalid UTF-8", rest)
	}
	sb.WriteString(rest)
	return sb.String()
}

// byteFallbackVocab is a small llama2.c vocabulary laid out as tok512.bin is: <unk>,
// BOS, EOS, the 256 byte-fallback pieces <0x00>..<0xFF> at ids 3..258, then a few words.
// Stream decoding needs nothing more than that from a tokenizer.
func byteFallbackVocab(t *testing.T) Tokenizer {
	t.Helper()
	pieces := []string{"<unk>", "\n<s>\n", "\n</s>\n"}
	for b := range 256 {
		pieces = append(pieces, byteTokenName(byte(b)))
	}
	pieces = append(pieces, " ", "a", "b", " a")
	tok, err := FromMetadata(smallVocab(pieces, 1, 2, 0))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestStreamSplitCharacter(t *testing.T) {
	tok := byteFallbackVocab(t)
	// "中" (E4 B8 AD) is not in the vocabulary: three byte-fallback ids.
	ids, err := tok.Encode("a中b", true, false)
	if err != nil {
		t.Fatal(err)
	}
	l := tok.(*llama2c)
	want := []int{1, int(l.ids[" a"]), 3 + 0xe4, 3 + 0xb8, 3 + 0xad, int(l.ids["b"])}
	if !slices.Equal(ids, want) {
		t.Fatalf("Encode = %v, want %v", ids, want)
	}
	s := NewStream(tok)
	var chunks []string
	for _, id := range ids {
		c, err := s.Add(id)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	if got := strings.Join(chunks, "|"); got != "|a|||中|b" {
		t.Errorf("chunks = %q, want %q", got, "|a|||中|b")
	}
	if rest := s.Flush(); rest != "" {
		t.Errorf("Flush = %q", rest)
	}
	// An out-of-range id is an error and changes nothing.
	if _, err := s.Add(tok.VocabSize()); err == nil {
		t.Errorf("Add(%d): no error", tok.VocabSize())
	}
}

func TestStreamInvalid(t *testing.T) {
	tok := byteFallbackVocab(t)
	b := func(x byte) int { return 3 + int(x) }
	for _, c := range []struct {
		ids    []int
		chunks string // Add results joined by "|", then "|" and Flush
	}{
		{[]int{b(0xe4), b(0xb8)}, "||\ufffd\ufffd"}, // truncated at the end
		{[]int{b(0xe4), b('A')}, "|\ufffdA|"},       // lead byte then ASCII
		{[]int{b(0xff), b('A')}, "\ufffd|A|"},       // never valid
		{[]int{b(0xe4), b(0xb8), b(0xe4), b(0xb8), b(0xad)}, "||\ufffd\ufffd||中|"},
		{[]int{b(0xf0), b(0x9f), b(0xa6), b(0x99)}, "|||🦙|"},        // 4-byte character
		{[]int{b(0xef), b(0xbf), b(0xbd)}, "||\ufffd|"},             // a real U+FFFD
		{[]int{b(0xed), b(0xa0), b(0x80)}, "|\ufffd\ufffd|\ufffd|"}, // surrogate: invalid (ED A0 is complete, then 80)
	} {
		s := NewStream(tok)
		var parts []string
		for _, id := range c.ids {
			p, err := s.Add(id)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, p)
		}
		parts = append(parts, s.Flush())
		if got := strings.Join(parts, "|"); got != c.chunks {
			t.Errorf("ids %v: chunks %q, want %q", c.ids, got, c.chunks)
		}
	}
}

func TestStreamMatchesDecode(t *testing.T) {
	for _, bin := range []string{"llama2c/tok512.bin", "llama2c/tokenizer.bin"} {
		tok := loadLlama2c(t, bin)
		for _, text := range append(readCases(t), "\xff\xfe", "a\xe4\xb8") {
			ids, err := tok.Encode(text, true, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := streamAll(t, tok, ids); got != replaceInvalid(text) {
				t.Errorf("%s: stream of %q = %q", bin, text, got)
			}
		}
	}
}
