// Package convert recognizes model files by their content and imports them into lmrun
// checkpoints through the importer for their format.
package convert

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/format/hf"
	"github.com/lmrun/lmrun/format/llama2c"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/format/tokfile"
	"github.com/lmrun/lmrun/model"
	"github.com/lmrun/lmrun/tokenizer"
)

// Kind is a model file format.
type Kind int

// The formats Detect recognizes.
const (
	KindUnknown     Kind = iota
	KindLMC              // an lmrun checkpoint ("LMRC")
	KindHF               // a Hugging Face model directory (config.json + safetensors)
	KindSafetensors      // a safetensors file or index, with config.json beside it
	KindGGUF             // a GGUF file
	KindLlama2C          // a llama2.c checkpoint: legacy, or "ak42" version 1 or 2
)

var kindNames = [...]string{"unknown", "lmc", "hf", "safetensors", "gguf", "llama2c"}

// String returns the kind's short name.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ErrAlreadyLMC is returned by Import for a file that is already an lmrun checkpoint.
var ErrAlreadyLMC = errors.New("already an lmrun checkpoint; nothing to convert")

// maxIndexSniff bounds the JSON file Detect parses to recognize a safetensors index.
const maxIndexSniff = 100 << 20

// Detect tells the format of path from its content, not its name: a directory holding
// config.json is a Hugging Face model; a file is recognized by its magic ("LMRC", "GGUF",
// llama2.c's "ak42"), by a safetensors header, as a safetensors index (JSON with a
// weight_map), or as a legacy llama2.c checkpoint whose 7-int header is sane and whose
// size matches it exactly.
func Detect(path string) (Kind, error) {
	st, err := os.Stat(path)
	if err != nil {
		return KindUnknown, err
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, hf.ConfigName)); err != nil {
			return KindUnknown, fmt.Errorf("cannot tell the format of %s: a directory without %s", path, hf.ConfigName)
		}
		return KindHF, nil
	}
	if !st.Mode().IsRegular() {
		return KindUnknown, fmt.Errorf("cannot tell the format of %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return KindUnknown, err
	}
	head := make([]byte, 16)
	n, err := io.ReadFull(f, head)
	f.Close()
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return KindUnknown, fmt.Errorf("%s: %w", path, err)
	}
	head = head[:n]
	switch {
	case n >= 4 && string(head[:4]) == format.Magic:
		return KindLMC, nil
	case n >= 4 && string(head[:4]) == "GGUF":
		return KindGGUF, nil
	case n >= 8 && binary.LittleEndian.Uint32(head) == llama2c.Magic:
		if v := int32(binary.LittleEndian.Uint32(head[4:])); v != 1 && v != 2 {
			return KindUnknown, fmt.Errorf("%s: llama2.c export version %d is not supported (versions 1 and 2 are)", path, v)
		}
		return KindLlama2C, nil
	case safetensors.LooksLike(head, st.Size()):
		return KindSafetensors, nil
	case isIndex(path, head, st.Size()):
		return KindSafetensors, nil
	}
	if _, err := llama2c.ReadHeader(path); err == nil {
		return KindLlama2C, nil
	}
	return KindUnknown, fmt.Errorf("cannot tell the format of %s: not an lmrun, GGUF, safetensors or llama2.c file", path)
}

// isIndex reports whether the file is a safetensors index: a JSON object with a
// non-empty weight_map.
func isIndex(path string, head []byte, size int64) bool {
	if size > maxIndexSniff || !strings.HasPrefix(strings.TrimLeft(string(head), " \t\r\n"), "{") {
		return false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	return json.Unmarshal(b, &index) == nil && len(index.WeightMap) > 0
}

// Options adjusts an import.
type Options struct {
	// TokenizerPath names a tokenizer to store in the checkpoint, of any kind
	// format/tokfile reads (detected by content): a llama2.c tokenizer.bin, a
	// SentencePiece tokenizer.model, a Hugging Face tokenizer.json, vocab.json or
	// encoder.json with its merges beside it, or a directory holding one. It is needed
	// for llama2.c checkpoints, which carry no vocabulary; for other formats it replaces
	// every tokenizer.* key of the import. Without it, a Hugging Face model directory's
	// own tokenizer files are stored.
	TokenizerPath string
}

// Import detects the format of path and imports it with that format's importer.
func Import(path string, opts Options) (*format.Checkpoint, error) {
	kind, err := Detect(path)
	if err != nil {
		return nil, err
	}
	var ck *format.Checkpoint
	switch kind {
	case KindLMC:
		return nil, fmt.Errorf("%s: %w", path, ErrAlreadyLMC)
	case KindGGUF:
		ck, err = gguf.Import(path)
	case KindLlama2C:
		ck, err = llama2c.Import(path, "") // the tokenizer is merged below
	case KindHF, KindSafetensors:
		ck, err = hf.Import(path)
	default:
		return nil, fmt.Errorf("%s: cannot import format %s", path, kind)
	}
	if err != nil {
		return nil, withPath(path, err)
	}
	if err := addTokenizer(ck.Meta, path, kind, opts.TokenizerPath); err != nil {
		return nil, withPath(path, err)
	}
	return ck, nil
}

// addTokenizer stores the tokenizer at tokPath in meta (replacing every tokenizer.* key),
// or, without one, the tokenizer files of a Hugging Face model directory when the
// import has no tokenizer. The tokenizer is built once to check it, and must not
// have more tokens than the model.
func addTokenizer(meta format.Metadata, path string, kind Kind, tokPath string) error {
	vocab, _, err := meta.Int(model.KeyVocabSize)
	if err != nil {
		return err
	}
	var tm format.Metadata
	src := tokPath
	switch {
	case tokPath != "":
		if tm, err = tokfile.Read(tokPath, tokfile.Options{VocabSize: vocab}); err != nil {
			return err
		}
		for k := range meta {
			if strings.HasPrefix(k, "tokenizer.") {
				delete(meta, k)
			}
		}
	case kind == KindHF || kind == KindSafetensors:
		if _, err := tokenizer.FromMetadata(meta); !errors.Is(err, tokenizer.ErrNoTokenizer) {
			return nil // the importer provided one
		}
		src = path
		if kind == KindSafetensors {
			src = filepath.Dir(path)
		}
		if tm, err = tokfile.ReadDir(src); errors.Is(err, tokfile.ErrNotFound) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%w (pass --tokenizer FILE to store another tokenizer)", err)
		}
	default:
		return nil
	}
	tok, err := tokenizer.FromMetadata(tm)
	if err != nil {
		return fmt.Errorf("tokenizer of %s: %w", src, err)
	}
	if vocab > 0 && tok.VocabSize() > vocab {
		return fmt.Errorf("tokenizer of %s has %d tokens, the model only %d", src, tok.VocabSize(), vocab)
	}
	for k, v := range tm {
		meta[k] = v
	}
	return nil
}

// withPath makes sure an error names the file it is about (the importers' errors usually
// already do).
func withPath(path string, err error) error {
	if strings.Contains(err.Error(), path) {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}
