package tokenizer

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/tokfile"
)

// allSources lists a test data file of every tokenizer source.
var allSources = []string{
	"llama2c/tok512.bin", "llama2c/tokenizer.bin", "llama2c/tokenizer.model",
	"tokenizer/unigram_shakespeare_1k.model", "tokenizer/unigram_bytefallback_1k.model",
	"gpt2/encoder.json", "hf/fake_gpt2/tokenizer.json",
	"gguf/ggml-vocab-gpt-2.gguf", "gguf/ggml-vocab-llama-spm.gguf",
}

func sourceMetadata(tb testing.TB, rel string) format.Metadata {
	tb.Helper()
	path := filepath.Join(testdataDir(tb), rel)
	var md format.Metadata
	var err error
	switch {
	case strings.HasSuffix(rel, ".gguf"):
		md, err = readGGUFMetadata(path)
	case strings.HasPrefix(rel, "llama2c/") && strings.HasSuffix(rel, ".bin"):
		md, err = readLlama2cTokenizer(path)
	default:
		md, err = tokfile.Read(path, tokfile.Options{})
	}
	if err != nil {
		tb.Fatal(err)
	}
	return md
}

// TestLMCRoundTrip stores every tokenizer in an .lmc file and checks that the
// tokenizer read back encodes the test strings exactly as the original does.
func TestLMCRoundTrip(t *testing.T) {
	cases := readCases(t)
	for _, src := range allSources {
		t.Run(src, func(t *testing.T) {
			md := sourceMetadata(t, src)
			a, err := FromMetadata(md)
			if err != nil {
				t.Fatal(err)
			}
			b, err := FromMetadata(lmcMetadata(t, md))
			if err != nil {
				t.Fatal(err)
			}
			if a.Kind() != b.Kind() || a.VocabSize() != b.VocabSize() || a.BOS() != b.BOS() || a.EOS() != b.EOS() ||
				a.Unk() != b.Unk() || a.Pad() != b.Pad() || a.AddBOS() != b.AddBOS() {
				t.Fatalf("specials differ after the round trip")
			}
			for _, c := range cases {
				x, err1 := a.Encode(c, a.BOS() >= 0, false)
				y, err2 := b.Encode(c, b.BOS() >= 0, false)
				if err1 != nil || err2 != nil || !slices.Equal(x, y) {
					t.Fatalf("Encode(%q): %v, %v / %v, %v", c, x, err1, y, err2)
				}
			}
		})
	}
}

// TestKinds pins each source's kind and policy.
func TestKinds(t *testing.T) {
	for _, c := range []struct {
		src, kind          string
		vocab, bos, eos    int
		unk, pad           int
		addBOS             bool
		text, decodedAgain string
	}{
		{"llama2c/tok512.bin", KindLlama2c, 512, 1, 2, 0, -1, true, "Hi there", "Hi there"},
		{"llama2c/tokenizer.model", KindSentencePieceBPE, 32000, 1, 2, 0, -1, true, "  two  spaces ", "  two  spaces "},
		{"tokenizer/unigram_shakespeare_1k.model", KindUnigram, 1000, 1, 2, 0, -1, true, "  Hello\tworld ", "Hello world"},
		{"tokenizer/unigram_bytefallback_1k.model", KindUnigram, 1000, 1, 2, 0, -1, true, "½ café", "1⁄2 café"},
		{"gpt2/encoder.json", KindGPT2, 50257, 50256, 50256, -1, -1, false, " x\xff\n", " x\xff\n"},
		{"gguf/ggml-vocab-llama-spm.gguf", KindSentencePieceBPE, 32000, 1, 2, 0, -1, true, "▁a b", " a b"},
	} {
		tok, err := FromMetadata(sourceMetadata(t, c.src))
		if err != nil {
			t.Fatal(err)
		}
		if tok.Kind() != c.kind || tok.VocabSize() != c.vocab || tok.BOS() != c.bos || tok.EOS() != c.eos ||
			tok.Unk() != c.unk || tok.Pad() != c.pad || tok.AddBOS() != c.addBOS {
			t.Errorf("%s: kind %s vocab %d bos %d eos %d unk %d pad %d addBOS %v", c.src, tok.Kind(), tok.VocabSize(),
				tok.BOS(), tok.EOS(), tok.Unk(), tok.Pad(), tok.AddBOS())
		}
		ids, err := tok.Encode(c.text, tok.BOS() >= 0, tok.EOS() >= 0)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := tok.Decode(ids); err != nil || s != c.decodedAgain {
			t.Errorf("%s: Decode(Encode(%q)) = %q, %v; want %q", c.src, c.text, s, err, c.decodedAgain)
		}
		if st := streamAll(t, tok, ids); st != replaceInvalid(c.decodedAgain) {
			t.Errorf("%s: stream %q", c.src, st)
		}
		for _, bad := range []int{-1, c.vocab} {
			if _, err := tok.Decode([]int{bad}); err == nil {
				t.Errorf("%s: Decode(%d): no error", c.src, bad)
			}
			if _, err := tok.Piece(-1, bad); err == nil {
				t.Errorf("%s: Piece(%d): no error", c.src, bad)
			}
			if _, err := tok.Token(bad); err == nil {
				t.Errorf("%s: Token(%d): no error", c.src, bad)
			}
		}
	}
}

