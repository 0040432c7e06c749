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
	// string is accepted; invalid UTF-8 is handled as the kind's reference does
	// (byte-encoded, byte fallback, or U+FFFD then unk). Special tokens written in
	// the text ("<|endoftext|>", "<s>") are ordinary text, never their ids
	// ([EncodeSpecial] parses them); user-defined entries (Hugging Face's
	// non-special added tokens) are matched whole, as their references do.
	Encode(text string, addBOS, addEOS bool) ([]int, error)
	// Decode converts ids to text. BOS and EOS contribute nothing. It is an error
	// for an id to be out of range. Byte pieces give raw bytes, so the result may
	// be invalid UTF-8 when ids split a character ([Stream] replaces those bytes).
	Decode(ids []int) (string, error)
	// Piece returns the bytes id contributes to the text when it follows prev
	// (prev = -1 at the start of a sequence); for streaming. The result is a fresh
	// slice that the caller may keep or modify.
	Piece(prev, id int) ([]byte, error)
	// Token returns the vocabulary entry of id as stored in the metadata (for
	// display: "▁He", "Ġworld", "<0x0A>").
	Token(id int) (string, error)
	// VocabSize returns the number of ids.
	VocabSize() int
	// BOS returns the beginning-of-sequence id, or -1 if there is none.
	BOS() int
	// EOS returns the end-of-sequence id, or -1 if there is none.
	EOS() int
	// Unk returns the id unknown text maps to, or -1 if there is none.
	Unk() int
	// Pad returns the padding id, or -1 if there is none.
	Pad() int
	// AddBOS reports whether the model expects prompts to start with BOS.
	AddBOS() bool
	// Kind returns the tokenizer.model name: one of the Kind constants.
	Kind() string
}

// Tokenizer kinds, the values of the `tokenizer.model` metadata key.
const (
	// KindLlama2c is SentencePiece BPE with scores, encoded as llama2.c does.
	KindLlama2c = "llama2c"
	// KindBytes is the byte-level tokenizer of synthetic models.
	KindBytes = "bytes"
	// KindGPT2 is byte-level BPE with ranked merges (GPT-2, RoBERTa, GPT-J, …).
	KindGPT2 = "gpt2"
	// KindSentencePieceBPE is a SentencePiece BPE model (Llama 2's tokenizer.model):
	// SentencePiece normalization, then merges by piece score.
	KindSentencePieceBPE = "sentencepiece_bpe"
	// KindUnigram is a Unigram language model (SentencePiece's default type):
	// SentencePiece normalization, then the Viterbi segmentation by piece log-probability.
	KindUnigram = "unigram"
	// KindWhitespace splits the text on Unicode white space and looks words up.
	KindWhitespace = "whitespace"
)

