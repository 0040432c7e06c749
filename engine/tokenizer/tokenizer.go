// Package tokenizer converts between text and token ids for the tokenizers a checkpoint
// can describe in its `tokenizer.*` metadata (format/SPEC.md):
//
//   - "llama2c": SentencePiece-style BPE with per-piece scores, encoded exactly as
//     karpathy/llama2.c run.c does (see [FromMetadata] and the llama2c notes below);
//   - "bytes": a byte-level tokenizer for synthetic models (see [BytesMetadata]).
//
// Tokenizers are immutable and safe for concurrent use. [Stream] turns a sequence of
// generated ids into text incrementally without ever splitting a UTF-8 sequence.
package tokenizer

import (
	"errors"
	"fmt"

	"github.com/lmrun/lmrun/format"
)

// Tokenizer converts between text and token ids. Implementations are immutable and
// safe for concurrent use.
type Tokenizer interface {
	// Encode converts text to ids, optionally preceded by BOS and followed by EOS.
	// It is an error to ask for BOS or EOS when the tokenizer has none. Any byte
	// string is accepted (invalid UTF-8 is byte-encoded).
	Encode(text string, addBOS, addEOS bool) ([]int, error)
	// Decode converts ids to text. BOS and EOS contribute nothing. It is an error
	// for an id to be out of range.
	Decode(ids []int) (string, error)
	// Piece returns the bytes id contributes to the text when it follows prev
	// (prev = -1 at the start of a sequence); for streaming. The result is a fresh
	// slice that the caller may keep or modify.
	Piece(prev, id int) ([]byte, error)
	// VocabSize returns the number of ids.
	VocabSize() int
	// BOS returns the beginning-of-sequence id, or -1 if there is none.
	BOS() int
	// EOS returns the end-of-sequence id, or -1 if there is none.
	EOS() int
	// AddBOS reports whether the model expects prompts to start with BOS.
	AddBOS() bool
	// Kind returns the tokenizer.model name: "llama2c" or "bytes".
	Kind() string
}

// Tokenizer kinds, the values of the `tokenizer.model` metadata key.
const (
	// KindLlama2c is SentencePiece BPE with scores, encoded as llama2.c does.
	KindLlama2c = "llama2c"
	// KindBytes is the byte-level tokenizer of synthetic models.
	KindBytes = "bytes"
)

// Metadata keys read by FromMetadata.
const (
	// KeyModel is the metadata key naming the tokenizer kind.
	KeyModel = "tokenizer.model"
	// KeyTokens is the metadata key holding the piece of every id.
	KeyTokens = "tokenizer.tokens"
	// KeyScores is the metadata key holding the merge score of every id.
	KeyScores = "tokenizer.scores"
	// KeyBOS is the metadata key of the BOS id (-1 when absent).
	KeyBOS = "tokenizer.bos_id"
	// KeyEOS is the metadata key of the EOS id (-1 when absent).
	KeyEOS = "tokenizer.eos_id"
	// KeyUnk is the metadata key of the unknown-piece id (-1 when absent).
	KeyUnk = "tokenizer.unk_id"
	// KeyAddBOS is the metadata key of the prompt BOS policy.
	KeyAddBOS = "tokenizer.add_bos"
)

// Limits on tokenizer metadata; anything larger is rejected as corrupt.
const (
	// MaxVocabSize is the largest vocabulary FromMetadata accepts.
	MaxVocabSize = 1 << 22
	// MaxPieceLen is the longest piece, in bytes, FromMetadata accepts.
	MaxPieceLen = 4096
)

// ErrNoTokenizer is returned by FromMetadata when the metadata has no
// `tokenizer.model` key.
var ErrNoTokenizer = errors.New("tokenizer: metadata has no tokenizer.model key")

// FromMetadata builds the tokenizer described by the `tokenizer.*` keys of m. It
// returns ErrNoTokenizer when there is no `tokenizer.model` key, and an error when the
// model is unknown or its keys are missing, mistyped or inconsistent.
//
// Missing `tokenizer.bos_id`, `tokenizer.eos_id` and `tokenizer.unk_id` keys mean -1
// (none); a missing `tokenizer.add_bos` means true exactly when there is a BOS id.
func FromMetadata(m format.Metadata) (Tokenizer, error) {
	kind, ok, err := m.String(KeyModel)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !ok {
		return nil, ErrNoTokenizer
	}
	c, err := readCommon(m)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindLlama2c:
		scores, ok, err := m.Floats(KeyScores)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("tokenizer: llama2c: missing %s", KeyScores)
		}
		return newLlama2c(c, scores)
	case KindBytes:
		return newBytes(c)
	}
	return nil, fmt.Errorf("tokenizer: unknown %s %q", KeyModel, kind)
}

// common holds the metadata shared by every kind, already validated.
type common struct {
	tokens        []string
	bos, eos, unk int
	addBOS        bool
}

func readCommon(m format.Metadata) (common, error) {
	var c common
	tokens, ok, err := m.Strings(KeyTokens)
	if err != nil {
		return c, fmt.Errorf("tokenizer: %w", err)
	}
	if !ok {
		return c, fmt.Errorf("tokenizer: missing %s", KeyTokens)
	}
	if len(tokens) == 0 || len(tokens) > MaxVocabSize {
		return c, fmt.Errorf("tokenizer: vocabulary size %d out of range 1..%d", len(tokens), MaxVocabSize)
	}
	for i, t := range tokens {
		if len(t) > MaxPieceLen {
			return c, fmt.Errorf("tokenizer: piece %d is %d bytes long (max %d)", i, len(t), MaxPieceLen)
		}
	}
	c.tokens = tokens
	for _, k := range []struct {
		key string
		dst *int
	}{{KeyBOS, &c.bos}, {KeyEOS, &c.eos}, {KeyUnk, &c.unk}} {
		v, ok, err := m.Int(k.key)
		if err != nil {
			return c, fmt.Errorf("tokenizer: %w", err)
		}
		if !ok {
			v = -1
		}
		if v < -1 || v >= len(tokens) {
			return c, fmt.Errorf("tokenizer: %s = %d out of range for a vocabulary of %d", k.key, v, len(tokens))
		}
		*k.dst = v
	}
	addBOS, ok, err := m.Bool(KeyAddBOS)
	if err != nil {
		return c, fmt.Errorf("tokenizer: %w", err)
	}
	if !ok {
		addBOS = c.bos >= 0
	}
	if addBOS && c.bos < 0 {
		return c, fmt.Errorf("tokenizer: %s is true but there is no BOS id", KeyAddBOS)
	}
	c.addBOS = addBOS
	return c, nil
}

func (c *common) VocabSize() int { return len(c.tokens) }
func (c *common) BOS() int       { return c.bos }
func (c *common) EOS() int       { return c.eos }
func (c *common) AddBOS() bool   { return c.addBOS }

// wrap adds BOS/EOS around ids produced by body, checking that they exist.
func (c *common) checkSpecials(addBOS, addEOS bool) error {
	if addBOS && c.bos < 0 {
		return errors.New("tokenizer: BOS requested but the tokenizer has no BOS id")
	}
	if addEOS && c.eos < 0 {
		return errors.New("tokenizer: EOS requested but the tokenizer has no EOS id")
	}
	return nil
}

func (c *common) checkID(id int) error {
	if id < 0 || id >= len(c.tokens) {
		return fmt.Errorf("tokenizer: id %d out of range [0, %d)", id, len(c.tokens))
	}
	return nil
}
