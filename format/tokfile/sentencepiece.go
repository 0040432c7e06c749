package tokfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/lmrun/lmrun/format"
)

// SentencePiece's ModelProto (sentencepiece_model.proto), the fields read here:
//
//	ModelProto:     1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//	SentencePiece:  1 piece (string), 2 score (float), 3 type (enum, default NORMAL = 1)
//	TrainerSpec:    3 model_type (UNIGRAM = 1 default, BPE = 2, WORD = 3, CHAR = 4),
//	                24 treat_whitespace_as_suffix, 35 byte_fallback,
//	                40 unk_id (0), 41 bos_id (1), 42 eos_id (2), 43 pad_id (-1)
//	NormalizerSpec: 1 name, 2 precompiled_charsmap, 3 add_dummy_prefix (true),
//	                4 remove_extra_whitespaces (true), 5 escape_whitespaces (true)
//
// Every other field is skipped by its wire type.

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// pb reads protobuf fields from a byte slice, checking every bound.
type pb struct {
	b   []byte
	off int
}

var errTruncated = errors.New("truncated protobuf")

func (p *pb) varint() (uint64, error) {
	var v uint64
	for shift := 0; shift < 70; shift += 7 {
		if p.off >= len(p.b) {
			return 0, errTruncated
		}
		c := p.b[p.off]
		p.off++
		if shift == 63 && c > 1 {
			return 0, errors.New("protobuf varint overflows 64 bits")
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("protobuf varint longer than 10 bytes")
}

// next returns the next field's number and wire type.
func (p *pb) next() (int, int, error) {
	k, err := p.varint()
	if err != nil {
		return 0, 0, err
	}
	num, wire := k>>3, int(k&7)
	if num == 0 || num > 1<<29-1 {
		return 0, 0, fmt.Errorf("protobuf field number %d", num)
	}
	return int(num), wire, nil
}

func (p *pb) bytes() ([]byte, error) {
	n, err := p.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(p.b)-p.off) {
		return nil, fmt.Errorf("protobuf field of %d bytes with %d left", n, len(p.b)-p.off)
	}
	v := p.b[p.off : p.off+int(n)]
	p.off += int(n)
	return v, nil
}

func (p *pb) fixed32() (uint32, error) {
	if len(p.b)-p.off < 4 {
		return 0, errTruncated
	}
	v := binary.LittleEndian.Uint32(p.b[p.off:])
	p.off += 4
	return v, nil
}

func (p *pb) skip(wire int) error {
	switch wire {
	case wireVarint:
		_, err := p.varint()
		return err
	case wireFixed64:
		if len(p.b)-p.off < 8 {
			return errTruncated
		}
		p.off += 8
		return nil
	case wireBytes:
		_, err := p.bytes()
		return err
	case wireFixed32:
		_, err := p.fixed32()
		return err
	}
	return fmt.Errorf("protobuf wire type %d is not supported", wire)
}

// want checks a field's wire type.
func want(field string, got, w int) error {
	if got != w {
		return fmt.Errorf("%s: wire type %d, want %d", field, got, w)
	}
	return nil
}

// spPiece is one SentencePiece.
type spPiece struct {
	piece string
	score float32
	typ   int64
}

func parsePiece(b []byte) (spPiece, error) {
	sp := spPiece{typ: 1}
	p := pb{b: b}
	for p.off < len(p.b) {
		num, wire, err := p.next()
		if err != nil {
			return sp, err
		}
		switch num {
		case 1:
			if err := want("piece", wire, wireBytes); err != nil {
				return sp, err
			}
			v, err := p.bytes()
			if err != nil {
				return sp, err
			}
			sp.piece = string(v)
		case 2:
			if err := want("score", wire, wireFixed32); err != nil {
				return sp, err
			}
			v, err := p.fixed32()
			if err != nil {
				return sp, err
			}
			sp.score = math.Float32frombits(v)
		case 3:
			if err := want("type", wire, wireVarint); err != nil {
				return sp, err
			}
			v, err := p.varint()
			if err != nil {
				return sp, err
			}
			if v < 1 || v > 6 {
				return sp, fmt.Errorf("piece type %d", v)
			}
			sp.typ = int64(v)
		default:
			if err := p.skip(wire); err != nil {
				return sp, err
			}
		}
	}
	return sp, nil
}

// varintFields reads the varint fields of a message whose numbers are in dst,
// skipping the rest, and the bytes fields whose numbers are in str.
func varintFields(b []byte, dst map[int]*int64, str map[int]*string) error {
	p := pb{b: b}
	for p.off < len(p.b) {
		num, wire, err := p.next()
		if err != nil {
			return err
		}
		if d, ok := dst[num]; ok {
			if err := want(fmt.Sprintf("field %d", num), wire, wireVarint); err != nil {
				return err
			}
			v, err := p.varint()
			if err != nil {
				return err
			}
			*d = int64(v) // int32 fields: negative values are 10-byte two's complement
			continue
		}
		if s, ok := str[num]; ok {
			if err := want(fmt.Sprintf("field %d", num), wire, wireBytes); err != nil {
				return err
			}
			v, err := p.bytes()
			if err != nil {
				return err
			}
			*s = string(v)
			continue
		}
		if err := p.skip(wire); err != nil {
			return err
		}
	}
	return nil
}

// maxPieces bounds the vocabulary of a SentencePiece model.
const maxPieces = 1 << 22

// ParseSentencePiece converts a SentencePiece model (a serialized ModelProto, the
// tokenizer.model file) to tokenizer metadata: model type BPE becomes
// "sentencepiece_bpe", UNIGRAM becomes "unigram", with the pieces as stored ("▁" for
// spaces), their scores and types, the special ids of the trainer spec, byte_fallback,
// and the normalizer spec (name, precompiled charsmap, add_dummy_prefix,
// remove_extra_whitespaces). BOS is added to prompts when the model has a BOS id
// (Llama's convention; T5-style models have none).
func ParseSentencePiece(b []byte) (format.Metadata, error) {
	var pieces []spPiece
	var trainer, normSpec []byte
	p := pb{b: b}
	for p.off < len(p.b) {
		num, wire, err := p.next()
		if err != nil {
			return nil, fmt.Errorf("sentencepiece: %w", err)
		}
		switch num {
		case 1, 2, 3:
			if err := want("ModelProto field", wire, wireBytes); err != nil {
				return nil, fmt.Errorf("sentencepiece: %w", err)
			}
			v, err := p.bytes()
			if err != nil {
				return nil, fmt.Errorf("sentencepiece: %w", err)
			}
			switch num {
			case 1:
				if len(pieces) >= maxPieces {
					return nil, fmt.Errorf("sentencepiece: more than %d pieces", maxPieces)
				}
				sp, err := parsePiece(v)
				if err != nil {
					return nil, fmt.Errorf("sentencepiece: piece %d: %w", len(pieces), err)
				}
				pieces = append(pieces, sp)
			case 2:
				trainer = v
			case 3:
				normSpec = v
			}
		default:
			if err := p.skip(wire); err != nil {
				return nil, fmt.Errorf("sentencepiece: %w", err)
			}
		}
	}
	if len(pieces) == 0 {
		return nil, errors.New("sentencepiece: no pieces")
	}
	modelType, suffix, fallback := int64(1), int64(0), int64(0)
	unk, bos, eos, pad := int64(0), int64(1), int64(2), int64(-1)
	if err := varintFields(trainer, map[int]*int64{3: &modelType, 24: &suffix, 35: &fallback, 40: &unk, 41: &bos, 42: &eos, 43: &pad}, nil); err != nil {
		return nil, fmt.Errorf("sentencepiece: trainer_spec: %w", err)
	}
	name, charsmap := "", ""
	addPrefix, removeWS, escape := int64(1), int64(1), int64(1)
	if err := varintFields(normSpec, map[int]*int64{3: &addPrefix, 4: &removeWS, 5: &escape}, map[int]*string{1: &name, 2: &charsmap}); err != nil {
		return nil, fmt.Errorf("sentencepiece: normalizer_spec: %w", err)
	}
	if suffix != 0 {
		return nil, errors.New("sentencepiece: treat_whitespace_as_suffix is not supported")
	}
	if escape == 0 {
		return nil, errors.New("sentencepiece: escape_whitespaces false is not supported")
	}
	var kind string
	switch modelType {
	case 1:
		kind = "unigram"
	case 2:
		kind = "sentencepiece_bpe"
	default:
		return nil, fmt.Errorf("sentencepiece: model type %d is not supported (UNIGRAM = 1 and BPE = 2 are)", modelType)
	}
	n := int64(len(pieces))
	tokens := make([]string, n)
	scores := make([]float32, n)
	types := make([]int64, n)
	for i, sp := range pieces {
		tokens[i], scores[i], types[i] = sp.piece, sp.score, sp.typ
	}
	ids := map[string]*int64{"unk_id": &unk, "bos_id": &bos, "eos_id": &eos, "pad_id": &pad}
	for name, id := range ids {
		*id = int64(int32(*id))
		if *id < -1 || *id >= n {
			return nil, fmt.Errorf("sentencepiece: %s %d out of range for %d pieces", name, *id, n)
		}
	}
	md := format.Metadata{
		"tokenizer.model":                    kind,
		"tokenizer.tokens":                   tokens,
		"tokenizer.scores":                   scores,
		"tokenizer.token_type":               types,
		"tokenizer.unk_id":                   unk,
		"tokenizer.bos_id":                   bos,
		"tokenizer.eos_id":                   eos,
		"tokenizer.pad_id":                   pad,
		"tokenizer.byte_fallback":            fallback != 0,
		"tokenizer.normalizer":               name,
		"tokenizer.add_space_prefix":         addPrefix != 0,
		"tokenizer.remove_extra_whitespaces": removeWS != 0,
	}
	if charsmap != "" {
		md["tokenizer.precompiled_charsmap"] = charsmap
	}
	md["tokenizer.add_bos"] = bos >= 0
	return md, nil
}
