package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/lmrun/lmrun/format"
)

// spDecoder decodes ids as SentencePiece does: control pieces (BOS, EOS) give
// nothing, the unk piece gives " ⁇ " (SentencePiece's unk_surface), byte pieces
// their byte, and other pieces their text with "▁" as a space, a leading space
// dropped at the start of the text or after a control piece (the dummy prefix).
type spDecoder struct {
	types   []TokenType
	surface []string // every piece with "▁" replaced by " "
	byteOf  []int16  // the byte of a byte piece, -1 for other pieces
	strip   bool     // drop the dummy prefix (add_dummy_prefix or remove_extra_whitespaces)
}

// unkSurface is what SentencePiece decodes the unk piece to.
const unkSurface = " \u2047 "

func newSPDecoder(tokens []string, types []TokenType, strip bool) spDecoder {
	d := spDecoder{types: types, surface: make([]string, len(tokens)), byteOf: make([]int16, len(tokens)), strip: strip}
	for i, p := range tokens {
		d.byteOf[i] = -1
		switch types[i] {
		case TypeByte:
			if b, ok := parseByteToken(p); ok {
				d.byteOf[i] = int16(b)
			}
		case TypeNormal, TypeUserDefined, TypeUnused:
			d.surface[i] = strings.ReplaceAll(p, spaceSymbol, " ")
		}
	}
	return d
}

func (d *spDecoder) appendPiece(dst []byte, prev, id int) []byte {
	switch d.types[id] {
	case TypeControl:
		return dst
	case TypeUnknown:
		return append(dst, unkSurface...)
	case TypeByte:
		if b := d.byteOf[id]; b >= 0 {
			return append(dst, byte(b))
		}
		return dst
	}
	p := d.surface[id]
	if d.strip && (prev < 0 || d.types[prev] == TypeControl) && len(p) > 0 && p[0] == ' ' {
		p = p[1:]
	}
	return append(dst, p...)
}

// inferTypes returns the SentencePiece types of a vocabulary stored without them:
// the unk id is unknown, BOS, EOS and pad are control, "<0xXX>" pieces are bytes.
func inferTypes(c *common) []TokenType {
	types := make([]TokenType, len(c.tokens))
	for i, p := range c.tokens {
		types[i] = TypeNormal
		if _, ok := parseByteToken(p); ok {
			types[i] = TypeByte
		}
	}
	for _, id := range []int{c.bos, c.eos, c.pad} {
		if id >= 0 {
			types[id] = TypeControl
		}
	}
	if c.unk >= 0 {
		types[c.unk] = TypeUnknown
	}
	return types
}

// readSPTypes returns the token types, inferred when absent, and the byte_fallback
// setting (default: the vocabulary has a byte piece for every byte).
func readSPTypes(c *common, m format.Metadata) ([]TokenType, bool, error) {
	types, err := readTypes(m, len(c.tokens))
	if err != nil {
		return nil, false, err
	}
	if types == nil {
		types = inferTypes(c)
	}
	var have [256]bool
	n := 0
	for i, p := range c.tokens {
		if b, ok := parseByteToken(p); ok && types[i] == TypeByte && !have[b] {
			have[b] = true
			n++
		}
	}
	fallback, err := optBool(m, KeyByteFallback, n == 256)
	return types, fallback, err
}

// sentencePieceBPE is the "sentencepiece_bpe" kind: SentencePiece's BPE model
// (bpe_model.cc). The text is normalized (normalizer), then split into characters
// and merged as in llama2c — the adjacent pair whose concatenation is the
// highest-scoring piece first, leftmost on ties — over the normal, user-defined and
// unused pieces only; a character left without a piece becomes its UTF-8 bytes'
// byte pieces with byte fallback, else unk, and consecutive unks become one, as
// SentencePiece reports them. User-defined pieces merge like the others rather than
// being matched whole first, and unused pieces are not re-split (neither occurs in
// the vocabularies lmrun has been checked against).
type sentencePieceBPE struct {
	core *llama2c // over the pieces with "▁" as " "
	spDecoder
	tokens []string // as stored
	norm   normalizer
	// prefixUnlessSpace: the dummy prefix is not added to text that starts with
	// a space (Hugging Face's Metaspace pre-tokenizer).
	prefixUnlessSpace bool
	added             addedTokens
}

