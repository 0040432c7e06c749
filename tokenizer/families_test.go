package tokenizer

import (
	"fmt"
	"github.com/lmrun/lmrun/format"
	"golang.org/x/text/unicode/norm"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/format/tokfile"
)

// families are the tokenizers of current models in the test data, each with the name
// of its expectation files (tokenizer/<name>_expected.json and the .ids files) and
// how it is read.
var families = []struct {
	name string
	load func(tb testing.TB) Tokenizer
}{
	{"llama3", hfJSON("llama3")},
	{"qwen2", hfJSON("qwen2")},
	{"smollm2", hfJSON("smollm2")},
	{"mistral", hfJSON("mistral")},
}

// spFamilies are the SentencePiece tokenizers of current models. Their references
// are Hugging Face's; SentencePiece itself (and llama.cpp) differ on text that
// starts with a space, which gets a "▁" piece (spacePiece) first: Hugging Face's
// Metaspace(prepend_scheme "first") prepends "▁" only to text not starting with one.
var spFamilies = []struct {
	name       string
	load       func(tb testing.TB) Tokenizer
	spacePiece int // -1: the file's reference is the expected ids as they are
}{
	{"mistral", cachedSource("tokenizers/mistral/tokenizer.model.v3"), 29473},
	{"phi3", cachedSource("tokenizers/phi3/ggml-vocab-phi-3.gguf"), -1},
}

// cachedSource loads the tokenizer of testdata file rel with sourceMetadata.
func cachedSource(rel string) func(tb testing.TB) Tokenizer {
	return func(tb testing.TB) Tokenizer {
		tb.Helper()
		tokCacheMu.Lock()
		defer tokCacheMu.Unlock()
		if t, ok := tokCache[rel]; ok {
			return t
		}
		t, err := FromMetadata(sourceMetadata(tb, rel))
		if err != nil {
			tb.Fatal(err)
		}
		tokCache[rel] = t
		return t
	}
}

// TestSentencePieceFamiliesExpected checks Mistral v0.3 (tokenizer.model.v3) and
// Phi-3 (its vocabulary-only GGUF) id for id on the tricky strings and the two
// texts, and that decoding with BOS gives the text back.
func TestSentencePieceFamiliesExpected(t *testing.T) {
	dir := testdataDir(t)
	for _, f := range spFamilies {
		t.Run(f.name, func(t *testing.T) {
			tok := f.load(t)
			// The reference for text starting with one space followed by
			// something else is "▁" and the ids of the rest; for text starting
			// with more spaces, Hugging Face's ids say nothing about
			// SentencePiece's.
			want := func(text string, ids []int) []int {
				if f.spacePiece >= 0 && strings.HasPrefix(text, " ") {
					if strings.HasPrefix(text, "  ") {
						return nil
					}
					return append([]int{f.spacePiece}, ids...)
				}
				return ids
			}
			check := func(name, text string, ids []int) {
				got, err := tok.Encode(text, false, false)
				if err != nil {
					t.Fatal(err)
				}
				if w := want(text, ids); w != nil && !slices.Equal(got, w) {
					if len(got) > 40 {
						t.Run(name, func(t *testing.T) { checkIDs(t, got, w) })
					} else {
						t.Errorf("Encode(%q):\n got %v\nwant %v", text, got, w)
					}
				}
				got, _ = tok.Encode(text, true, false)
				if s, err := tok.Decode(got); err != nil || s != text {
					t.Errorf("%s: Decode(Encode(text)) differs from the text (%v)", name, err)
				}
			}
			for _, c := range readExpected(t, f.name+"_expected.json") {
				check(c.Text, c.Text, c.IDs)
			}
			for _, text := range []string{"wikitext2_test_a", "tinyshakespeare_a"} {
				raw, err := os.ReadFile(filepath.Join(dir, "text", text+".txt"))
				if err != nil {
					t.Fatal(err)
				}
				check(text, string(raw), readIDs(t, filepath.Join(dir, "tokenizer", text+"."+f.name+".ids")))
			}
		})
	}
}

// hfJSON loads tokenizers/<dir>/tokenizer.json of the test data.
func hfJSON(dir string) func(tb testing.TB) Tokenizer {
	return func(tb testing.TB) Tokenizer {
		tb.Helper()
		path := filepath.Join(testdataDir(tb), "tokenizers", dir, "tokenizer.json")
		tokCacheMu.Lock()
		defer tokCacheMu.Unlock()
		if t, ok := tokCache[path]; ok {
			return t
		}
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		m, err := tokfile.ParseHFTokenizer(b, nil)
		if err != nil {
			tb.Fatal(err)
		}
		t, err := FromMetadata(m)
		if err != nil {
			tb.Fatal(err)
		}
		tokCache[path] = t
		return t
	}
}

