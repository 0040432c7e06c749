package tokenizer

import (
	"errors"
	"slices"
	"testing"
)

// TestSpecialParsing checks that special tokens written in the text are text for
// Encode and their ids for EncodeSpecial, that non-special added tokens are matched
// by both, and that the text around a token is encoded on its own (with the space
// prefix as each file's reference has it).
func TestSpecialParsing(t *testing.T) {
	type part struct {
		text string
		id   int // -1: text
	}
	load := map[string]func(testing.TB) Tokenizer{}
	for _, f := range families {
		load[f.name] = f.load
	}
	for _, f := range spFamilies {
		load[f.name+"-sp"] = f.load
	}
	for _, c := range []struct {
		name  string
		parts []part
		user  bool // the token is not special: Encode matches it too
	}{
		{"llama3", []part{{"<|begin_of_text|>", 128000}, {"Hello world", -1}}, false},
		{"llama3", []part{{"a ", -1}, {"<|eot_id|>", 128009}, {" b", -1}}, false},
		{"qwen2", []part{{"<|im_start|>", 151644}, {"user\nhi", -1}, {"<|im_end|>", 151645}, {"\n", -1}}, false},
		{"qwen2", []part{{"x ", -1}, {"<tool_call>", 151657}, {" y", -1}}, true},
		{"smollm2", []part{{"<|im_start|>", 1}, {"assistant", -1}}, false},
		{"mistral", []part{{"[INST]", 3}, {" Hello ", -1}, {"[/INST]", 4}}, false},
		{"mistral", []part{{"Hi", -1}, {"</s>", 2}, {"there", -1}}, false},
		{"mistral-sp", []part{{"Hi", -1}, {"</s>", 2}, {"there", -1}}, false},
		{"phi3-sp", []part{{"<|user|>", 32010}, {"Hi", -1}, {"<|end|>", 32007}}, false},
		{"phi3-sp", []part{{"Hi ", -1}, {"<|endoftext|>", 32000}, {" x", -1}}, false},
	} {
		tok := load[c.name](t)
		var text string
		var want []int
		first := true
		for _, p := range c.parts {
			text += p.text
			if p.id >= 0 {
				want = append(want, p.id)
				first = false
				continue
			}
			// The text between tokens gets no space prefix from Hugging Face's
			// Metaspace unless it starts the text; llama.cpp's SentencePiece
			// gives every stretch one, as Encode of the stretch does.
			var ids []int
			var err error
			if sp, ok := tok.(*sentencePieceBPE); ok && !first && sp.prefixUnlessSpace {
				ids, err = sp.encode(p.text, false, false, false)
			} else {
				ids, err = tok.Encode(p.text, false, false)
			}
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, ids...)
			first = false
		}
		got, err := EncodeSpecial(tok, text, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: EncodeSpecial(%q) = %v, want %v", c.name, text, got, want)
		}
		plain, err := tok.Encode(text, false, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range c.parts {
			if p.id >= 0 && slices.Contains(plain, p.id) != c.user {
				t.Errorf("%s: Encode(%q) = %v: token %d found: %v, want %v", c.name, text, plain, p.id, !c.user, c.user)
			}
		}
		if c.user && !slices.Equal(plain, want) {
			t.Errorf("%s: Encode(%q) = %v, want %v", c.name, text, plain, want)
		}
	}
	// Phi-3's added tokens take the white space after them, as llama.cpp has it
	// (but not <|endoftext|>, above).
	phi3 := load["phi3-sp"](t)
	if got, _ := EncodeSpecial(phi3, "<|user|>\nHi<|end|>\n", false, false); !slices.Equal(got, []int{32010, 6324, 32007}) {
		t.Errorf("phi3: EncodeSpecial = %v, want [32010 6324 32007]", got)
	}
	// Kinds that cannot parse special tokens say so.
	if _, err := EncodeSpecial(loadLlama2c(t, "llama2c/tok512.bin"), "<s>", false, false); !errors.Is(err, ErrNoSpecialParsing) {
		t.Errorf("llama2c: err = %v", err)
	}
}
