package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// splitPre splits s with the pre-tokenizer pre (the pre constants).
func splitPre(s string, pre int) []string {
	t := &gpt2{pre: pre}
	var out []string
	seg := 0
	for i := 0; i < len(s); {
		j := t.next(s, i, &seg)
		if j <= i || j > len(s) {
			panic("pre-tokenizer made no progress")
		}
		out = append(out, s[i:j])
		i = j
	}
	return out
}

// referenceLlama3Split is a literal, backtracking reading of Llama 3's (maxDigits 3)
// or Qwen2's (1) regular expression over code points, each match the first
// alternative that matches, as a regex engine finds it.
func referenceLlama3Split(s string, maxDigits int) []string {
	rs := []rune(s)
	isL := func(r rune) bool { return unicode.IsLetter(r) }
	isN := func(r rune) bool { return unicode.IsNumber(r) }
	isS := func(r rune) bool { return unicode.Is(unicode.White_Space, r) }
	isO := func(r rune) bool { return !isL(r) && !isN(r) && !isS(r) }
	isNL := func(r rune) bool { return r == '\r' || r == '\n' }
	run := func(i int, f func(rune) bool) int {
		for i < len(rs) && f(rs[i]) {
			i++
		}
		return i
	}
	var out []string
	for i := 0; i < len(rs); {
		end := -1
		// (?i:'s|'t|'re|'ve|'m|'ll|'d)
		for _, c := range []string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"} {
			if i+len(c) <= len(rs) && strings.EqualFold(string(rs[i:i+len(c)]), c) && utf8.RuneLen(rs[i+1]) == 1 {
				end = i + len(c)
				break
			}
		}
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if end < 0 {
			if !isNL(rs[i]) && !isL(rs[i]) && !isN(rs[i]) && i+1 < len(rs) && isL(rs[i+1]) {
				end = run(i+1, isL)
			} else if isL(rs[i]) {
				end = run(i, isL)
			}
		}
		// \p{N}{1,maxDigits}
		if end < 0 && isN(rs[i]) {
			end = min(run(i, isN), i+maxDigits)
		}
		//  ?[^\s\p{L}\p{N}]+[\r\n]*
		if end < 0 {
			j := i
			if rs[j] == ' ' && j+1 < len(rs) && isO(rs[j+1]) {
				j++
			}
			if k := run(j, isO); k > j {
				end = run(k, isNL)
			}
		}
		// \s*[\r\n]+
		if end < 0 {
			for k := run(i, isS); k >= i; k-- {
				if k < len(rs) && isNL(rs[k]) {
					end = run(k, isNL)
					break
				}
			}
		}
		// \s+(?!\S)
		if end < 0 {
			for k := run(i, isS); k > i; k-- {
				if k == len(rs) || isS(rs[k]) {
					end = k
					break
				}
			}
		}
		if end < 0 {
			end = run(i, isS) // \s+
		}
		if end <= i {
			panic("no alternative matched")
		}
		out = append(out, string(rs[i:end]))
		i = end
	}
	return out
}

// referenceSmolLMSplit isolates every \p{N} character, then splits the rest with
// GPT-2's regular expression.
func referenceSmolLMSplit(s string) []string {
	var out []string
	seg := 0
	for i, r := range s {
		if unicode.IsNumber(r) {
			out = append(out, referenceSplit(s[seg:i])...)
			out = append(out, string(r))
			seg = i + utf8.RuneLen(r)
		}
	}
	return append(out, referenceSplit(s[seg:])...)
}

