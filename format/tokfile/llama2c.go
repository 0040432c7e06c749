package tokfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/lmrun/lmrun/format"
)

// ParseLlama2c converts a llama2.c tokenizer.bin (int32 max_token_length, then for
// each token a float32 score, an int32 byte length and the bytes) to tokenizer
// metadata: model "llama2c", the pieces as stored (raw bytes, spaces as spaces), their
// scores, bos 1, eos 2, unk 0 and add_bos true. The file does not record its
// vocabulary size: with vocabSize > 0 it must hold exactly that many tokens; with 0
// every token up to the end of the file is read.
func ParseLlama2c(b []byte, vocabSize int) (format.Metadata, error) {
	le := binary.LittleEndian
	if vocabSize < 0 {
		return nil, fmt.Errorf("llama2c tokenizer: vocabulary size %d", vocabSize)
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("llama2c tokenizer: %d bytes, shorter than the header", len(b))
	}
	if maxLen := int32(le.Uint32(b)); maxLen < 0 {
		return nil, fmt.Errorf("llama2c tokenizer: max_token_length %d", maxLen)
	}
	// Every token takes at least 8 bytes: bound the count before allocating.
	if uint64(vocabSize) > uint64(len(b)-4)/8 {
		return nil, fmt.Errorf("llama2c tokenizer: %d bytes cannot hold %d tokens (wrong tokenizer for this model?)", len(b), vocabSize)
	}
	capacity := vocabSize
	if capacity == 0 {
		capacity = (len(b) - 4) / 8
	}
	tokens := make([]string, 0, min(capacity, maxPieces))
	scores := make([]float32, 0, min(capacity, maxPieces))
	off := 4
	for i := 0; vocabSize == 0 && off < len(b) || i < vocabSize; i++ {
		if len(tokens) >= maxPieces {
			return nil, fmt.Errorf("llama2c tokenizer: more than %d tokens", maxPieces)
		}
		if len(b)-off < 8 {
			return nil, fmt.Errorf("llama2c tokenizer: file ends after %d of %d tokens (wrong tokenizer for this model?)", i, vocabSize)
		}
		score := math.Float32frombits(le.Uint32(b[off:]))
		n := int64(int32(le.Uint32(b[off+4:])))
		off += 8
		if math.IsNaN(float64(score)) {
			return nil, fmt.Errorf("llama2c tokenizer: token %d has a NaN score", i)
		}
		if n < 0 {
			return nil, fmt.Errorf("llama2c tokenizer: token %d has length %d", i, n)
		}
		if n > int64(len(b)-off) {
			return nil, fmt.Errorf("llama2c tokenizer: token %d of %d bytes runs past the end of the file", i, n)
		}
		tokens = append(tokens, string(b[off:off+int(n)]))
		scores = append(scores, score)
		off += int(n)
	}
	if off != len(b) {
		return nil, fmt.Errorf("llama2c tokenizer: %d bytes left after %d tokens (the file holds more tokens than the model's vocabulary?)", len(b)-off, vocabSize)
	}
	if len(tokens) < 3 {
		return nil, errors.New("llama2c tokenizer: fewer than 3 tokens (unk, BOS, EOS)")
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
