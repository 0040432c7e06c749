package tokfile

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/internal/fixtures"
)

func TestDetect(t *testing.T) {
	for rel, want := range map[string]Kind{
		"llama2c/tok512.bin":                     Llama2c,
		"llama2c/tokenizer.bin":                  Llama2c,
		"llama2c/tokenizer.model":                SentencePiece,
		"tokenizer/unigram_shakespeare_1k.model": SentencePiece,
		"gpt2/encoder.json":                      BPEVocab,
		"gpt2/vocab.bpe":                         BPEMerges,
		"hf/tiny_gpt2/merges.txt":                BPEMerges,
		"hf/fake_gpt2/tokenizer.json":            HFTokenizer,
		"hf/fake_gpt2":                           Dir,
		"llama2c/stories260K.bin":                Unknown,
		"text/tinyshakespeare_a.txt":             Unknown,
		"gguf/ggml-vocab-gpt-2.gguf":             Unknown,
	} {
		got, err := Detect(fixtures.Path(t, strings.Split(rel, "/")...))
		if err != nil || got != want {
			t.Errorf("Detect(%s) = %v, %v; want %v", rel, got, err, want)
		}
	}
	if _, err := Detect(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestRead(t *testing.T) {
	for rel, c := range map[string]struct {
		kind   string
		tokens int
		bos    int64
		addBOS bool
	}{
		"llama2c/tok512.bin":                       {"llama2c", 512, 1, true},
		"llama2c/tokenizer.model":                  {"sentencepiece_bpe", 32000, 1, true},
		"tokenizer/unigram_bytefallback_1k.model":  {"unigram", 1000, 1, true},
		"gpt2/encoder.json":                        {"gpt2", 50257, 50256, false},
		"gpt2/vocab.bpe":                           {"gpt2", 50257, 50256, false},
		"hf/fake_gpt2/tokenizer.json":              {"gpt2", 50257, 50256, false},
		"hf/fake_gpt2":                             {"gpt2", 50257, 50256, false},
		"hf/tiny_gpt2":                             {"gpt2", 21, 20, false},
		"hf/tiny_gpt2/vocab.json":                  {"gpt2", 21, 20, false},
		"tokenizer/unigram_shakespeare_1k.model/.": {}, // not a directory: an error
	} {
		md, err := Read(fixtures.Dir(t)+"/"+rel, Options{})
		if c.kind == "" {
			if err == nil {
				t.Errorf("%s: no error", rel)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if err := md.Validate(); err != nil {
			t.Errorf("%s: %v", rel, err)
		}
		toks, _, _ := md.Strings("tokenizer.tokens")
		bos, ok, _ := md.Int("tokenizer.bos_id")
		if !ok {
			bos = -1
		}
		addBOS, _, _ := md.Bool("tokenizer.add_bos")
		if md["tokenizer.model"] != c.kind || len(toks) != c.tokens || int64(bos) != c.bos || addBOS != c.addBOS {
			t.Errorf("%s: model %v, %d tokens, bos %d, add_bos %v", rel, md["tokenizer.model"], len(toks), bos, addBOS)
		}
	}
	// The vocabulary size of a tokenizer.bin is checked when given.
	if _, err := Read(fixtures.Path(t, "llama2c", "tok512.bin"), Options{VocabSize: 511}); err == nil {
		t.Error("tok512.bin read as 511 tokens")
	}
	md, err := Read(fixtures.Path(t, "llama2c", "tokenizer.model"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if md["tokenizer.normalizer"] != "identity" || md["tokenizer.add_space_prefix"] != true ||
		md["tokenizer.remove_extra_whitespaces"] != false || md["tokenizer.byte_fallback"] != true {
		t.Errorf("Llama 2 normalizer: %v %v %v %v", md["tokenizer.normalizer"], md["tokenizer.add_space_prefix"],
			md["tokenizer.remove_extra_whitespaces"], md["tokenizer.byte_fallback"])
	}
	types := md["tokenizer.token_type"].([]int64)
	if types[0] != 2 || types[1] != 3 || types[3] != 6 || types[300] != 1 {
		t.Errorf("Llama 2 types %v", types[:4])
	}
	md, _ = Read(fixtures.Path(t, "tokenizer", "unigram_shakespeare_1k.model"), Options{})
	if cm, _ := md["tokenizer.precompiled_charsmap"].(string); len(cm) != 237561 || md["tokenizer.normalizer"] != "nmt_nfkc" {
		t.Errorf("charsmap of %d bytes, normalizer %v", len(cm), md["tokenizer.normalizer"])
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	if _, err := ReadDir(sub); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty directory: %v", err)
	}
	for name, content := range map[string]string{
		"vocab.json":     `{"a": 0, "b": 1}`, // no merges beside it
		"bad.json":       `{"model": {"type": "WordPiece", "vocab": {}}}`,
		"gap.json":       `{"model": {"type": "BPE", "vocab": {"a": 0, "c": 2}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}`,
		"prefix.json":    `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true}}`,
		"metaspace.json": `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}}`,
		"nounk.json":     `{"model": {"type": "Unigram", "vocab": [["a", -1]]}}`,
		"text.txt":       "just some text\nwith lines that are not merges at all\n",
		"empty":          "",
	} {
		p := write(name, content)
		if _, err := Read(p, Options{}); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v (want an error naming the file)", name, err)
		}
	}
}

// TestParseErrors truncates and corrupts the real files: every prefix of a
// SentencePiece model either parses or fails, never panics.
func TestParseErrors(t *testing.T) {
	b, err := os.ReadFile(fixtures.Path(t, "tokenizer", "unigram_shakespeare_1k.model"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 2, 3, 10} {
		if _, err := ParseSentencePiece(b[:n]); err == nil {
			t.Errorf("prefix of %d bytes parsed", n)
		}
	}
	// A prefix cut between two pieces is a valid ModelProto with fewer pieces;
	// any other fails. None panics.
	for n := 0; n < 3000; n++ {
		if md, err := ParseSentencePiece(b[:n]); err == nil && len(md["tokenizer.tokens"].([]string)) >= 1000 {
			t.Fatalf("prefix of %d bytes has every piece", n)
		}
	}
	if _, err := ParseSentencePiece(b[:len(b)-1]); err == nil {
		t.Error("the file without its last byte parsed")
	}
	bad := append([]byte(nil), b...)
	bad[1] = 0xff // piece length past the end
	if _, err := ParseSentencePiece(bad); err == nil {
		t.Error("corrupt length parsed")
	}
	if _, err := ParseSentencePiece([]byte{0x0a, 0x02, 0x18, 0x09}); err == nil {
		t.Error("piece type 9 parsed")
	}
	if _, err := ParseSentencePiece([]byte{0x0a, 0x03, 0x0a, 0x01, 'a', 0x12, 0x02, 0x18, 0x04}); err == nil {
		t.Error("model type WORD parsed")
	}
	// llama2.c tokenizer.bin: truncated, bad lengths.
	tok := []byte{7, 0, 0, 0}
	for _, s := range []string{"<unk>", "<s>", "</s>", "a"} {
		tok = binary.LittleEndian.AppendUint32(tok, 0)
		tok = binary.LittleEndian.AppendUint32(tok, uint32(len(s)))
		tok = append(tok, s...)
	}
	if md, err := ParseLlama2c(tok, 0); err != nil || len(md["tokenizer.tokens"].([]string)) != 4 {
		t.Errorf("4-token file: %v", err)
	}
	for _, n := range []int{5, 12, len(tok) - 1} {
		if _, err := ParseLlama2c(tok[:n], 0); err == nil {
			t.Errorf("prefix of %d bytes parsed", n)
		}
	}
}

func FuzzParseSentencePiece(f *testing.F) {
	f.Add([]byte{0x0a, 0x07, 0x0a, 0x01, 'a', 0x15, 0, 0, 0x80, 0xbf})
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 'a', 0x12, 0x02, 0x18, 0x02, 0x1a, 0x04, 0x0a, 0x02, 'i', 'd'})
	f.Add([]byte{0x12, 0x0b, 0xa8, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		md, err := ParseSentencePiece(b)
		if err != nil {
			return
		}
		if err := md.Validate(); err != nil {
			t.Fatal(err)
		}
		toks := md["tokenizer.tokens"].([]string)
		for _, k := range []string{"tokenizer.unk_id", "tokenizer.bos_id", "tokenizer.eos_id", "tokenizer.pad_id"} {
			if id := md[k].(int64); id < -1 || id >= int64(len(toks)) {
				t.Fatalf("%s = %d for %d tokens", k, id, len(toks))
			}
		}
	})
}

func FuzzDetectAndParse(f *testing.F) {
	f.Add([]byte(`{"a": 0, "b": 1, "ab": 2}`))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": [{"id": 3, "content": "<s>", "special": true}]}`))
	f.Add([]byte(`{"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0], ["a", -1]]}, "normalizer": {"type": "Precompiled", "precompiled_charsmap": "AAAA"}}`))
	f.Add([]byte("#version: 0.2\na b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		switch DetectBytes(b) {
		case HFTokenizer:
			if md, err := ParseHFTokenizer(b, nil); err == nil {
				if err := md.Validate(); err != nil {
					t.Fatal(err)
				}
			}
		case BPEVocab:
			ParseGPT2(b, []byte("a b\n"))
		case BPEMerges:
			ParseGPT2([]byte(`{"a": 0, "b": 1, "ab": 2}`), b)
		}
	})
}

// TestHFBytePreTokenizers checks that the byte-level pre-tokenizers lmrun implements
// are named, and that any other regular expression or sequence is refused at load
// rather than split differently.
func TestHFBytePreTokenizers(t *testing.T) {
	const body = `{"added_tokens": [], "normalizer": %s, "pre_tokenizer": %s,
		"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"], "ignore_merges": %v}}`
	split := func(re string) string {
		b, _ := json.Marshal(re)
		return `{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": ` + string(b) +
			`}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}`
	}
	for _, c := range []struct {
		norm, pre string
		ignore    bool
		want      string // tokenizer.pre, or "" for an error
	}{
		{"null", `{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}`, false, "gpt-2"},
		{"null", split(llama3Pattern), true, "llama-bpe"},
		{`{"type": "NFC"}`, split(qwen2Pattern), false, "qwen2"},
		{"null", `{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]}`, false, "smollm"},
		{"null", split(`\p{N}{1,2}|\s+(?!\S)|\s+`), false, ""},
		{"null", split(strings.Replace(llama3Pattern, "{1,3}", "{1,4}", 1)), false, ""},
		{"null", `{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": false}, {"type": "ByteLevel", "use_regex": true}]}`, false, ""},
		{"null", `{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "x"}, "behavior": "Removed"}, {"type": "ByteLevel", "use_regex": false}]}`, false, ""},
		{"null", split(llama3Pattern)[:len(split(llama3Pattern))-len(`"use_regex": false}]}`)] + `"use_regex": true}]}`, false, ""},
		{`{"type": "NFKC"}`, split(qwen2Pattern), false, ""},
	} {
		md, err := ParseHFTokenizer([]byte(fmt.Sprintf(body, c.norm, c.pre, c.ignore)), nil)
		if c.want == "" {
			if err == nil {
				t.Errorf("%s %s: no error", c.norm, c.pre)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %s: %v", c.norm, c.pre, err)
			continue
		}
		if md["tokenizer.pre"] != c.want || md["tokenizer.ignore_merges"] != c.ignore {
			t.Errorf("%s: pre %v ignore_merges %v", c.want, md["tokenizer.pre"], md["tokenizer.ignore_merges"])
		}
		if _, nfc := md["tokenizer.normalizer"]; nfc != (c.norm != "null") {
			t.Errorf("%s: normalizer %v", c.want, md["tokenizer.normalizer"])
		}
	}
}

// TestHFSentencePieceBPE checks how BPE with byte fallback is read: Metaspace means
// Hugging Face's prefix rule, Prepend and Replace normalizers SentencePiece's, and
// anything else is refused.
func TestHFSentencePieceBPE(t *testing.T) {
	const body = `{"added_tokens": [{"id": 0, "content": "<unk>", "special": true}], "normalizer": %s, "pre_tokenizer": %s,
		"model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "vocab": {"<unk>": 0, "▁": 1, "a": 2, "▁a": 3, "<0x41>": 4}, "merges": ["▁ a"]}}`
	for _, c := range []struct {
		norm, pre   string
		unlessSpace bool
		ok          bool
	}{
		{"null", `{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}`, true, true},
		{`{"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}`, "null", false, true},
		{"null", `{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}`, false, false},
		{"null", `{"type": "Metaspace", "replacement": "_", "prepend_scheme": "first"}`, false, false},
		{"null", `{"type": "ByteLevel"}`, false, false},
		{`{"type": "NFKC"}`, "null", false, false},
	} {
		md, err := ParseHFTokenizer([]byte(fmt.Sprintf(body, c.norm, c.pre)), nil)
		if !c.ok {
			if err == nil {
				t.Errorf("%s %s: no error", c.norm, c.pre)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %s: %v", c.norm, c.pre, err)
			continue
		}
		_, unless := md["tokenizer.prefix_unless_space"]
		scores := md["tokenizer.scores"].([]float32)
		types := md["tokenizer.token_type"].([]int64)
		if md["tokenizer.model"] != "sentencepiece_bpe" || unless != c.unlessSpace || scores[3] != 0 || scores[2] > -1e10 ||
			types[0] != 2 || types[4] != 6 || md["tokenizer.unk_id"] != int64(0) {
			t.Errorf("%s %s: %v", c.norm, c.pre, md)
		}
	}
}