func TestLlama3PreTokenizer(t *testing.T) {
	for _, c := range []struct {
		in   string
		pre  int
		want []string
	}{
		{"Hello  world", preLlama3, []string{"Hello", " ", " world"}},
		{"I'D SAY it's 'Sup", preLlama3, []string{"I", "'D", " SAY", " it", "'s", " '", "Sup"}},
		{"1234567 x", preLlama3, []string{"123", "456", "7", " x"}},
		{"1234567 x", preQwen2, []string{"1", "2", "3", "4", "5", "6", "7", " x"}},
		{"a.\n\nb", preLlama3, []string{"a", ".\n\n", "b"}},
		{"x  \n \ty", preLlama3, []string{"x", "  \n", " ", "\ty"}},
		{"(ab) !?", preLlama3, []string{"(ab", ")", " !?"}},
		{"a \n", preLlama3, []string{"a", " \n"}},
		{"x  ", preLlama3, []string{"x", "  "}},
		{"a1 22b", preSmolLM, []string{"a", "1", " ", "2", "2", "b"}},
	} {
		if got := splitPre(c.in, c.pre); !slices.Equal(got, c.want) {
			t.Errorf("split(%q, %d) = %q, want %q", c.in, c.pre, got, c.want)
		}
	}
	r := rand.New(rand.NewPCG(9, 10))
	alphabet := []rune("a Z5½'sStTrRvVeElLmMdD\t\n\r\u00a0\u2003\u200b!.é中🦙\u0301\u3000٣")
	for range 30000 {
		var sb strings.Builder
		for range r.IntN(14) {
			sb.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		s := sb.String()
		checkPreTokenizers(t, s)
	}
}

// checkPreTokenizers compares every hand-written pre-tokenizer with its literal
// reading on s; on any input, the pre-tokens must concatenate to s.
func checkPreTokenizers(t *testing.T, s string) {
	t.Helper()
	for _, c := range []struct {
		pre int
		ref func(string) []string
	}{
		{preLlama3, func(s string) []string { return referenceLlama3Split(s, 3) }},
		{preQwen2, func(s string) []string { return referenceLlama3Split(s, 1) }},
		{preSmolLM, referenceSmolLMSplit},
	} {
		got := splitPre(s, c.pre)
		if strings.Join(got, "") != s {
			t.Fatalf("split(%q, %d) = %q does not concatenate to the text", s, c.pre, got)
		}
		if !utf8.ValidString(s) {
			continue
		}
		if want := c.ref(s); !slices.Equal(got, want) {
			t.Fatalf("split(%q, %d) = %q, want %q", s, c.pre, got, want)
		}
	}
}

// FuzzPreTokenizers checks the Llama 3, Qwen2 and SmolLM pre-tokenizers against
// their literal readings, that encoding with every family's tokenizer round-trips
// (valid UTF-8 for the SentencePiece ones), and that nothing panics or fails,
// special tokens parsed or not.
func FuzzPreTokenizers(f *testing.F) {
	addSeeds(f)
	var toks []*gpt2
	var sps []*sentencePieceBPE
	for _, fam := range families {
		switch tok := fam.load(f).(type) {
		case *gpt2:
			toks = append(toks, tok)
		case *sentencePieceBPE:
			sps = append(sps, tok)
		}
	}
	for _, fam := range spFamilies {
		sps = append(sps, fam.load(f).(*sentencePieceBPE))
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4000 {
			s = s[:4000] // the references are quadratic
		}
		checkPreTokenizers(t, s)
		for _, tok := range sps {
			ids, err := tok.Encode(s, true, false)
			if err != nil {
				t.Fatalf("Encode(%q): %v", s, err)
			}
			if _, err := EncodeSpecial(tok, s, true, false); err != nil {
				t.Fatalf("EncodeSpecial(%q): %v", s, err)
			}
			if !utf8.ValidString(s) {
				continue
			}
			want := s
			if tok.prefixUnlessSpace {
				want = strings.TrimPrefix(s, " ")
			}
			if got, err := tok.Decode(ids); err != nil || got != want {
				t.Fatalf("Decode(Encode(%q)) = %q, %v", s, got, err)
			}
		}
		for _, tok := range toks {
			if _, err := EncodeSpecial(tok, s, false, false); err != nil {
				t.Fatalf("EncodeSpecial(%q): %v", s, err)
			}
			ids, err := tok.Encode(s, false, false)
			if err != nil {
				t.Fatalf("Encode(%q): %v", s, err)
			}
			got, err := tok.Decode(ids)
			g := tok
			want := s
			if g.nfc {
				want = normNFC(s)
			}
			// Bytes without a piece (SmolLM2 lacks nine) are left out.
			kept := []byte(want)[:0:0]
			for i := 0; i < len(want); i++ {
				if g.byteTok[want[i]] >= 0 {
					kept = append(kept, want[i])
				}
			}
			want = string(kept)
			if err != nil || got != want {
				t.Fatalf("Decode(Encode(%q)) = %q, %v", s, got, err)
			}
		}
	})
}
