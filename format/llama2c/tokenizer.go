package llama2c

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"github.com/lmrun/lmrun/format"
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

func parseTokenizer(b []byte, vocabSize int) (format.Metadata, error) {
	le := binary.LittleEndian
	if vocabSize <= 0 {
		return nil, fmt.Errorf("vocabulary size %d", vocabSize)
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrFormat, len(b))
	}
	if maxLen := int32(le.Uint32(b)); maxLen < 0 {
		return nil, fmt.Errorf("%w: max_token_length %d", ErrFormat, maxLen)
	}
	// Every token takes at least 8 bytes: bound the count before allocating.
	if uint64(vocabSize) > uint64(len(b)-4)/8 {
		return nil, fmt.Errorf("%w: %d bytes cannot hold %d tokens (wrong tokenizer for this model?)", ErrFormat, len(b), vocabSize)
	}
	tokens := make([]string, vocabSize)
	scores := make([]float32, vocabSize)
	off := 4
	for i := range tokens {
		if len(b)-off < 8 {
			return nil, fmt.Errorf("%w: file ends after %d of %d tokens (wrong tokenizer for this model?)", ErrFormat, i, vocabSize)
		}
		scores[i] = math.Float32frombits(le.Uint32(b[off:]))
		n := int64(int32(le.Uint32(b[off+4:])))
		off += 8
		if math.IsNaN(float64(scores[i])) {
			return nil, fmt.Errorf("%w: token %d has a NaN score", ErrFormat, i)
		}
		if n < 0 {
			return nil, fmt.Errorf("%w: token %d has length %d", ErrFormat, i, n)
		}
		if n > int64(len(b)-off) {
			return nil, fmt.Errorf("%w: token %d of %d bytes runs past the end of the file", ErrFormat, i, n)
		}
		tokens[i] = string(b[off : off+int(n)])
		off += int(n)
	}
	if off != len(b) {
		return nil, fmt.Errorf("%w: %d bytes left after %d tokens (the file holds more tokens than the model's vocabulary?)", ErrFormat, len(b)-off, vocabSize)
	}
	return format.Metadata{
		"tokenizer.model":   "llama2c",
		"tokenizer.tokens":  tokens,
		"tokenizer.scores":  scores,
		"tokenizer.bos_id":  int64(1),
		"tokenizer.eos_id":  int64(2),
		"tokenizer.unk_id":  int64(0),
		"tokenizer.add_bos": true,
	}, nil
}