// Metadata keys read by FromMetadata (format/SPEC.md lists which kind reads which).
const (
	// KeyModel is the metadata key naming the tokenizer kind.
	KeyModel = "tokenizer.model"
	// KeyTokens is the metadata key holding the piece of every id.
	KeyTokens = "tokenizer.tokens"
	// KeyScores is the metadata key holding the score of every id (merge priority
	// for BPE, log-probability for Unigram).
	KeyScores = "tokenizer.scores"
	// KeyTokenType is the metadata key holding the type of every id, numbered as
	// SentencePiece and GGUF number them (the TokenType constants).
	KeyTokenType = "tokenizer.token_type"
	// KeyMerges is the metadata key holding the BPE merges of a gpt2 tokenizer, in
	// priority order, each "left right" in the byte-to-unicode alphabet.
	KeyMerges = "tokenizer.merges"
	// KeyPre is the metadata key naming a gpt2 tokenizer's pre-tokenizer.
	KeyPre = "tokenizer.pre"
	// KeyIgnoreMerges is the metadata key saying whether a gpt2 pre-token that is
	// itself a piece becomes that piece without merging (Hugging Face's BPE
	// ignore_merges); absent, it is true for the "llama-bpe" pre-tokenizer only.
	KeyIgnoreMerges = "tokenizer.ignore_merges"
	// KeyLStrip is the metadata key listing the ids of added tokens that take the
	// white space before them when matched in the text (Hugging Face's lstrip).
	KeyLStrip = "tokenizer.lstrip_ids"
	// KeyRStrip is the metadata key listing the ids of added tokens that take the
	// white space after them (Hugging Face's rstrip).
	KeyRStrip = "tokenizer.rstrip_ids"
	// KeyBOS is the metadata key of the BOS id (-1 when absent).
	KeyBOS = "tokenizer.bos_id"
	// KeyEOS is the metadata key of the EOS id (-1 when absent).
	KeyEOS = "tokenizer.eos_id"
	// KeyUnk is the metadata key of the unknown-piece id (-1 when absent).
	KeyUnk = "tokenizer.unk_id"
	// KeyPad is the metadata key of the padding id (-1 when absent).
	KeyPad = "tokenizer.pad_id"
	// KeyAddBOS is the metadata key of the prompt BOS policy.
	KeyAddBOS = "tokenizer.add_bos"
	// KeyNormalizer is the metadata key naming a SentencePiece normalization rule
	// set ("identity", "nfkc", "nmt_nfkc", "nfkc_cf", "nmt_nfkc_cf"); it is used only
	// when there is no KeyCharsmap.
	KeyNormalizer = "tokenizer.normalizer"
	// KeyCharsmap is the metadata key of SentencePiece's precompiled normalization
	// rules (NormalizerSpec.precompiled_charsmap, raw bytes).
	KeyCharsmap = "tokenizer.precompiled_charsmap"
	// KeyAddSpacePrefix is the metadata key of SentencePiece's add_dummy_prefix.
	KeyAddSpacePrefix = "tokenizer.add_space_prefix"
	// KeyPrefixUnlessSpace is the metadata key saying that a sentencepiece_bpe
	// tokenizer adds the space prefix only to text that does not start with a
	// space, as Hugging Face's Metaspace pre-tokenizer does (SentencePiece adds it
	// to every text). It needs the identity normalizer.
	KeyPrefixUnlessSpace = "tokenizer.prefix_unless_space"
	// KeyRemoveExtraWhitespaces is the metadata key of SentencePiece's
	// remove_extra_whitespaces.
	KeyRemoveExtraWhitespaces = "tokenizer.remove_extra_whitespaces"
	// KeyByteFallback is the metadata key saying whether characters without a piece
	// become their UTF-8 bytes' "<0xXX>" pieces (else unk).
	KeyByteFallback = "tokenizer.byte_fallback"
)

// TokenType is the type of a vocabulary entry, numbered as SentencePiece's
// ModelProto.SentencePiece.Type and GGUF's tokenizer.ggml.token_type.
type TokenType int64

// Token types.
const (
	TypeNormal      TokenType = 1 // an ordinary piece
	TypeUnknown     TokenType = 2 // the unk piece
	TypeControl     TokenType = 3 // BOS, EOS, …: never produced from text, decodes to nothing
	TypeUserDefined TokenType = 4 // always one piece when it occurs in the text
	TypeUnused      TokenType = 5 // never produced
	TypeByte        TokenType = 6 // "<0xXX>" byte-fallback piece
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

// ErrNoTokenizer is returned by FromMetadata when the metadata has neither a
// `tokenizer.model` nor a `tokenizer.ggml.model` key (or GGUF's "no_vocab").
var ErrNoTokenizer = errors.New("tokenizer: metadata has no tokenizer.model key")

// ErrUnsupported is wrapped by the errors of FromMetadata for a well-formed
// tokenizer lmrun does not implement (an unknown kind, GGUF model or pre-tokenizer),
// as opposed to corrupt metadata: a caller may then go on without a tokenizer.
var ErrUnsupported = errors.New("unsupported tokenizer")

// FromMetadata builds the tokenizer described by the `tokenizer.*` keys of m. It
// returns ErrNoTokenizer when there is no tokenizer, and an error when the model is
// unknown or its keys are missing, mistyped or inconsistent.
//
// GGUF keys copied verbatim (`tokenizer.ggml.model` "gpt2" or "llama", with
// `tokenizer.ggml.tokens`, `.scores`, `.merges`, `.token_type`, the special ids and
// `.add_bos_token`) are accepted when there is no `tokenizer.model` key; see
// [TranslateGGUF].
//
// Missing `tokenizer.bos_id`, `tokenizer.eos_id`, `tokenizer.unk_id` and
// `tokenizer.pad_id` keys mean -1 (none); a missing `tokenizer.add_bos` means true
// exactly when there is a BOS id.
func FromMetadata(m format.Metadata) (Tokenizer, error) {
	kind, ok, err := m.String(KeyModel)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !ok {
		if _, isGGUF := m[ggmlModel]; !isGGUF {
			return nil, ErrNoTokenizer
		}
		tm, err := TranslateGGUF(m)
		if err != nil {
			return nil, err
		}
		return FromMetadata(tm)
	}
	c, err := readCommon(m)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindLlama2c:
		scores, err := requireFloats(m, kind, KeyScores)
		if err != nil {
			return nil, err
		}
		return newLlama2c(c, scores)
	case KindBytes:
		return newBytes(c)
	case KindGPT2:
		return newGPT2(c, m)
	case KindSentencePieceBPE:
		return newSentencePieceBPE(c, m)
	case KindUnigram:
		return newUnigram(c, m)
	case KindWhitespace:
		return newWhitespace(c)
	}
	return nil, fmt.Errorf("tokenizer: %w: unknown %s %q", ErrUnsupported, KeyModel, kind)
}

