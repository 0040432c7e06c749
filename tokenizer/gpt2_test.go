package tokenizer

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/tokfile"
)

// gpt2Sources are the three places the GPT-2 vocabulary comes from.
var gpt2Sources = []string{"encoder.json+vocab.bpe", "hf/fake_gpt2/tokenizer.json", "gguf/ggml-vocab-gpt-2.gguf"}

// gpt2Metadata reads the GPT-2 tokenizer metadata from one of gpt2Sources.
func gpt2Metadata(tb testing.TB, source string) format.Metadata {
	tb.Helper()
	dir := testdataDir(tb)
	var md format.Metadata
	var err error
	switch source {
	case "encoder.json+vocab.bpe":
		md, err = tokfile.Read(filepath.Join(dir, "gpt2", "encoder.json"), tokfile.Options{})
	case "hf/fake_gpt2/tokenizer.json":
		md, err = tokfile.Read(filepath.Join(dir, "hf", "fake_gpt2", "tokenizer.json"), tokfile.Options{})
	case "gguf/ggml-vocab-gpt-2.gguf":
		md, err = readGGUFMetadata(filepath.Join(dir, "gguf", "ggml-vocab-gpt-2.gguf"))
	default:
		tb.Fatalf("unknown source %s", source)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return md
}

func loadGPT2(tb testing.TB, source string) Tokenizer {
	tb.Helper()
	key := "gpt2:" + source
	tokCacheMu.Lock()
	defer tokCacheMu.Unlock()
	if t, ok := tokCache[key]; ok {
		return t
	}
	t, err := FromMetadata(gpt2Metadata(tb, source))
	if err != nil {
		tb.Fatalf("%s: %v", source, err)
	}
	tokCache[key] = t
	return t
}

func TestGPT2Expected(t *testing.T) {
	dir := testdataDir(t)
	wiki, err := os.ReadFile(filepath.Join(dir, "text", "wikitext2_test_a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	wikiIDs := readIDs(t, filepath.Join(dir, "tokenizer", "wikitext2_test_a.gpt2.ids"))
	cases := readExpected(t, "gpt2_expected.json")
	for _, src := range gpt2Sources {
		t.Run(filepath.Base(src), func(t *testing.T) {
			tok := loadGPT2(t, src)
			if tok.Kind() != KindGPT2 || tok.VocabSize() != 50257 || tok.BOS() != 50256 || tok.EOS() != 50256 || tok.AddBOS() {
				t.Fatalf("kind %s vocab %d bos %d eos %d addBOS %v", tok.Kind(), tok.VocabSize(), tok.BOS(), tok.EOS(), tok.AddBOS())
			}
			for _, c := range cases {
				got, err := tok.Encode(c.Text, false, false)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, c.IDs) {
					t.Errorf("Encode(%q):\n got %v\nwant %v", c.Text, got, c.IDs)
				}
				if s, err := tok.Decode(got); err != nil || s != c.Text {
					t.Errorf("Decode(Encode(%q)) = %q, %v", c.Text, s, err)
				}
			}
			got, err := tok.Encode(string(wiki), false, false)
			if err != nil {
				t.Fatal(err)
			}
			checkIDs(t, got, wikiIDs)
			if s, _ := tok.Decode(got); s != string(wiki) {
				t.Error("wikitext does not round-trip")
			}
			// BOS/EOS on request; both decode to nothing.
			ids, err := tok.Encode("Hello", true, true)
			if err != nil || !slices.Equal(ids, []int{50256, 15496, 50256}) {
				t.Errorf("Encode(Hello, BOS, EOS) = %v, %v", ids, err)
			}
			if p, _ := tok.Token(995); p != "Ġworld" {
				t.Errorf("Token(995) = %q", p)
			}
		})
	}
}

// checkIDs compares id sequences and reports the first difference.
func checkIDs(t testing.TB, got, want []int) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("%d ids, want %d; first difference at %d: got %v, want %v",
				len(got), len(want), i, got[max(0, i-3):min(len(got), i+4)], want[max(0, i-3):min(len(want), i+4)])
		}
	}
	t.Fatalf("%d ids, want %d", len(got), len(want))
}

