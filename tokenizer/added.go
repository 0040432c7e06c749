package tokenizer

import (
	"errors"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/lmrun/lmrun/format"
)

// Added tokens are the vocabulary entries matched whole in the text before it is
// normalized and split: user-defined entries (TypeUserDefined: Hugging Face's
// non-special added tokens, SentencePiece's user_defined pieces) always, control
// and unknown entries (BOS, EOS, "<|im_start|>", "[INST]", Hugging Face's special
// added tokens) only when the caller asks for special tokens to be parsed
// ([EncodeSpecial]), as llama_tokenize(parse_special) and Hugging Face's
// split_special_tokens=False do. Matching is leftmost, then longest. An entry listed
// in KeyLStrip (KeyRStrip) also takes the white space before (after) it, as Hugging
// Face's lstrip (rstrip) does. The text between matches is encoded on its own.

// addedToken is one entry matched whole.
type addedToken struct {
	text           string
	id             int
	special        bool // control or unknown: matched only when asked
	lstrip, rstrip bool
}

// addedTokens finds added tokens in text.
type addedTokens struct {
	byFirst *[256][]addedToken // by first byte, longest first; nil when there are none
	special bool               // some entry is special
	user    bool               // some entry is user-defined
}

// newAddedTokens collects the added tokens of a vocabulary from its types and the
// KeyLStrip and KeyRStrip lists of m.
func newAddedTokens(tokens []string, types []TokenType, m format.Metadata) (addedTokens, error) {
	var a addedTokens
	strip := map[int]*[2]bool{}
	for k, key := range []string{KeyLStrip, KeyRStrip} {
		ids, _, err := m.Ints(key)
		if err != nil {
			return a, fmt.Errorf("tokenizer: %w", err)
		}
		for _, id := range ids {
			if id < 0 || id >= int64(len(tokens)) {
				return a, fmt.Errorf("tokenizer: %s: id %d out of range", key, id)
			}
			if strip[int(id)] == nil {
				strip[int(id)] = new([2]bool)
			}
			strip[int(id)][k] = true
		}
	}
	for id, ty := range types {
		if tokens[id] == "" || (ty != TypeUserDefined && ty != TypeControl && ty != TypeUnknown) {
			continue
		}
		at := addedToken{text: tokens[id], id: id, special: ty != TypeUserDefined}
		if s := strip[id]; s != nil {
			at.lstrip, at.rstrip = s[0], s[1]
		}
		if a.byFirst == nil {
			a.byFirst = new([256][]addedToken)
		}
		a.byFirst[at.text[0]] = append(a.byFirst[at.text[0]], at)
		a.special = a.special || at.special
		a.user = a.user || !at.special
	}
	if a.byFirst == nil {
		return a, nil
	}
	for _, l := range a.byFirst {
		slices.SortStableFunc(l, func(x, y addedToken) int { return len(y.text) - len(x.text) })
	}
	return a, nil
}

// any reports whether encoding with special (or without) can match anything.
func (a *addedTokens) any(special bool) bool { return a.user || (special && a.special) }

// split calls text for each stretch of ordinary text (possibly empty, with its
// position among the pieces: first is true for the text at the start) and token for
// each added token found, in order.
func (a *addedTokens) split(s string, special bool, text func(seg string, first bool) error, token func(id int) error) error {
	start, first := 0, true
	for i := 0; i < len(s); i++ {
		cands := a.byFirst[s[i]]
		if len(cands) == 0 {
			continue
		}
		for _, c := range cands {
			if (c.special && !special) || len(s)-i < len(c.text) || s[i:i+len(c.text)] != c.text {
				continue
			}
			segEnd, next := i, i+len(c.text)
			if c.lstrip {
				for segEnd > start {
					r, n := utf8.DecodeLastRuneInString(s[start:segEnd])
					if !unicode.IsSpace(r) {
						break
					}
					segEnd -= n
				}
			}
			if c.rstrip {
				for next < len(s) {
					r, n := utf8.DecodeRuneInString(s[next:])
					if !unicode.IsSpace(r) {
						break
					}
					next += n
				}
			}
			if segEnd > start {
				if err := text(s[start:segEnd], first); err != nil {
					return err
				}
			}
			if err := token(c.id); err != nil {
				return err
			}
			first = false
			start, i = next, next-1
			break
		}
	}
	if start < len(s) {
		return text(s[start:], first)
	}
	return nil
}

// specialEncoder is implemented by the kinds that can parse special tokens.
type specialEncoder interface {
	encodeAdded(text string, addBOS, addEOS, special bool) ([]int, error)
}

// ErrNoSpecialParsing is returned by EncodeSpecial for a tokenizer kind that does
// not find special tokens in text.
var ErrNoSpecialParsing = errors.New("tokenizer: this kind does not parse special tokens in text")

// EncodeSpecial is tok.Encode, except that special tokens written in the text
// ("<|begin_of_text|>", "<|im_start|>", "[INST]", "<s>") become their ids. The
// gpt2 and sentencepiece_bpe kinds support it; others return ErrNoSpecialParsing.
func EncodeSpecial(tok Tokenizer, text string, addBOS, addEOS bool) ([]int, error) {
	s, ok := tok.(specialEncoder)
	if !ok {
		return nil, fmt.Errorf("%w (%s)", ErrNoSpecialParsing, tok.Kind())
	}
	return s.encodeAdded(text, addBOS, addEOS, true)
}