func requireFloats(m format.Metadata, kind, key string) ([]float32, error) {
	v, ok, err := m.Floats(key)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("tokenizer: %s: missing %s", kind, key)
	}
	return v, nil
}

// optBool returns the bool at key, or def when it is absent.
func optBool(m format.Metadata, key string, def bool) (bool, error) {
	v, ok, err := m.Bool(key)
	if err != nil {
		return false, fmt.Errorf("tokenizer: %w", err)
	}
	if !ok {
		return def, nil
	}
	return v, nil
}

// common holds the metadata shared by every kind, already validated.
type common struct {
	tokens             []string
	bos, eos, unk, pad int
	addBOS             bool
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
	}{{KeyBOS, &c.bos}, {KeyEOS, &c.eos}, {KeyUnk, &c.unk}, {KeyPad, &c.pad}} {
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

// readTypes returns the token types at KeyTokenType (nil when absent), checked.
func readTypes(m format.Metadata, n int) ([]TokenType, error) {
	v, ok, err := m.Ints(KeyTokenType)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !ok {
		return nil, nil
	}
	if len(v) != n {
		return nil, fmt.Errorf("tokenizer: %d token types for %d tokens", len(v), n)
	}
	types := make([]TokenType, n)
	for i, x := range v {
		if x < int64(TypeNormal) || x > int64(TypeByte) {
			return nil, fmt.Errorf("tokenizer: token %d has type %d (want 1..6)", i, x)
		}
		types[i] = TokenType(x)
	}
	return types, nil
}

// VocabSize returns the number of ids.
func (c *common) VocabSize() int { return len(c.tokens) }

// BOS returns the beginning-of-sequence id, or -1.
func (c *common) BOS() int { return c.bos }

// EOS returns the end-of-sequence id, or -1.
func (c *common) EOS() int { return c.eos }

// Unk returns the unknown-piece id, or -1.
func (c *common) Unk() int { return c.unk }

// Pad returns the padding id, or -1.
func (c *common) Pad() int { return c.pad }

// AddBOS reports whether prompts should start with BOS.
func (c *common) AddBOS() bool { return c.addBOS }

// Token returns the stored vocabulary entry of id.
func (c *common) Token(id int) (string, error) {
	if err := c.checkID(id); err != nil {
		return "", err
	}
	return c.tokens[id], nil
}

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

// decodeAll concatenates piece(prev, id) over ids, checking every id.
func (c *common) decodeAll(ids []int, piece func(dst []byte, prev, id int) []byte) (string, error) {
	dst := make([]byte, 0, 4*len(ids))
	prev := -1
	for _, id := range ids {
		if err := c.checkID(id); err != nil {
			return "", err
		}
		dst = piece(dst, prev, id)
		prev = id
	}
	return string(dst), nil
}