func newSentencePieceBPE(c common, m format.Metadata) (*sentencePieceBPE, error) {
	scores, err := requireFloats(m, KindSentencePieceBPE, KeyScores)
	if err != nil {
		return nil, err
	}
	types, fallback, err := readSPTypes(&c, m)
	if err != nil {
		return nil, err
	}
	n, err := readNormalizer(m, true, false)
	if err != nil {
		return nil, err
	}
	unlessSpace, err := optBool(m, KeyPrefixUnlessSpace, false)
	if err != nil {
		return nil, err
	}
	if unlessSpace && !n.identity() {
		return nil, fmt.Errorf("tokenizer: sentencepiece_bpe: %s needs the identity normalizer", KeyPrefixUnlessSpace)
	}
	added, err := newAddedTokens(c.tokens, types, m)
	if err != nil {
		return nil, err
	}
	inner := c
	inner.tokens = make([]string, len(c.tokens))
	for i, p := range c.tokens {
		inner.tokens[i] = p
		if types[i] == TypeNormal || types[i] == TypeUserDefined || types[i] == TypeUnused {
			inner.tokens[i] = strings.ReplaceAll(p, spaceSymbol, " ")
		}
	}
	core, err := newBPECore(inner, scores, types, fallback)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: sentencepiece_bpe: %w", err)
	}
	return &sentencePieceBPE{
		core:      core,
		spDecoder: newSPDecoder(c.tokens, types, n.addPrefix || n.removeWS),
		tokens:    c.tokens,
		norm:      n,

		prefixUnlessSpace: unlessSpace,
		added:             added,
	}, nil
}

// Kind returns "sentencepiece_bpe".
func (t *sentencePieceBPE) Kind() string { return KindSentencePieceBPE }

// VocabSize returns the number of ids.
func (t *sentencePieceBPE) VocabSize() int { return len(t.tokens) }

// BOS returns the beginning-of-sequence id, or -1.
func (t *sentencePieceBPE) BOS() int { return t.core.bos }

// EOS returns the end-of-sequence id, or -1.
func (t *sentencePieceBPE) EOS() int { return t.core.eos }

// Unk returns the unknown-piece id, or -1.
func (t *sentencePieceBPE) Unk() int { return t.core.unk }

// Pad returns the padding id, or -1.
func (t *sentencePieceBPE) Pad() int { return t.core.pad }

// AddBOS reports whether prompts should start with BOS.
func (t *sentencePieceBPE) AddBOS() bool { return t.core.addBOS }

// Token returns the stored vocabulary entry of id ("▁" for spaces).
func (t *sentencePieceBPE) Token(id int) (string, error) {
	if err := t.core.checkID(id); err != nil {
		return "", err
	}
	return t.tokens[id], nil
}

// Encode normalizes text and merges it (see the type's notes); user-defined
// pieces in the text are matched whole first.
func (t *sentencePieceBPE) Encode(text string, addBOS, addEOS bool) ([]int, error) {
	if t.added.any(false) {
		return t.encodeAdded(text, addBOS, addEOS, false)
	}
	return t.encode(text, t.norm.addPrefix, addBOS, addEOS)
}

// encodeAdded encodes text with its added tokens matched whole. Each stretch of
// text between them gets the space prefix as the reference of the file does:
// Hugging Face's Metaspace (prefixUnlessSpace) only to the start of the text,
// llama.cpp's SentencePiece tokenizer to every stretch.
func (t *sentencePieceBPE) encodeAdded(text string, addBOS, addEOS, special bool) ([]int, error) {
	if err := t.core.checkSpecials(addBOS, addEOS); err != nil {
		return nil, err
	}
	var out []int
	if addBOS {
		out = append(out, t.core.bos)
	}
	err := t.added.split(text, special, func(seg string, first bool) error {
		ids, err := t.encode(seg, t.norm.addPrefix && (first || !t.prefixUnlessSpace), false, false)
		out = append(out, ids...)
		return err
	}, func(id int) error {
		out = append(out, id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if addEOS {
		out = append(out, t.core.eos)
	}
	return out, nil
}

// encode normalizes text, with the space prefix if prefix, and merges it.
func (t *sentencePieceBPE) encode(text string, prefix, addBOS, addEOS bool) ([]int, error) {
	n := t.norm
	n.addPrefix = prefix
	var s string
	if n.identity() && utf8.ValidString(text) && !strings.Contains(text, spaceSymbol) {
		s = text // the normalizer would only add the prefix
		if n.addPrefix && s != "" {
			s = " " + s
		}
	} else {
		s = strings.ReplaceAll(n.normalize(text), spaceSymbol, " ")
	}
	// The identity normalizer maps the text's first space (or "▁") to the space
	// after the prefix.
	if t.prefixUnlessSpace && n.addPrefix && strings.HasPrefix(s, "  ") {
		s = s[1:]
	}
	ids, err := t.core.Encode(s, addBOS, addEOS)
	if err != nil {
		return nil, err
	}
	return mergeUnks(ids, t.core.unk), nil
}

// mergeUnks replaces every run of unk ids by one, in place.
func mergeUnks(ids []int, unk int) []int {
	if unk < 0 {
		return ids
	}
	out := ids[:0]
	prev := -1
	for _, id := range ids {
		if id != unk || prev != unk {
			out = append(out, id)
		}
		prev = id
	}
	return out
}

// Decode converts ids to text as SentencePiece does (see spDecoder).
func (t *sentencePieceBPE) Decode(ids []int) (string, error) {
	return t.core.decodeAll(ids, t.appendPiece)
}

// Piece returns the bytes id contributes after prev.
func (t *sentencePieceBPE) Piece(prev, id int) ([]byte, error) {
	if err := t.core.checkID(id); err != nil {
		return nil, err
	}
	if prev >= len(t.types) {
		prev = -1
	}
	return t.appendPiece(nil, prev, id), nil
}
