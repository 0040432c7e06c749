package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/tokfile"
)

// loadFile returns the tokenizer of a testdata file: a GGUF vocabulary through the
// test reader, anything else through tokfile.
func loadFile(tb testing.TB, rel string) Tokenizer {
	tb.Helper()
	tokCacheMu.Lock()
	defer tokCacheMu.Unlock()
	if t, ok := tokCache[rel]; ok {
		return t
	}
	path := filepath.Join(testdataDir(tb), rel)
	var md format.Metadata
	var err error
	if strings.HasSuffix(rel, ".gguf") {
		md, err = readGGUFMetadata(path)
	} else {
		md, err = tokfile.Read(path, tokfile.Options{})
	}
	if err != nil {
		tb.Fatal(err)
	}
	t, err := FromMetadata(md)
	if err != nil {
		tb.Fatalf("%s: %v", rel, err)
	}
	tokCache[rel] = t
	return t
}

// TestLlama2Sources checks the Llama 2 vocabulary from tokenizer.model and from the
// GGUF vocabulary against SentencePiece's ids (and tokenizer.bin's).
func TestLlama2Sources(t *testing.T) {
	dir := testdataDir(t)
	text, err := os.ReadFile(filepath.Join(dir, "text", "tinyshakespeare_a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := readIDs(t, filepath.Join(dir, "tokenizer", "tinyshakespeare_a.llama2.ids"))
	cases := readExpected(t, "llama2_expected.json")
	for _, src := range []string{"llama2c/tokenizer.model", "gguf/ggml-vocab-llama-spm.gguf"} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			tok := loadFile(t, src)
			if tok.Kind() != KindSentencePieceBPE || tok.VocabSize() != 32000 || tok.BOS() != 1 || tok.EOS() != 2 ||
				tok.Unk() != 0 || tok.Pad() != -1 || !tok.AddBOS() {
				t.Fatalf("kind %s vocab %d bos %d eos %d unk %d pad %d addBOS %v",
					tok.Kind(), tok.VocabSize(), tok.BOS(), tok.EOS(), tok.Unk(), tok.Pad(), tok.AddBOS())
			}
			for _, c := range cases {
				got, err := tok.Encode(c.Text, false, false)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, c.IDs) {
					t.Errorf("Encode(%q):\n got %v\nwant %v", c.Text, got, c.IDs)
				}
				// SentencePiece drops the dummy prefix at the start, BOS or not.
				for _, ids := range [][]int{c.IDs, append([]int{1}, c.IDs...)} {
					if s, err := tok.Decode(ids); err != nil || s != c.Text {
						t.Errorf("Decode(%v) = %q, %v; want %q", ids, s, err, c.Text)
					}
				}
			}
			got, err := tok.Encode(string(text), false, false)
			if err != nil {
				t.Fatal(err)
			}
			checkIDs(t, got, want)
			if p, _ := tok.Token(1); p != "<s>" {
				t.Errorf("Token(1) = %q", p)
			}
			// "▁" in the text is a space, as SentencePiece escapes spaces to it.
			a, _ := tok.Encode("a b", false, false)
			b, _ := tok.Encode("a\u2581b", false, false)
			if !slices.Equal(a, b) {
				t.Errorf("Encode(a▁b) = %v, Encode(a b) = %v", b, a)
			}
			// Invalid UTF-8 becomes U+FFFD first, as in SentencePiece.
			x, _ := tok.Encode("a\xffb", false, false)
			y, _ := tok.Encode("a\uFFFDb", false, false)
			if !slices.Equal(x, y) {
				t.Errorf("Encode(a\\xffb) = %v, Encode(a\\uFFFDb) = %v", x, y)
			}
		})
	}
}

type unigramCase struct {
	Text   string   `json:"text"`
	IDs    []int    `json:"ids"`
	Pieces []string `json:"pieces"`
}

func TestUnigramExpected(t *testing.T) {
	dir := testdataDir(t)
	text, err := os.ReadFile(filepath.Join(dir, "text", "tinyshakespeare_a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"unigram_shakespeare_1k", "unigram_bytefallback_1k"} {
		t.Run(name, func(t *testing.T) {
			tok := loadFile(t, "tokenizer/"+name+".model")
			if tok.Kind() != KindUnigram || tok.VocabSize() != 1000 || tok.Unk() != 0 || tok.BOS() != 1 || tok.EOS() != 2 {
				t.Fatalf("kind %s vocab %d unk %d bos %d eos %d", tok.Kind(), tok.VocabSize(), tok.Unk(), tok.BOS(), tok.EOS())
			}
			raw, err := os.ReadFile(filepath.Join(dir, "tokenizer", name+"_expected.json"))
			if err != nil {
				t.Fatal(err)
			}
			var cases []unigramCase
			if err := json.Unmarshal(raw, &cases); err != nil {
				t.Fatal(err)
			}
			if len(cases) != 26 {
				t.Fatalf("%d cases", len(cases))
			}
			for _, c := range cases {
				got, err := tok.Encode(c.Text, false, false)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, c.IDs) {
					t.Errorf("Encode(%q):\n got %v\nwant %v", c.Text, got, c.IDs)
				}
			}
			got, err := tok.Encode(string(text), false, false)
			if err != nil {
				t.Fatal(err)
			}
			checkIDs(t, got, readIDs(t, filepath.Join(dir, "tokenizer", name+".tinyshakespeare_a.ids")))
		})
	}
}