// decoded is what decoding the ids of text gives: text itself, but for
// SentencePiece BPE, whose decoder drops the first space whether or not encoding
// added it (Hugging Face's decoder for Mistral does the same).
func decoded(tok Tokenizer, text string) string {
	if tok.Kind() == KindSentencePieceBPE {
		return strings.TrimPrefix(text, " ")
	}
	return text
}

// TestFamiliesExpected checks every family id for id against its reference on the
// tricky strings and on two 100 kB texts, and that decoding gives the text back.
func TestFamiliesExpected(t *testing.T) {
	dir := testdataDir(t)
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			tok := f.load(t)
			for _, c := range readExpected(t, f.name+"_expected.json") {
				got, err := tok.Encode(c.Text, false, false)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, c.IDs) {
					t.Errorf("Encode(%q):\n got %v\nwant %v", c.Text, got, c.IDs)
				}
				if s, err := tok.Decode(got); err != nil || s != decoded(tok, c.Text) {
					t.Errorf("Decode(Encode(%q)) = %q, %v", c.Text, s, err)
				}
			}
			for _, text := range []string{"wikitext2_test_a", "tinyshakespeare_a"} {
				raw, err := os.ReadFile(filepath.Join(dir, "text", text+".txt"))
				if err != nil {
					t.Fatal(err)
				}
				want := readIDs(t, filepath.Join(dir, "tokenizer", text+"."+f.name+".ids"))
				got, err := tok.Encode(string(raw), false, false)
				if err != nil {
					t.Fatal(err)
				}
				t.Run(text, func(t *testing.T) { checkIDs(t, got, want) })
				if s, err := tok.Decode(got); err != nil || s != decoded(tok, string(raw)) {
					t.Errorf("%s: decoding does not give the text back (%v)", text, err)
				}
			}
		})
	}
}

// wikitext2MB returns about 2 MB of WikiText: the 100 kB test text 20 times.
func wikitext2MB(tb testing.TB) string {
	raw, err := os.ReadFile(filepath.Join(testdataDir(tb), "text", "wikitext2_test_a.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Repeat(string(raw), 20)
}

// BenchmarkEncodeFamilies encodes 2 MB of WikiText with each family's tokenizer,
// as one string and line by line (each line a call, so little is cached).
func BenchmarkEncodeFamilies(b *testing.B) {
	text := wikitext2MB(b)
	lines := strings.SplitAfter(text, "\n")
	for _, f := range families {
		tok := f.load(b)
		b.Run(f.name+"/string", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				if _, err := tok.Encode(text, false, false); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(f.name+"/lines", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				for _, l := range lines {
					if _, err := tok.Encode(l, false, false); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkEncodeFamiliesLongLine encodes one line of WikiText without its line
// breaks, 200 kB and 2 MB long: the time per byte must not grow with the length.
func BenchmarkEncodeFamiliesLongLine(b *testing.B) {
	line := strings.ReplaceAll(wikitext2MB(b), "\n", " ")
	for _, f := range families {
		tok := f.load(b)
		for _, n := range []int{len(line) / 10, len(line)} {
			s := line[:n]
			b.Run(fmt.Sprintf("%s/%dkB", f.name, n>>10), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					if _, err := tok.Encode(s, false, false); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// normNFC is the text an NFC-normalizing tokenizer encodes.
func normNFC(s string) string { return norm.NFC.String(s) }

// TestFamiliesStored checks that each family's tokenizer encodes the same after its
// metadata goes through an .lmc file, and, for the byte-level ones, from GGUF's keys
// (tokenizer.ggml.pre names the pre-tokenizer; llama.cpp's "llama-bpe" ignores
// merges).
func TestFamiliesStored(t *testing.T) {
	cases := readCases(t)
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			rel := filepath.Join(testdataDir(t), "tokenizers", f.name, "tokenizer.json")
			b, err := os.ReadFile(rel)
			if err != nil {
				t.Fatal(err)
			}
			md, err := tokfile.ParseHFTokenizer(b, nil)
			if err != nil {
				t.Fatal(err)
			}
			variants := map[string]format.Metadata{"lmc": lmcMetadata(t, md)}
			if md[KeyModel] == KindGPT2 {
				g := format.Metadata{ggmlModel: "gpt2", ggmlTokens: md[KeyTokens], ggmlMerges: md[KeyMerges], ggmlTypes: md[KeyTokenType], ggmlPre: md[KeyPre]}
				variants["gguf"] = g
			}
			want := f.load(t)
			for name, m := range variants {
				tok, err := FromMetadata(m)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for _, c := range cases {
					w, _ := EncodeSpecial(want, c+"<|im_start|>[INST]", false, false)
					got, err := EncodeSpecial(tok, c+"<|im_start|>[INST]", false, false)
					if err != nil || !slices.Equal(got, w) {
						t.Errorf("%s: EncodeSpecial(%q) = %v, %v; want %v", name, c, got, err, w)
					}
				}
			}
		})
	}
}
