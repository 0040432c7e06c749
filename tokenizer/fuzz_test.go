package tokenizer

import (
	"os"
	"path/filepath"
	"testing"
)

func addSeeds(f *testing.F) {
	for _, s := range readCases(f) {
		f.Add(s)
	}
	for _, s := range []string{"", " ", "\xff", "a\xe4\xb8", "\x80\x80\x80\x80\x80\x80", "<0x41>", "\n<s>\n", "<unk>", "\x00a"} {
		f.Add(s)
	}
	if text, err := os.ReadFile(filepath.Join(testdataDir(f), "text", "tinyshakespeare_a.txt")); err == nil {
		f.Add(string(text[:500]))
	}
}

// FuzzRoundTrip checks, for both tokenizer kinds, that Decode(Encode(s)) == s (with
// BOS, which strips llama2c's dummy prefix), that no input panics, and that a Stream
// over the ids yields exactly the decoded text with invalid bytes as U+FFFD.
func FuzzRoundTrip(f *testing.F) {
	addSeeds(f)
	toks := []Tokenizer{loadLlama2c(f, "llama2c/tok512.bin"), loadLlama2c(f, "llama2c/tokenizer.bin")}
	bt, err := FromMetadata(BytesMetadata(300, 1))
	if err != nil {
		f.Fatal(err)
	}
	toks = append(toks, bt)
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range toks {
			ids, err := tok.Encode(s, true, true)
			if err != nil {
				t.Fatalf("%s: Encode(%q): %v", tok.Kind(), s, err)
			}
			if ids[0] != tok.BOS() || ids[len(ids)-1] != tok.EOS() {
				t.Fatalf("%s: Encode(%q) = %v: BOS/EOS missing", tok.Kind(), s, ids)
			}
			got, err := tok.Decode(ids)
			if err != nil || got != s {
				t.Fatalf("%s: Decode(Encode(%q)) = %q, %v (ids %v)", tok.Kind(), s, got, err, ids)
			}
			if st := streamAll(t, tok, ids); st != replaceInvalid(s) {
				t.Fatalf("%s: stream of %q = %q", tok.Kind(), s, st)
			}
		}
	})
}

// FuzzLlama2cReference checks the heap-based merge against a literal port of
// llama2.c run.c encode().
func FuzzLlama2cReference(f *testing.F) {
	addSeeds(f)
	toks := []*llama2c{loadLlama2c(f, "llama2c/tok512.bin").(*llama2c), loadLlama2c(f, "llama2c/tokenizer.bin").(*llama2c)}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 2000 {
			s = s[:2000] // the reference is quadratic
		}
		for _, tok := range toks {
			checkReference(t, tok, s)
		}
	})
}