// TestUnkMerging checks SentencePiece's unk rules: without byte fallback a run of
// unknown characters is one unk, with it every byte is a piece.
func TestUnkMerging(t *testing.T) {
	plain := loadFile(t, "tokenizer/unigram_shakespeare_1k.model")
	ids, _ := plain.Encode("中文 x 中", false, false)
	want := []int{9, 0, 9, 991, 9, 0} // ▁ unk ▁ x ▁ unk
	if !slices.Equal(ids, want) {
		t.Errorf("Encode = %v, want %v", ids, want)
	}
	if s, _ := plain.Decode(ids); s != " ⁇  x  ⁇ " {
		t.Errorf("Decode = %q", s)
	}
	// The same for SentencePiece BPE without byte fallback: the Llama 2 model with
	// byte_fallback off.
	md := sourceMetadata(t, "llama2c/tokenizer.model")
	md[KeyByteFallback] = false
	bpe, err := FromMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := bpe.Encode("a\U0001F999\U0001F999b", false, false)
	b, _ := bpe.Encode("a\U0001F999b", false, false)
	if !slices.Equal(a, b) || !slices.Contains(a, 0) {
		t.Errorf("two unknown emoji %v, one %v: want the same, with one unk", a, b)
	}
}

// TestGGUFTranslation covers GGUF's "t5" (Unigram) model, built from the Unigram
// fixture's pieces in GGUF's key layout, and the errors.
func TestGGUFTranslation(t *testing.T) {
	md := sourceMetadata(t, "tokenizer/unigram_shakespeare_1k.model")
	cm, _ := md[KeyCharsmap].(string)
	cmBytes := make([]int64, len(cm))
	for i := 0; i < len(cm); i++ {
		cmBytes[i] = int64(cm[i])
	}
	g := format.Metadata{
		"tokenizer.ggml.model":                "t5",
		"tokenizer.ggml.tokens":               md[KeyTokens],
		"tokenizer.ggml.scores":               md[KeyScores],
		"tokenizer.ggml.token_type":           md[KeyTokenType],
		"tokenizer.ggml.unknown_token_id":     int64(0),
		"tokenizer.ggml.eos_token_id":         int64(2),
		"tokenizer.ggml.precompiled_charsmap": cmBytes,
	}
	tok, err := FromMetadata(g)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(testdataDir(t), "tokenizer", "unigram_shakespeare_1k_expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []unigramCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if got, _ := tok.Encode(c.Text, false, false); !slices.Equal(got, c.IDs) {
			t.Errorf("t5 Encode(%q) = %v, want %v", c.Text, got, c.IDs)
		}
	}
	if tok.AddBOS() || tok.BOS() != -1 {
		t.Errorf("t5: bos %d addBOS %v", tok.BOS(), tok.AddBOS())
	}
	gpt2 := sourceMetadata(t, "gguf/ggml-vocab-gpt-2.gguf")
	for name, edit := range map[string]func(format.Metadata){
		"model":     func(m format.Metadata) { m["tokenizer.ggml.model"] = "bert" },
		"pre":       func(m format.Metadata) { m["tokenizer.ggml.pre"] = "deepseek-llm" },
		"no merges": func(m format.Metadata) { delete(m, "tokenizer.ggml.merges") },
		"bad merge": func(m format.Metadata) { m["tokenizer.ggml.merges"] = []string{"Ġ zzqqxx"} },
		"types":     func(m format.Metadata) { m["tokenizer.ggml.token_type"] = []int64{1, 2} },
	} {
		m := format.Metadata{}
		for k, v := range gpt2 {
			m[k] = v
		}
		edit(m)
		_, err := FromMetadata(m)
		if err == nil || errors.Is(err, ErrNoTokenizer) {
			t.Errorf("%s: err = %v", name, err)
		}
		if unsupported := name == "model" || name == "pre"; errors.Is(err, ErrUnsupported) != unsupported {
			t.Errorf("%s: err = %v; ErrUnsupported: %v", name, err, unsupported)
		}
	}
	if _, err := FromMetadata(format.Metadata{"tokenizer.ggml.model": "no_vocab"}); !errors.Is(err, ErrNoTokenizer) {
		t.Errorf("no_vocab: %v", err)
	}
}

