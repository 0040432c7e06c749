package tokenizer

import (
	"fmt"
	"strings"

	"github.com/lmrun/lmrun/format"
)

// GGUF tokenizer keys, as llama.cpp writes them. A GGUF importer copies them into
// the checkpoint unchanged: ids arrive as ints, scores as floats, token types as ints.
const (
	ggmlModel    = "tokenizer.ggml.model"
	ggmlPre      = "tokenizer.ggml.pre"
	ggmlTokens   = "tokenizer.ggml.tokens"
	ggmlScores   = "tokenizer.ggml.scores"
	ggmlMerges   = "tokenizer.ggml.merges"
	ggmlTypes    = "tokenizer.ggml.token_type"
	ggmlBOS      = "tokenizer.ggml.bos_token_id"
	ggmlEOS      = "tokenizer.ggml.eos_token_id"
	ggmlUnk      = "tokenizer.ggml.unknown_token_id"
	ggmlPad      = "tokenizer.ggml.padding_token_id"
	ggmlAddBOS   = "tokenizer.ggml.add_bos_token"
	ggmlPrefix   = "tokenizer.ggml.add_space_prefix"
	ggmlRemoveWS = "tokenizer.ggml.remove_extra_whitespaces"
	ggmlCharsmap = "tokenizer.ggml.precompiled_charsmap"
)

// TranslateGGUF maps the GGUF tokenizer keys of m (`tokenizer.ggml.*`) to the
// tokenizer keys of an lmc checkpoint, without copying the vocabulary:
//
//   - model "gpt2" becomes "gpt2" (tokens, merges, token_type, pre); BOS is not added
//     unless `tokenizer.ggml.add_bos_token` says so, as llama.cpp does for BPE.
//   - model "llama" becomes "sentencepiece_bpe" (tokens, scores, token_type) with
//     the identity normalizer, a space prefix unless `add_space_prefix` is false,
//     byte fallback, and BOS added unless `add_bos_token` is false.
//   - model "t5" becomes "unigram", normalized by `precompiled_charsmap` (an array
//     of bytes), with extra white space removed unless `remove_extra_whitespaces`
//     is false.
//
// The special ids come from `bos_token_id`, `eos_token_id`, `unknown_token_id` and
// `padding_token_id`.
func TranslateGGUF(m format.Metadata) (format.Metadata, error) {
	model, _, err := m.String(ggmlModel)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	out := format.Metadata{}
	copyKey := func(from, to string) {
		if v, ok := m[from]; ok {
			out[to] = v
		}
	}
	copyKey(ggmlTokens, KeyTokens)
	copyKey(ggmlTypes, KeyTokenType)
	copyKey(ggmlBOS, KeyBOS)
	copyKey(ggmlEOS, KeyEOS)
	copyKey(ggmlUnk, KeyUnk)
	copyKey(ggmlPad, KeyPad)
	copyKey(ggmlAddBOS, KeyAddBOS)
	switch model {
	case "gpt2":
		out[KeyModel] = KindGPT2
		copyKey(ggmlMerges, KeyMerges)
		copyKey(ggmlPre, KeyPre)
		if _, ok := out[KeyAddBOS]; !ok {
			out[KeyAddBOS] = false
		}
	case "llama":
		out[KeyModel] = KindSentencePieceBPE
		if err := phi3RStrip(m, out); err != nil {
			return nil, err
		}
		copyKey(ggmlScores, KeyScores)
		out[KeyNormalizer] = "identity"
		out[KeyAddSpacePrefix] = true
		copyKey(ggmlPrefix, KeyAddSpacePrefix)
		out[KeyRemoveExtraWhitespaces] = false
		copyKey(ggmlRemoveWS, KeyRemoveExtraWhitespaces)
		out[KeyByteFallback] = true
	case "t5":
		out[KeyModel] = KindUnigram
		copyKey(ggmlScores, KeyScores)
		out[KeyAddSpacePrefix] = true
		copyKey(ggmlPrefix, KeyAddSpacePrefix)
		out[KeyRemoveExtraWhitespaces] = true
		copyKey(ggmlRemoveWS, KeyRemoveExtraWhitespaces)
		out[KeyNormalizer] = "identity"
		if v, ok := m[ggmlCharsmap]; ok {
			b, err := bytesOf(v)
			if err != nil {
				return nil, fmt.Errorf("tokenizer: %s: %w", ggmlCharsmap, err)
			}
			out[KeyCharsmap] = b
		}
	case "no_vocab", "none":
		return nil, ErrNoTokenizer
	default:
		return nil, fmt.Errorf("tokenizer: %w: GGUF %s %q (gpt2, llama and t5 are supported)", ErrUnsupported, ggmlModel, model)
	}
	return out, nil
}

// phi3RStrip gives Phi-3's added tokens the rstrip llama.cpp gives them by the
// model's name (general.name containing "phi-3" or "phi3"): every control,
// user-defined and unknown entry and "</s>" take the white space after them, except
// "<unk>", "<s>" and "<|endoftext|>". Hugging Face's Phi-3 tokenizer.json says the
// same with its rstrip flags.
func phi3RStrip(m, out format.Metadata) error {
	name, _, err := m.String("general.name")
	if err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}
	name = strings.ToLower(name)
	if !strings.Contains(name, "phi-3") && !strings.Contains(name, "phi3") {
		return nil
	}
	tokens, _, err := m.Strings(ggmlTokens)
	if err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}
	types, _, err := m.Ints(ggmlTypes)
	if err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}
	if len(types) != len(tokens) {
		return nil // FromMetadata reports it
	}
	var ids []int64
	for id, p := range tokens {
		ty := TokenType(types[id])
		special := ty == TypeControl || ty == TypeUserDefined || ty == TypeUnknown || p == "</s>"
		if special && p != "<unk>" && p != "<s>" && p != "<|endoftext|>" {
			ids = append(ids, int64(id))
		}
	}
	out[KeyRStrip] = ids
	return nil
}

// bytesOf accepts a byte array as a string or as ints 0..255.
func bytesOf(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []int64:
		b := make([]byte, len(x))
		for i, c := range x {
			if c < -128 || c > 255 {
				return "", fmt.Errorf("element %d = %d is not a byte", i, c)
			}
			b[i] = byte(c)
		}
		return string(b), nil
	}
	return "", fmt.Errorf("want bytes, have %T", v)
}
