package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

func TestBytesMetadata(t *testing.T) {
	m := BytesMetadata(512, 42)
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	tok, err := FromMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Kind() != "bytes" || tok.VocabSize() != 512 || tok.BOS() != 256 || tok.EOS() != 257 || !tok.AddBOS() {
		t.Fatalf("kind %q vocab %d bos %d eos %d addBOS %v", tok.Kind(), tok.VocabSize(), tok.BOS(), tok.EOS(), tok.AddBOS())
	}
	if unk, _, _ := m.Int("tokenizer.unk_id"); unk != -1 {
		t.Errorf("unk = %d", unk)
	}
	tokens, _, _ := m.Strings("tokenizer.tokens")
	if tokens[256] != "<|bos|>" || tokens[257] != "<|eos|>" {
		t.Errorf("specials %q %q", tokens[256], tokens[257])
	}
	distinct := map[string]bool{}
	for i, p := range tokens[258:] {
		if len(p) < 3 || len(p) > 7 || p[0] != ' ' || strings.Trim(p[1:], "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Errorf("piece %d = %q, want a space and 2-6 lowercase letters", 258+i, p)
		}
		distinct[p] = true
	}
	if len(distinct) < 200 {
		t.Errorf("only %d distinct word pieces of 254", len(distinct))
	}
	// Deterministic in (vocabSize, seed); the seed matters; a larger vocab extends.
	again, _, _ := BytesMetadata(512, 42).Strings("tokenizer.tokens")
	other, _, _ := BytesMetadata(512, 43).Strings("tokenizer.tokens")
	longer, _, _ := BytesMetadata(1000, 42).Strings("tokenizer.tokens")
	if !slices.Equal(tokens, again) || slices.Equal(tokens, other) || !slices.Equal(tokens, longer[:512]) {
		t.Error("BytesMetadata pieces are not a deterministic function of the seed")
	}
	// Pin the generator so that a change is noticed (demo output would change).
	if got := strings.Join(tokens[258:264], "|"); got != pinnedBytesPieces {
		t.Errorf("pieces 258..263 = %q, want %q", got, pinnedBytesPieces)
	}
	if _, err := FromMetadata(BytesMetadata(258, 0)); err != nil {
		t.Error(err)
	}
	for _, n := range []int{0, 257, MaxVocabSize + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("BytesMetadata(%d) did not panic", n)
				}
			}()
			BytesMetadata(n, 1)
		}()
	}
}

const pinnedBytesPieces = " buwic| diwoc| hev| evuda| keki| copon"

func TestBytesEncodeDecode(t *testing.T) {
	tok, err := FromMetadata(BytesMetadata(300, 7))
	if err != nil {
		t.Fatal(err)
	}
	text := "héllo\x00\xff"
	ids, err := tok.Encode(text, true, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{256, 'h', 0xc3, 0xa9, 'l', 'l', 'o', 0, 0xff, 257}
	if !slices.Equal(ids, want) {
		t.Fatalf("Encode = %v, want %v", ids, want)
	}
	if s, err := tok.Decode(ids); err != nil || s != text {
		t.Fatalf("Decode = %q, %v", s, err)
	}
	tokens, _, _ := BytesMetadata(300, 7).Strings("tokenizer.tokens")
	if s, _ := tok.Decode([]int{'a', 258, 299}); s != "a"+tokens[258]+tokens[299] {
		t.Errorf("Decode of word pieces = %q", s)
	}
	if p, err := tok.Piece(256, 'x'); err != nil || string(p) != "x" {
		t.Errorf("Piece = %q, %v", p, err)
	}
	if p, err := tok.Piece(-1, 257); err != nil || len(p) != 0 {
		t.Errorf("Piece(EOS) = %q, %v", p, err)
	}
	for _, id := range []int{-1, 300} {
		if _, err := tok.Decode([]int{id}); err == nil {
			t.Errorf("Decode([%d]): no error", id)
		}
		if _, err := tok.Piece(-1, id); err == nil {
			t.Errorf("Piece(%d): no error", id)
		}
	}
	if ids, _ := tok.Encode("", false, false); len(ids) != 0 {
		t.Errorf("Encode(\"\") = %v", ids)
	}
	// Without specials.
	m := BytesMetadata(258, 0)
	m["tokenizer.bos_id"] = int64(-1)
	m["tokenizer.eos_id"] = int64(-1)
	m["tokenizer.add_bos"] = false
	tok, err = FromMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Encode("a", true, false); err == nil {
		t.Error("BOS without a BOS id: no error")
	}
	// BOS may not be a byte id.
	m["tokenizer.bos_id"] = int64(65)
	if _, err := FromMetadata(m); err == nil {
		t.Error("BOS = 65 accepted")
	}
}