// TestHFUnigramJSON writes the Unigram fixture as a Hugging Face tokenizer.json
// (Precompiled normalizer, WhitespaceSplit + Metaspace, as the converters write
// SentencePiece models) and checks the expected ids.
func TestHFUnigramJSON(t *testing.T) {
	for _, name := range []string{"unigram_shakespeare_1k", "unigram_bytefallback_1k"} {
		md := sourceMetadata(t, "tokenizer/"+name+".model")
		tokens, scores := md[KeyTokens].([]string), md[KeyScores].([]float32)
		vocab := make([][2]any, len(tokens))
		for i := range tokens {
			vocab[i] = [2]any{tokens[i], scores[i]}
		}
		doc := map[string]any{
			"added_tokens": []map[string]any{
				{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true},
				{"id": 2, "content": "</s>", "special": true},
			},
			"normalizer": map[string]any{"type": "Precompiled", "precompiled_charsmap": base64.StdEncoding.EncodeToString([]byte(md[KeyCharsmap].(string)))},
			"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []map[string]any{
				{"type": "WhitespaceSplit"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"},
			}},
			"model": map[string]any{"type": "Unigram", "unk_id": 0, "vocab": vocab, "byte_fallback": md[KeyByteFallback]},
		}
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		hm, err := tokfile.ParseHFTokenizer(b, &tokfile.HFConfig{BOS: "<s>", EOS: "</s>"})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := FromMetadata(hm)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(filepath.Join(testdataDir(t), "tokenizer", name+"_expected.json"))
		var cases []unigramCase
		if err := json.Unmarshal(raw, &cases); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			if got, _ := tok.Encode(c.Text, false, false); !slices.Equal(got, c.IDs) {
				t.Errorf("%s: Encode(%q) = %v, want %v", name, c.Text, got, c.IDs)
			}
		}
		if tok.BOS() != 1 || tok.EOS() != 2 || tok.AddBOS() || tok.Unk() != 0 {
			t.Errorf("%s: bos %d eos %d unk %d addBOS %v", name, tok.BOS(), tok.EOS(), tok.Unk(), tok.AddBOS())
		}
		if s, _ := tok.Decode([]int{1, 0, 2}); s != " ⁇ " {
			t.Errorf("%s: Decode(<s> <unk> </s>) = %q", name, s)
		}
	}
}

