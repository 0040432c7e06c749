// Package tokenizer converts between text and token ids for the tokenizers a checkpoint
// can describe in its `tokenizer.*` metadata (format/SPEC.md). Tokenizers are
// immutable and safe for concurrent use; [Stream] turns generated ids into text
// incrementally without ever splitting a UTF-8 sequence.
//
// # llama2c
//
// "llama2c" is SentencePiece BPE with a score per piece, encoded exactly as
// karpathy/llama2.c run.c encode() does:
//
//  1. If the text is not empty, the id of the " " piece comes first (SentencePiece's
//     dummy prefix; pieces store "▁" as a space). A vocabulary without " " gets none.
//  2. The text is cut as run.c cuts it: a byte plus at most three following
//     continuation bytes, which for valid UTF-8 is one code point. A group that is a
//     piece becomes its id; otherwise every byte b of it becomes its byte-fallback
//     id: the id of the piece "<0xXX>" (looked up by name; for llama2.c exports these
//     are ids 3..258, i.e. run.c's b+3), or, when there is no such piece and id 3+b
//     is the raw one-byte piece b, 3+b. If a byte has neither, the whole group
//     becomes one unk id, and Encode fails when there is no unk id either.
//  3. Then, as long as some adjacent pair concatenates to a piece scoring above
//     -1e10, the pair giving the highest-scoring piece is merged (the leftmost on
//     ties). Pieces are concatenated as stored, so byte-fallback ids take part as
//     their literal "<0xXX>", as in run.c.
//
// The one deliberate difference from run.c: BOS is added after merging, so it never
// takes part in a merge (in run.c it could only if "\n<s>\n" followed by a piece were
// itself a piece). On the test data (the Llama 2 and stories260K vocabularies, 26
// tricky strings each and 100 kB of Shakespeare) this gives exactly the ids
// SentencePiece itself gives.
//
// Decoding follows run.c decode(): BOS and EOS give nothing, a piece right after BOS
// loses one leading space (the dummy prefix), "<0xXX>" pieces give the raw byte, and
// every other piece (unk included) gives its stored bytes. So, for vocabularies like
// llama2.c's (a " " piece and the 256 byte pieces, none of which merges can form),
// Decode(Encode(s, true, false)) == s for every byte string s, valid UTF-8 or not.
//
// # bytes
//
// "bytes" is a byte-level tokenizer for synthetic models: ids 0..255 are the bytes,
// Encode maps each byte of the text to its id, Decode concatenates pieces (BOS and
// EOS give nothing). See [BytesMetadata].
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
	// MaxPieceLen is the longest piece, in bytes, FromMetadata accepts (Llama 2's
	// longest is 27; building the llama2c merge table costs the square of each
	// piece's length).
	MaxPieceLen = 512
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

// VocabSize returns the number of ids.
func (c *common) VocabSize() int { return len(c.tokens) }

// BOS returns the beginning-of-sequence id, or -1.
func (c *common) BOS() int { return c.bos }

// EOS returns the end-of-sequence id, or -1.
func (c *common) EOS() int { return c.eos }

// AddBOS reports whether prompts should start with BOS.
func (c *common) AddBOS() bool { return c.addBOS }

// checkSpecials checks that the BOS and EOS asked for exist.
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
