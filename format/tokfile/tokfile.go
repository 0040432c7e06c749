// Package tokfile reads tokenizer files into the `tokenizer.*` metadata of an lmrun
// checkpoint (format/SPEC.md), so that a converted model carries its tokenizer:
//
//   - llama2.c tokenizer.bin → "llama2c"
//   - SentencePiece tokenizer.model (ModelProto; BPE or Unigram) → "sentencepiece_bpe"
//     or "unigram", normalizer included
//   - OpenAI encoder.json + vocab.bpe, Hugging Face vocab.json + merges.txt → "gpt2"
//   - Hugging Face tokenizer.json (byte-level BPE, Unigram, WordLevel) → "gpt2",
//     "unigram" or "whitespace", with tokenizer_config.json and config.json beside it
//     for the special tokens
//
// Files are recognized by their content, not their names. the tokenizer package turns the
// metadata into a Tokenizer.
package tokfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lmrun/lmrun/format"
)

// Kind is a tokenizer file format.
type Kind int

// The formats Detect recognizes.
const (
	Unknown       Kind = iota
	Llama2c            // llama2.c tokenizer.bin
	SentencePiece      // SentencePiece model (tokenizer.model)
	HFTokenizer        // Hugging Face tokenizer.json
	BPEVocab           // encoder.json / vocab.json: a JSON object from piece to id
	BPEMerges          // vocab.bpe / merges.txt
	Dir                // a directory holding one of the above
)

var kindNames = [...]string{"unknown", "llama2c tokenizer.bin", "sentencepiece model", "tokenizer.json", "BPE vocabulary (vocab.json)", "BPE merges (merges.txt)", "directory"}

// String names the kind.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// maxFileSize bounds the tokenizer files read (the largest real ones are ~20 MB).
const maxFileSize = 1 << 30

// Names of the files looked for beside a vocabulary or in a directory.
var (
	vocabNames  = []string{"vocab.json", "encoder.json"}
	mergesNames = []string{"merges.txt", "vocab.bpe"}
)

// DetectBytes tells the kind of a tokenizer file from its content.
func DetectBytes(b []byte) Kind {
	trimmed := bytes.TrimLeft(b[:min(len(b), 64)], " \t\r\n")
	if bytes.HasPrefix(trimmed, []byte("{")) {
		if bytes.Contains(b, []byte(`"model"`)) && hasModelKey(b) {
			return HFTokenizer
		}
		return BPEVocab
	}
	if looksLikeMerges(b) {
		return BPEMerges
	}
	if len(b) > 0 && b[0] == 0x0A { // ModelProto field 1 (pieces)
		if _, err := ParseSentencePiece(b); err == nil {
			return SentencePiece
		}
	}
	if _, err := ParseLlama2c(b, 0); err == nil {
		return Llama2c
	}
	return Unknown
}

// hasModelKey reports whether a JSON object has a top-level "model" object.
func hasModelKey(b []byte) bool {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return false
	}
	m, ok := top["model"]
	return ok && len(m) > 0 && m[0] == '{'
}

// Detect tells the kind of the tokenizer at path (a file or a directory).
func Detect(path string) (Kind, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Unknown, fmt.Errorf("tokenizer: %w", err)
	}
	if st.IsDir() {
		return Dir, nil
	}
	b, err := readFile(path)
	if err != nil {
		return Unknown, err
	}
	return DetectBytes(b), nil
}

func readFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("tokenizer %s: not a regular file", path)
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("tokenizer %s: %d bytes is too large for a tokenizer", path, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return b, nil
}

// readOptional returns the file's content, or nil when it does not exist.
func readOptional(path string) ([]byte, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return readFile(path)
}

// Options adjust Read.
type Options struct {
	// VocabSize is the number of tokens a llama2.c tokenizer.bin must hold (the file
	// does not record it); 0 reads every token in the file.
	VocabSize int
}

// ErrNotFound is returned by ReadDir when a directory holds no tokenizer file.
var ErrNotFound = errors.New("no tokenizer file (tokenizer.json, vocab.json + merges.txt, tokenizer.model)")