// TestRuleNormalizer checks the named rules (golang.org/x/text NFKC) against the
// fixtures: without their precompiled charsmap, the Unigram models still give
// SentencePiece's ids on every case and on the whole text.
func TestRuleNormalizer(t *testing.T) {
	dir := testdataDir(t)
	text, err := os.ReadFile(filepath.Join(dir, "text", "tinyshakespeare_a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"unigram_shakespeare_1k", "unigram_bytefallback_1k"} {
		md := sourceMetadata(t, "tokenizer/"+name+".model")
		if md[KeyNormalizer] != "nmt_nfkc" {
			t.Fatalf("normalizer %v", md[KeyNormalizer])
		}
		delete(md, KeyCharsmap)
		tok, err := FromMetadata(md)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(filepath.Join(dir, "tokenizer", name+"_expected.json"))
		var cases []unigramCase
		if err := json.Unmarshal(raw, &cases); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			if got, _ := tok.Encode(c.Text, false, false); !slices.Equal(got, c.IDs) {
				t.Errorf("%s: Encode(%q) = %v, want %v", name, c.Text, got, c.IDs)
			}
		}
		got, _ := tok.Encode(string(text), false, false)
		checkIDs(t, got, readIDs(t, filepath.Join(dir, "tokenizer", name+".tinyshakespeare_a.ids")))
	}
}

func TestNormalizer(t *testing.T) {
	md := sourceMetadata(t, "tokenizer/unigram_shakespeare_1k.model")
	cm, err := readNormalizer(md, true, true)
	if err != nil {
		t.Fatal(err)
	}
	rule := cm
	rule.cm = nil
	rule.rule = "nmt_nfkc"
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"   ", ""},
		{" a  b\t\n c ", "▁a▁b▁c"},
		{"ｶﾞ①", "▁ガ1"},          // NFKC
		{"a\u200bb", "▁a▁b"},    // NMT: zero-width space is a space
		{"a\x01b", "▁ab"},       // NMT: control characters go
		{"x\xffy", "▁x\uFFFDy"}, // invalid UTF-8
		{"a\u2581b", "▁a▁b"},
		{"\uff5e", "▁\uff5e"}, // SentencePiece keeps the fullwidth tilde
	} {
		for name, n := range map[string]*normalizer{"charsmap": &cm, "rule": &rule} {
			if got := n.normalize(c.in); got != c.want {
				t.Errorf("%s: normalize(%q) = %q, want %q", name, c.in, got, c.want)
			}
		}
	}
	// Options: no dummy prefix, white space kept.
	keep := normalizer{rule: "identity"}
	if got := keep.normalize("  a  b "); got != "▁▁a▁▁b▁" {
		t.Errorf("identity normalize = %q", got)
	}
	for name, bad := range map[string]string{"short": "\x01", "size": "\x08\x00\x00\x00\x00", "odd": "\x03\x00\x00\x00abc"} {
		if _, err := parseCharsmap(bad); err == nil {
			t.Errorf("charsmap %s: no error", name)
		}
	}
}