// splitGPT2 returns the pre-tokens of s.
func splitGPT2(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		j := gpt2Next(s, i)
		out = append(out, s[i:j])
		i = j
	}
	return out
}

// referenceSplit is a literal backtracking interpretation of the GPT-2 regular
// expression, alternative by alternative, to check gpt2Next against.
func referenceSplit(s string) []string {
	rs := []rune(s)
	isL := func(r rune) bool { return unicode.IsLetter(r) }
	isN := func(r rune) bool { return unicode.IsNumber(r) }
	isS := func(r rune) bool { return unicode.Is(unicode.White_Space, r) }
	isO := func(r rune) bool { return !isL(r) && !isN(r) && !isS(r) }
	run := func(i int, f func(rune) bool) int {
		j := i
		for j < len(rs) && f(rs[j]) {
			j++
		}
		return j
	}
	var out []string
	for i := 0; i < len(rs); {
		end := -1
		for _, c := range []string{"s", "t", "re", "ve", "m", "ll", "d"} {
			if rs[i] == '\'' && strings.HasPrefix(string(rs[i+1:]), c) {
				end = i + 1 + len(c)
				break
			}
		}
		for _, f := range []func(rune) bool{isL, isN, isO} {
			if end >= 0 {
				break
			}
			j := i
			if rs[j] == ' ' {
				j++
			}
			if k := run(j, f); k > j {
				end = k
			} else if j > i { // backtrack: without the optional space
				if k := run(i, f); k > i {
					end = k
				}
			}
		}
		if end < 0 { // \s+(?!\S), backtracking from the longest
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

func TestGPT2PreTokenizer(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"  leading and trailing  ", []string{" ", " leading", " and", " trailing", "  "}},
		{"tabs\tand\nnewlines\n\n\nthree", []string{"tabs", "\t", "and", "\n", "newlines", "\n\n", "\n", "three"}},
		{"I'm it's 'S 'll", []string{"I", "'m", " it", "'s", " '", "S", " '", "ll"}},
		{"a  \tb", []string{"a", "  ", "\t", "b"}},
		{"x \n", []string{"x", " \n"}},
		{"x!!  'd", []string{"x", "!!", " ", " '", "d"}},
		{"\xff\xfeab", []string{"\xff\xfe", "ab"}},
		{"½ 12ab", []string{"½", " 12", "ab"}},
	} {
		if got := splitGPT2(c.in); !slices.Equal(got, c.want) {
			t.Errorf("split(%q) = %q, want %q", c.in, got, c.want)
		}
		if ref := referenceSplit(c.in); !slices.Equal(ref, c.want) && utf8.ValidString(c.in) {
			t.Errorf("reference split(%q) = %q, want %q", c.in, ref, c.want)
		}
	}
	// Against the literal interpretation, on every string of a mixed alphabet.
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := []rune("a Z5½'strvelmd\t\n\u00a0\u2003\u200b!.é中🦙\u0301\u3000")
	for range 20000 {
		var sb strings.Builder
		for range r.IntN(12) {
			sb.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		s := sb.String()
		if got, want := splitGPT2(s), referenceSplit(s); !slices.Equal(got, want) {
			t.Fatalf("split(%q) = %q, want %q", s, got, want)
		}
	}
}

// TestGPT2HeapMatchesNaive checks that long words (heap merge) and short ones
// (rescanning) merge the same way.
func TestGPT2HeapMatchesNaive(t *testing.T) {
	tok := loadGPT2(t, gpt2Sources[0]).(*gpt2)
	r := rand.New(rand.NewPCG(1, 1))
	letters := "etaoinshrdlucmfwypvbgkqjxz"
	for range 300 {
		n := naiveMax + 1 + r.IntN(200)
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[r.IntN(6+r.IntN(20))]
		}
		w := string(b)
		var sc gpt2Scratch
		heap, _ := tok.encodeWord(nil, w, &sc)
		// The naive loop over the same word, forced.
		syms := make([]int32, len(w))
		for i := range w {
			syms[i] = tok.byteTok[w[i]]
		}
		for {
			best, bi := uint64(noMerge), -1
			for i := 0; i+1 < len(syms); i++ {
				if v := tok.rank(syms[i], syms[i+1]); v < best {
					best, bi = v, i
				}
			}
			if bi < 0 {
				break
			}
			syms[bi] = int32(uint32(best))
			syms = slices.Delete(syms, bi+1, bi+2)
		}
		var naive []int
		for _, s := range syms {
			naive = append(naive, int(s))
		}
		if !slices.Equal(heap, naive) {
			t.Fatalf("%q: heap %v, naive %v", w, heap, naive)
		}
	}
}

// TestGPT2TinyVocab checks unk for bytes without a piece (hf/tiny_gpt2, 21 tokens).
func TestGPT2TinyVocab(t *testing.T) {
	md, err := tokfile.Read(filepath.Join(testdataDir(t), "hf", "tiny_gpt2"), tokfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := FromMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Unk() != 19 || tok.BOS() != 20 || tok.EOS() != 20 || tok.AddBOS() {
		t.Fatalf("unk %d bos %d eos %d addBOS %v", tok.Unk(), tok.BOS(), tok.EOS(), tok.AddBOS())
	}
	// Merges "Ġ l", "Ġl o", "Ġlo w", "e r": " lower" → "Ġlow" "er"; there is no
	// "Ġ n" merge, so " newer" → "Ġ" "n" "e" "w" "er".
	ids, err := tok.Encode(" lower newer", false, false)
	if want := []int{14, 15, 10, 9, 3, 2, 15}; err != nil || !slices.Equal(ids, want) {
		t.Errorf("Encode = %v, %v; want %v", ids, err, want)
	}
	if ids, _ := tok.Encode("lox", false, false); !slices.Equal(ids, []int{0, 1, 19}) {
		t.Errorf("Encode(lox) = %v, want [0 1 19]", ids)
	}
}

func BenchmarkEncodeGPT2(b *testing.B) {
	text, err := os.ReadFile(filepath.Join(testdataDir(b), "text", "wikitext2_test_a.txt"))
	if err != nil {
		b.Fatal(err)
	}
	tok := loadGPT2(b, gpt2Sources[0])
	s := string(text)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Encode(s, false, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeGPT2NoSpaces encodes 1 MB without a space (one pre-token of
// letters, merged with the heap): time and memory grow like n log n, not n².
func BenchmarkEncodeGPT2NoSpaces(b *testing.B) {
	tok := loadGPT2(b, gpt2Sources[0])
	s := strings.Repeat("abcdefghij", 100_000)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Encode(s, false, false); err != nil {
			b.Fatal(err)
		}
	}
}

// lmcMetadata writes md to a checkpoint without tensors and reads it back, so that
// the metadata is what a model load sees (strings laid out in file order).
func lmcMetadata(tb testing.TB, md format.Metadata) format.Metadata {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "tok.lmc")
	if err := format.WriteFile(path, md, nil, nil); err != nil {
		tb.Fatal(err)
	}
	f, err := format.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f.Meta
}

// BenchmarkFromMetadataGPT2 loads the 50k GPT-2 vocabulary and 50k merges from the
// metadata of an .lmc file.
func BenchmarkFromMetadataGPT2(b *testing.B) {
	md := lmcMetadata(b, gpt2Metadata(b, gpt2Sources[0]))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromMetadata(md); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeGPT2(b *testing.B) {
	text, err := os.ReadFile(filepath.Join(testdataDir(b), "text", "wikitext2_test_a.txt"))
	if err != nil {
		b.Fatal(err)
	}
	tok := loadGPT2(b, gpt2Sources[0])
	ids, _ := tok.Encode(string(text), false, false)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Decode(ids); err != nil {
			b.Fatal(err)
		}
	}
}
