package tokenizer

import (
	"fmt"

	"github.com/lmrun/lmrun/format"
)

// byteLevel is the "bytes" tokenizer: ids 0..255 are the single bytes 0..255, and
// Encode maps every byte of the text to its id, with no merges. Ids from 256 on
// (BOS, EOS, padding pieces) only come out of a model; Decode writes their pieces,
// except BOS and EOS, which decode to nothing.
type byteLevel struct {
	common
}

func newBytes(c common) (*byteLevel, error) {
	if len(c.tokens) < 256 {
		return nil, fmt.Errorf("tokenizer: bytes: vocabulary of %d is smaller than 256", len(c.tokens))
	}
	for b := range 256 {
		if p := c.tokens[b]; len(p) != 1 || p[0] != byte(b) {
			return nil, fmt.Errorf("tokenizer: bytes: piece of id %d is %q, want the byte %#02x", b, p, b)
		}
	}
	for name, id := range map[string]int{"bos": c.bos, "eos": c.eos} {
		if id >= 0 && id < 256 {
			return nil, fmt.Errorf("tokenizer: bytes: %s id %d is a byte id", name, id)
		}
	}
	return &byteLevel{common: c}, nil
}

// Kind returns "bytes".
func (t *byteLevel) Kind() string { return KindBytes }

// Encode returns the id of every byte of text.
func (t *byteLevel) Encode(text string, addBOS, addEOS bool) ([]int, error) {
	if err := t.checkSpecials(addBOS, addEOS); err != nil {
		return nil, err
	}
	out := make([]int, 0, len(text)+2)
	if addBOS {
		out = append(out, t.bos)
	}
	for i := 0; i < len(text); i++ {
		out = append(out, int(text[i]))
	}
	if addEOS {
		out = append(out, t.eos)
	}
	return out, nil
}

func (t *byteLevel) appendPiece(dst []byte, id int) []byte {
	if id == t.bos || id == t.eos {
		return dst
	}
	return append(dst, t.tokens[id]...)
}

// Decode concatenates the pieces of ids.
func (t *byteLevel) Decode(ids []int) (string, error) {
	var dst []byte
	for _, id := range ids {
		if err := t.checkID(id); err != nil {
			return "", err
		}
		dst = t.appendPiece(dst, id)
	}
	return string(dst), nil
}

// Piece returns the piece of id; prev does not matter.
func (t *byteLevel) Piece(prev, id int) ([]byte, error) {
	if err := t.checkID(id); err != nil {
		return nil, err
	}
	return t.appendPiece(nil, id), nil
}

// BytesMetadata returns the metadata of a "bytes" tokenizer with vocabSize ids, for
// synthetic (random-weight) models: ids 0..255 are the bytes 0..255, 256 is
// "<|bos|>" (BOS), 257 is "<|eos|>" (EOS), and every id from 258 on gets a
// pseudo-random word-like piece, a space followed by 2 to 6 lowercase letters, so that
// sampling a random model prints something that looks like words. The pieces depend
// only on vocabSize and seed. add_bos is true and there is no unk id.
// BytesMetadata panics if vocabSize < 258 or vocabSize > MaxVocabSize.
func BytesMetadata(vocabSize int, seed uint64) format.Metadata {
	if vocabSize < 258 || vocabSize > MaxVocabSize {
		panic(fmt.Sprintf("tokenizer: BytesMetadata: vocabulary size %d out of range 258..%d", vocabSize, MaxVocabSize))
	}
	tokens := make([]string, vocabSize)
	for b := range 256 {
		tokens[b] = string([]byte{byte(b)})
	}
	tokens[256] = "<|bos|>"
	tokens[257] = "<|eos|>"
	const consonants = "bcdfghjklmnprstvwz"
	const vowels = "aeiou"
	rng := splitmix64{state: seed}
	word := make([]byte, 0, 7)
	for i := 258; i < vocabSize; i++ {
		n := 2 + int(rng.next()%5)
		vowel := rng.next()%3 == 0 // words mostly start with a consonant
		word = append(word[:0], ' ')
		for range n {
			r := rng.next()
			if vowel {
				word = append(word, vowels[r%uint64(len(vowels))])
			} else {
				word = append(word, consonants[r%uint64(len(consonants))])
			}
			vowel = !vowel
		}
		tokens[i] = string(word)
	}
	return format.Metadata{
		KeyModel:  KindBytes,
		KeyTokens: tokens,
		KeyBOS:    int64(256),
		KeyEOS:    int64(257),
		KeyUnk:    int64(-1),
		KeyAddBOS: true,
	}
}

// splitmix64 is a tiny deterministic generator (Steele et al.), fixed here so that
// BytesMetadata never changes with the Go version.
type splitmix64 struct{ state uint64 }

func (s *splitmix64) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	z := s.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