func TestWhitespace(t *testing.T) {
	doc := `{"added_tokens": [{"id": 0, "content": "[UNK]", "special": true}],
		"pre_tokenizer": {"type": "WhitespaceSplit"},
		"model": {"type": "WordLevel", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "the": 1, "cat": 2, "sat.": 3, "中文": 4}}}`
	md, err := tokfile.ParseHFTokenizer([]byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := FromMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Kind() != KindWhitespace || tok.Unk() != 0 || tok.BOS() != -1 {
		t.Fatalf("kind %s unk %d bos %d", tok.Kind(), tok.Unk(), tok.BOS())
	}
	ids, err := tok.Encode(" the\u00a0cat\t\tsat. 中文 dog\u3000", false, false)
	if want := []int{1, 2, 3, 4, 0}; err != nil || !slices.Equal(ids, want) {
		t.Errorf("Encode = %v, %v; want %v", ids, err, want)
	}
	if s, _ := tok.Decode(ids); s != "the cat sat. 中文 [UNK]" {
		t.Errorf("Decode = %q", s)
	}
	if st := streamAll(t, tok, ids); st != "the cat sat. 中文 [UNK]" {
		t.Errorf("stream = %q", st)
	}
	delete(md, KeyUnk)
	tok, _ = FromMetadata(md)
	if _, err := tok.Encode("dog", false, false); err == nil {
		t.Error("unknown word without unk: no error")
	}
}

func TestNewKindErrors(t *testing.T) {
	good := map[string]func() format.Metadata{
		"gpt2": func() format.Metadata {
			return format.Metadata{KeyModel: KindGPT2, KeyTokens: []string{"a", "b", "ab"}, KeyMerges: []string{"a b"}}
		},
		"sentencepiece_bpe": func() format.Metadata {
			return format.Metadata{KeyModel: KindSentencePieceBPE, KeyTokens: []string{"<unk>", "▁", "a"}, KeyScores: []float32{0, -1, -2}, KeyUnk: int64(0)}
		},
		"unigram": func() format.Metadata {
			return format.Metadata{KeyModel: KindUnigram, KeyTokens: []string{"<unk>", "▁", "a"}, KeyScores: []float32{0, -1, -2}, KeyUnk: int64(0)}
		},
	}
	for kind, mk := range good {
		tok, err := FromMetadata(mk())
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if _, err := tok.Encode("aab", false, false); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
	for name, c := range map[string]struct {
		kind string
		edit func(format.Metadata)
	}{
		"gpt2 no merges":      {"gpt2", func(m format.Metadata) { delete(m, KeyMerges) }},
		"gpt2 merge format":   {"gpt2", func(m format.Metadata) { m[KeyMerges] = []string{"ab"} }},
		"gpt2 merge 3 parts":  {"gpt2", func(m format.Metadata) { m[KeyMerges] = []string{"a b c"} }},
		"gpt2 merge unknown":  {"gpt2", func(m format.Metadata) { m[KeyMerges] = []string{"a c"} }},
		"gpt2 merges type":    {"gpt2", func(m format.Metadata) { m[KeyMerges] = "a b" }},
		"gpt2 pre":            {"gpt2", func(m format.Metadata) { m[KeyPre] = "deepseek-coder" }},
		"gpt2 type range":     {"gpt2", func(m format.Metadata) { m[KeyTokenType] = []int64{1, 1, 7} }},
		"spm no scores":       {"sentencepiece_bpe", func(m format.Metadata) { delete(m, KeyScores) }},
		"spm short scores":    {"sentencepiece_bpe", func(m format.Metadata) { m[KeyScores] = []float32{0} }},
		"spm NaN":             {"sentencepiece_bpe", func(m format.Metadata) { m[KeyScores] = []float32{0, float32(math.NaN()), 0} }},
		"spm normalizer":      {"sentencepiece_bpe", func(m format.Metadata) { m[KeyNormalizer] = "nfd" }},
		"spm charsmap":        {"sentencepiece_bpe", func(m format.Metadata) { m[KeyCharsmap] = "\x01\x00" }},
		"spm prefix type":     {"sentencepiece_bpe", func(m format.Metadata) { m[KeyAddSpacePrefix] = "yes" }},
		"spm types len":       {"sentencepiece_bpe", func(m format.Metadata) { m[KeyTokenType] = []int64{2} }},
		"unigram no unk":      {"unigram", func(m format.Metadata) { delete(m, KeyUnk) }},
		"unigram inf":         {"unigram", func(m format.Metadata) { m[KeyScores] = []float32{0, float32(math.Inf(1)), 0} }},
		"unigram fallback":    {"unigram", func(m format.Metadata) { m[KeyByteFallback] = true }},
		"unigram short":       {"unigram", func(m format.Metadata) { m[KeyScores] = []float32{0, 0} }},
		"unigram removews ty": {"unigram", func(m format.Metadata) { m[KeyRemoveExtraWhitespaces] = int64(1) }},
	} {
		m := good[c.kind]()
		c.edit(m)
		if _, err := FromMetadata(m); err == nil || errors.Is(err, ErrNoTokenizer) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestConcurrentKinds encodes from many goroutines with one tokenizer of each kind
// (run with -race).
func TestConcurrentKinds(t *testing.T) {
	cases := readCases(t)
	for _, src := range []string{"gpt2/encoder.json", "llama2c/tokenizer.model", "tokenizer/unigram_bytefallback_1k.model"} {
		tok := loadFile(t, src)
		want := make([][]int, len(cases))
		for i, c := range cases {
			want[i], _ = tok.Encode(c, false, false)
		}
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Go(func() {
				for i := range 40 {
					k := (g + i) % len(cases)
					if ids, err := tok.Encode(cases[k], false, false); err != nil || !slices.Equal(ids, want[k]) {
						t.Errorf("%s: concurrent Encode(%q) = %v, %v", src, cases[k], ids, err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

// FuzzEncodeKinds checks every new kind on arbitrary bytes: no error, no panic,
// Decode(Encode(s)) == s where the kind is lossless (GPT-2 always; Llama 2's
// SentencePiece model after U+FFFD for invalid bytes and a space for "▁"), and a
// Stream over the ids gives Decode's text with invalid bytes replaced.
func FuzzEncodeKinds(f *testing.F) {
	addSeeds(f)
	gpt2 := loadFile(f, "gpt2/encoder.json")
	spm := loadFile(f, "llama2c/tokenizer.model")
	uni := []Tokenizer{loadFile(f, "tokenizer/unigram_shakespeare_1k.model"), loadFile(f, "tokenizer/unigram_bytefallback_1k.model")}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(tok Tokenizer, want string, exact bool) {
			ids, err := tok.Encode(s, tok.BOS() >= 0, tok.EOS() >= 0)
			if err != nil {
				t.Fatalf("%s: Encode(%q): %v", tok.Kind(), s, err)
			}
			got, err := tok.Decode(ids)
			if err != nil {
				t.Fatalf("%s: Decode: %v", tok.Kind(), err)
			}
			if exact && got != want {
				t.Fatalf("%s: Decode(Encode(%q)) = %q, want %q (ids %v)", tok.Kind(), s, got, want, ids)
			}
			if st := streamAll(t, tok, ids); st != replaceInvalid(got) {
				t.Fatalf("%s: stream of %q = %q, decode %q", tok.Kind(), s, st, got)
			}
		}
		check(gpt2, s, true)
		check(spm, strings.ReplaceAll(replaceInvalid(s), "\u2581", " "), true)
		for _, u := range uni {
			check(u, "", false)
		}
	})
}

// FuzzNormalizerFastPath checks that the identity normalizer's shortcut gives what
// the full normalizer gives.
func FuzzNormalizerFastPath(f *testing.F) {
	addSeeds(f)
	tok := loadFile(f, "llama2c/tokenizer.model").(*sentencePieceBPE)
	f.Fuzz(func(t *testing.T, s string) {
		full := strings.ReplaceAll(tok.norm.normalize(s), spaceSymbol, " ")
		a, err1 := tok.core.Encode(full, false, false)
		b, err2 := tok.Encode(s, false, false)
		if err1 != nil || err2 != nil || !slices.Equal(mergeUnks(a, tok.core.unk), b) {
			t.Fatalf("Encode(%q) = %v, %v; the full normalizer gives %v, %v", s, b, err2, a, err1)
		}
	})
}

func BenchmarkEncodeSentencePieceBPE(b *testing.B) {
	text, err := os.ReadFile(filepath.Join(testdataDir(b), "text", "tinyshakespeare_a.txt"))
	if err != nil {
		b.Fatal(err)
	}
	tok := loadFile(b, "llama2c/tokenizer.model")
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Encode(string(text), false, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeUnigram(b *testing.B) {
	text, err := os.ReadFile(filepath.Join(testdataDir(b), "text", "tinyshakespeare_a.txt"))
	if err != nil {
		b.Fatal(err)
	}
	tok := loadFile(b, "tokenizer/unigram_bytefallback_1k.model")
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Encode(string(text), false, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeNoSpaces encodes 1 MB without a space with every kind: time and
// memory stay O(n log n), never quadratic.
func BenchmarkEncodeNoSpaces(b *testing.B) {
	s := strings.Repeat("abcdefghij", 100_000)
	for _, src := range []string{"gpt2/encoder.json", "llama2c/tokenizer.model", "llama2c/tokenizer.bin", "tokenizer/unigram_bytefallback_1k.model"} {
		tok := loadFile(b, src)
		if strings.HasSuffix(src, ".bin") {
			tok = loadLlama2c(b, src)
		}
		b.Run(fmt.Sprintf("%s/%s", tok.Kind(), filepath.Base(src)), func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tok.Encode(s, false, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
