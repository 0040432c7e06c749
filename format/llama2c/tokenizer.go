package llama2c

import (
	"fmt"
	"os"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/tokfile"
)

// maxTokenizerSize bounds the tokenizer files ReadTokenizer accepts (Llama 2's is 434 KB).
const maxTokenizerSize = 1 << 30

// ReadTokenizer reads a llama2.c tokenizer.bin (int32 max_token_length, then for each
// token a float32 score, an int32 byte length and the bytes) that must hold exactly
// vocabSize tokens. It returns the tokenizer.* metadata of an lmc checkpoint: model
// "llama2c", the pieces as stored (raw bytes), their scores, bos 1, eos 2, unk 0 and
// add_bos true.
func ReadTokenizer(path string, vocabSize int) (format.Metadata, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("tokenizer %s: not a regular file", path)
	}
	if st.Size() > maxTokenizerSize {
		return nil, fmt.Errorf("tokenizer %s: %w: %d bytes is too large for a tokenizer", path, ErrFormat, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	md, err := parseTokenizer(b, vocabSize)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return md, nil
}

// parseTokenizer parses a tokenizer.bin of exactly vocabSize (> 0) tokens with
// format/tokfile, which holds the parser for every tokenizer file kind.
func parseTokenizer(b []byte, vocabSize int) (format.Metadata, error) {
	if vocabSize <= 0 {
		return nil, fmt.Errorf("vocabulary size %d", vocabSize)
	}
	md, err := tokfile.ParseLlama2c(b, vocabSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	return md, nil
}
