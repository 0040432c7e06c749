package tokenizer

import (
	"fmt"
	"strings"
	"unicode"
)

// whitespace is the "whitespace" kind: the text is split on Unicode white space
// (the White_Space property; runs of it are one separator, leading and trailing white
// space is dropped), every word is looked up whole, and a word that is not in the
// vocabulary becomes unk (an error without one). Decode joins the words with one
// space (BOS, EOS and pad give nothing). Hugging Face's WordLevel model with the
// WhitespaceSplit pre-tokenizer.
type whitespace struct {
	common
	ids map[string]int32
}

func newWhitespace(c common) (*whitespace, error) {
	t := &whitespace{common: c, ids: make(map[string]int32, len(c.tokens))}
	for i, p := range c.tokens {
		if _, dup := t.ids[p]; !dup {
			t.ids[p] = int32(i)
		}
	}
	return t, nil
}

// Kind returns "whitespace".
func (t *whitespace) Kind() string { return KindWhitespace }

func isWhiteSpace(r rune) bool { return unicode.Is(unicode.White_Space, r) }

// Encode looks up every white-space separated word.
func (t *whitespace) Encode(text string, addBOS, addEOS bool) ([]int, error) {
	if err := t.checkSpecials(addBOS, addEOS); err != nil {
		return nil, err
	}
	var out []int
	if addBOS {
		out = append(out, t.bos)
	}
	for _, w := range strings.FieldsFunc(text, isWhiteSpace) {
		id, ok := t.ids[w]
		switch {
		case ok:
			out = append(out, int(id))
		case t.unk >= 0:
			out = append(out, t.unk)
		default:
			return nil, fmt.Errorf("tokenizer: whitespace: %q is not in the vocabulary and there is no unk id", w)
		}
	}
	if addEOS {
		out = append(out, t.eos)
	}
	return out, nil
}

func (t *whitespace) appendPiece(dst []byte, prev, id int) []byte {
	if id == t.bos || id == t.eos || id == t.pad {
		return dst
	}
	if prev >= 0 && prev != t.bos && prev != t.eos && prev != t.pad {
		dst = append(dst, ' ')
	}
	return append(dst, t.tokens[id]...)
}

// Decode joins the words of ids with single spaces.
func (t *whitespace) Decode(ids []int) (string, error) { return t.decodeAll(ids, t.appendPiece) }

// Piece returns the word of id, after a space unless it starts the text.
func (t *whitespace) Piece(prev, id int) ([]byte, error) {
	if err := t.checkID(id); err != nil {
		return nil, err
	}
	return t.appendPiece(nil, prev, id), nil
}