// Read reads the tokenizer at path, detected by content: a file of any kind the
// package knows, or a directory (see ReadDir). A vocabulary or merges file of a
// byte-level BPE needs its partner beside it (vocab.json or encoder.json, merges.txt
// or vocab.bpe). Errors name the file.
func Read(path string, opts Options) (format.Metadata, error) {
	kind, err := Detect(path)
	if err != nil {
		return nil, err
	}
	if kind == Dir {
		return ReadDir(path)
	}
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	var md format.Metadata
	switch kind {
	case Llama2c:
		md, err = ParseLlama2c(b, opts.VocabSize)
	case SentencePiece:
		md, err = ParseSentencePiece(b)
	case HFTokenizer:
		var cfg *HFConfig
		if cfg, err = dirConfig(dir); err == nil {
			md, err = ParseHFTokenizer(b, cfg)
		}
	case BPEVocab, BPEMerges:
		vocab, merges := b, b
		if kind == BPEVocab {
			merges, err = findBeside(dir, mergesNames)
		} else {
			vocab, err = findBeside(dir, vocabNames)
		}
		if err == nil {
			md, err = ParseGPT2(vocab, merges)
		}
		if err == nil {
			var cfg *HFConfig
			if cfg, err = dirConfig(dir); err == nil {
				applyConfig(md, cfg)
			}
		}
	default:
		return nil, fmt.Errorf("tokenizer %s: not a tokenizer file lmrun knows (llama2.c tokenizer.bin, SentencePiece model, tokenizer.json, vocab.json/encoder.json + merges.txt/vocab.bpe)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return md, nil
}

// findBeside returns the content of the first of names that exists in dir.
func findBeside(dir string, names []string) ([]byte, error) {
	for _, n := range names {
		b, err := readOptional(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		if b != nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("needs %s or %s beside it", names[0], names[1])
}

// dirConfig reads tokenizer_config.json and config.json in dir, if present.
func dirConfig(dir string) (*HFConfig, error) {
	tc, err := readOptional(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		return nil, err
	}
	mc, err := readOptional(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	return ParseHFConfig(tc, mc)
}

// ReadDir reads the tokenizer of a Hugging Face model directory: tokenizer.json
// (with tokenizer_config.json and config.json), else vocab.json + merges.txt (or
// encoder.json + vocab.bpe), else tokenizer.model — the first of them present that
// lmrun can read; when none can be read, the error of the first. It returns
// ErrNotFound when there is none of them.
func ReadDir(dir string) (format.Metadata, error) {
	var first error
	fail := func(name string, err error) {
		if first == nil {
			first = fmt.Errorf("tokenizer %s: %w", filepath.Join(dir, name), err)
		}
	}
	if b, err := readOptional(filepath.Join(dir, "tokenizer.json")); err != nil {
		return nil, err
	} else if b != nil {
		cfg, err := dirConfig(dir)
		if err != nil {
			return nil, fmt.Errorf("tokenizer %s: %w", dir, err)
		}
		md, err := ParseHFTokenizer(b, cfg)
		if err == nil {
			return md, nil
		}
		fail("tokenizer.json", err)
	}
	for i, vn := range vocabNames {
		vocab, err := readOptional(filepath.Join(dir, vn))
		if err != nil {
			return nil, err
		}
		if vocab == nil {
			continue
		}
		merges, err := readOptional(filepath.Join(dir, mergesNames[i]))
		if err != nil {
			return nil, err
		}
		if merges == nil {
			fail(vn, fmt.Errorf("no %s beside it", mergesNames[i]))
			continue
		}
		md, err := ParseGPT2(vocab, merges)
		if err != nil {
			fail(vn, err)
			continue
		}
		cfg, err := dirConfig(dir)
		if err != nil {
			return nil, fmt.Errorf("tokenizer %s: %w", dir, err)
		}
		applyConfig(md, cfg)
		return md, nil
	}
	if b, err := readOptional(filepath.Join(dir, "tokenizer.model")); err != nil {
		return nil, err
	} else if b != nil {
		md, err := ParseSentencePiece(b)
		if err == nil {
			return md, nil
		}
		fail("tokenizer.model", err)
	}
	if first != nil {
		return nil, first
	}
	return nil, fmt.Errorf("%s: %w", dir, ErrNotFound)
}

// applyConfig sets the special ids named by cfg on a gpt2 vocabulary.
func applyConfig(md format.Metadata, cfg *HFConfig) {
	tokens := md["tokenizer.tokens"].([]string)
	find := func(content string) (int64, bool) {
		for i, p := range tokens {
			if p == content && content != "" {
				return int64(i), true
			}
		}
		return 0, false
	}
	for key, content := range map[string]string{"tokenizer.bos_id": cfg.BOS, "tokenizer.eos_id": cfg.EOS, "tokenizer.unk_id": cfg.Unk, "tokenizer.pad_id": cfg.Pad} {
		if id, ok := find(content); ok {
			md[key] = id
		}
	}
	if cfg.AddBOS != nil {
		_, hasBOS := md["tokenizer.bos_id"]
		md["tokenizer.add_bos"] = *cfg.AddBOS && hasBOS
	}
}
