package tokenizer

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lmrun/lmrun/format"
)

type expectedCase struct {
	Text string `json:"text"`
	IDs  []int  `json:"ids"`
}

func readExpected(t testing.TB, name string) []expectedCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir(t), "tokenizer", name))
	if err != nil {
		t.Fatal(err)
	}
	var cases []expectedCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", name)
	}
	return cases
}

// knownDifferences lists the texts of the expected files (made with SentencePiece
// itself) that the llama2.c algorithm encodes differently. It is empty: every case of
// tok512_expected.json and llama2_expected.json matches. A case listed here must
// differ, so the test also fails if a listed difference disappears.
var knownDifferences = map[string]map[string]bool{
	"tok512_expected.json": {},
	"llama2_expected.json": {},
}

func TestLlama2cExpected(t *testing.T) {
	for _, f := range []struct{ bin, exp string }{
		{"llama2c/tok512.bin", "tok512_expected.json"},
		{"llama2c/tokenizer.bin", "llama2_expected.json"},
	} {
		t.Run(f.exp, func(t *testing.T) {
			tok := loadLlama2c(t, f.bin)
			cases := readExpected(t, f.exp)
			if len(cases) != 26 {
				t.Errorf("%d cases, want 26", len(cases))
			}
			for _, c := range cases {
				got, err := tok.Encode(c.Text, false, false)
				if err != nil {
					t.Fatalf("Encode(%q): %v", c.Text, err)
				}
				known := knownDifferences[f.exp][c.Text]
				if same := slices.Equal(got, c.IDs); !same && !known {
					t.Errorf("Encode(%q):\n got %v\nwant %v", c.Text, got, c.IDs)
				} else if same && known {
					t.Errorf("Encode(%q) now matches SentencePiece; remove it from knownDifferences", c.Text)
				}
				// With BOS, the expected ids decode to the text (the dummy prefix
				// is stripped after BOS); without BOS the dummy space stays.
				withBOS, err := tok.Encode(c.Text, true, true)
				if err != nil {
					t.Fatal(err)
				}
				if withBOS[0] != 1 || withBOS[len(withBOS)-1] != 2 || !slices.Equal(withBOS[1:len(withBOS)-1], got) {
					t.Errorf("Encode(%q, BOS, EOS) = %v, want 1 %v 2", c.Text, withBOS, got)
				}
				if s, err := tok.Decode(append([]int{1}, c.IDs...)); err != nil || s != c.Text {
					t.Errorf("Decode(BOS + expected ids of %q) = %q, %v", c.Text, s, err)
				}
				if s, err := tok.Decode(c.IDs); err != nil || s != " "+c.Text {
					t.Errorf("Decode(expected ids of %q) = %q, %v; want the dummy space kept", c.Text, s, err)
				}
			}
		})
	}
}

// readCases returns the strings of tokenizer/cases.json.
func readCases(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir(t), "tokenizer", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	return cases
}

func readIDs(t testing.TB, path string) []int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, f := range strings.Split(strings.TrimSpace(string(raw)), ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n)
	}
	return ids
}

func TestLlama2cTinyShakespeare(t *testing.T) {
	dir := testdataDir(t)
	text, err := os.ReadFile(filepath.Join(dir, "text", "tinyshakespeare_a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := readIDs(t, filepath.Join(dir, "tokenizer", "tinyshakespeare_a.llama2.ids"))
	tok := loadLlama2c(t, "llama2c/tokenizer.bin")
	got, err := tok.Encode(string(text), false, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%d ids, want %d; first difference at %d: got %v, want %v",
					len(got), len(want), i, got[max(0, i-3):min(len(got), i+4)], want[max(0, i-3):min(len(want), i+4)])
			}
		}
		t.Fatalf("%d ids, want %d", len(got), len(want))
	}
	dec, err := tok.Decode(append([]int{tok.BOS()}, got...))
	if err != nil || dec != string(text) {
		t.Fatalf("round trip failed (err %v)", err)
	}
}

// TestVocabLayout checks the facts the byte-fallback rule relies on: llama2.c
// exports store "<0xXX>" at ids 3..258 (so lookup by name is run.c's byte+3).
func TestVocabLayout(t *testing.T) {
	for _, bin := range []string{"llama2c/tok512.bin", "llama2c/tokenizer.bin"} {
		tok := loadLlama2c(t, bin).(*llama2c)
		for b := range 256 {
			if tok.byteID[b] != int32(b+3) {
				t.Errorf("%s: byte %#02x -> id %d, want %d", bin, b, tok.byteID[b], b+3)
			}
		}
		if tok.space < 0 || tok.tokens[tok.space] != " " {
			t.Errorf("%s: no dummy-prefix piece", bin)
		}
		if tok.Kind() != "llama2c" || tok.BOS() != 1 || tok.EOS() != 2 || !tok.AddBOS() {
			t.Errorf("%s: kind %q bos %d eos %d addBOS %v", bin, tok.Kind(), tok.BOS(), tok.EOS(), tok.AddBOS())
		}
	}
	if n := loadLlama2c(t, "llama2c/tokenizer.bin").VocabSize(); n != 32000 {
		t.Errorf("VocabSize = %d", n)
	}
}

// referenceEncode is a literal port of llama2.c run.c encode() (quadratic merge loop,
// BOS taking part in merges, byte fallback = byte+3), to check the heap version.
func referenceEncode(t *llama2c, text string, bos bool) []int {
	var toks []int
	if bos {
		toks = append(toks, 1)
	}
	if text != "" {
		toks = append(toks, int(t.ids[" "]))
	}
	buf := []byte{}
	for i := 0; i < len(text); i++ {
		if text[i]&0xC0 != 0x80 {
			buf = buf[:0]
		}
		buf = append(buf, text[i])
		if i+1 < len(text) && text[i+1]&0xC0 == 0x80 && len(buf) < 4 {
			continue
		}
		if id, ok := t.ids[string(buf)]; ok {
			toks = append(toks, int(id))
		} else {
			for _, b := range buf {
				toks = append(toks, int(b)+3)
			}
		}
		buf = buf[:0]
	}
	for {
		best, bestID, bestIdx := float32(-1e10), -1, -1
		for i := 0; i+1 < len(toks); i++ {
			id, ok := t.ids[t.tokens[toks[i]]+t.tokens[toks[i+1]]]
			if ok && t.scores[id] > best {
				best, bestID, bestIdx = t.scores[id], int(id), i
			}
		}
		if bestIdx < 0 {
			break
		}
		toks[bestIdx] = bestID
		toks = slices.Delete(toks, bestIdx+1, bestIdx+2)
	}
	return toks
}

func randomText(r *rand.Rand) string {
	alphabets := []string{
		"aaaaab ", "  \t\n", "abcdefghijklmnopqrstuvwxyz  ,.'", "xxxxxxxxxxx", "éàüß中文🦙",
		"\xff\xe4\xb8\x80\xc3", "Hello world", "0123456789", "<0x41>s",
	}
	var sb strings.Builder
	n := r.IntN(80)
	for range n {
		a := alphabets[r.IntN(len(alphabets))]
		if r.IntN(4) == 0 {
			sb.WriteByte(a[r.IntN(len(a))]) // may split a multi-byte character
		} else {
			rs := []rune(a)
			sb.WriteRune(rs[r.IntN(len(rs))])
		}
	}
	return sb.String()
}

func TestLlama2cMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, bin := range []string{"llama2c/tok512.bin", "llama2c/tokenizer.bin"} {
		tok := loadLlama2c(t, bin).(*llama2c)
		for _, c := range readCases(t) {
			checkReference(t, tok, c)
		}
		for range 2000 {
			checkReference(t, tok, randomText(r))
		}
	}
}

// TestLlama2cSyntheticVsReference compares with run.c on random vocabularies whose
// pieces have spaces anywhere, many equal scores and duplicates, so that the cutting
// into runs, the tie-breaking and the stale-pair checks are all exercised.
func TestLlama2cSyntheticVsReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "b", "c", " ", "é", "\n"}
	for range 40 {
		pieces := []string{"<unk>", "\n<s>\n", "\n</s>\n"}
		for b := range 256 {
			pieces = append(pieces, byteTokenName(byte(b)))
		}
		pieces = append(pieces, alphabet...)
		pieces = append(pieces, "")
		for range 20 + r.IntN(200) {
			var sb strings.Builder
			for range 2 + r.IntN(5) {
				sb.WriteString(alphabet[r.IntN(len(alphabet))])
			}
			pieces = append(pieces, sb.String())
		}
		scores := make([]float32, len(pieces))
		for i := range scores {
			scores[i] = -float32(r.IntN(8)) // many ties
		}
		m := format.Metadata{
			"tokenizer.model": "llama2c", "tokenizer.tokens": pieces, "tokenizer.scores": scores,
			"tokenizer.bos_id": int64(1), "tokenizer.eos_id": int64(2), "tokenizer.unk_id": int64(0),
		}
		tk, err := FromMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		tok := tk.(*llama2c)
		for range 200 {
			var sb strings.Builder
			for range r.IntN(60) {
				sb.WriteString(alphabet[r.IntN(len(alphabet))])
			}
			text := sb.String()
			if r.IntN(5) == 0 {
				text += text + text // repeated runs
			}
			checkReference(t, tok, text)
		}
	}
}

func checkReference(t testing.TB, tok *llama2c, text string) {
	t.Helper()
	want := referenceEncode(tok, text, true)
	got, err := tok.Encode(text, true, false)
	if err != nil {
		t.Fatalf("Encode(%q): %v", text, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Encode(%q) = %v, run.c gives %v", text, got, want)
	}
}

func TestLlama2cInvalidUTF8(t *testing.T) {
	tok := loadLlama2c(t, "llama2c/tok512.bin")
	for _, s := range []string{"\xff", "\x80\x80\x80\x80\x80", "a\xe4\xb8", "\xe4\xb8\xadx", "\x00", "\xf0\x9f\x98", "\xc3\x28"} {
		ids, err := tok.Encode(s, true, false)
		if err != nil {
			t.Fatalf("Encode(%q): %v", s, err)
		}
		if d, err := tok.Decode(ids); err != nil || d != s {
			t.Errorf("Decode(Encode(%q)) = %q, %v (ids %v)", s, d, err, ids)
		}
	}
	ids, _ := tok.Encode("\xff", false, false)
	if want := []int{410, 0xff + 3}; !slices.Equal(ids, want) {
		t.Errorf("Encode(\\xff) = %v, want %v", ids, want)
	}
	if ids, _ := tok.Encode("", true, true); !slices.Equal(ids, []int{1, 2}) {
		t.Errorf("Encode(\"\", BOS, EOS) = %v, want [1 2] (no dummy prefix)", ids)
	}
}

func TestLlama2cPiece(t *testing.T) {
	tok := loadLlama2c(t, "llama2c/tok512.bin")
	for _, c := range []struct {
		prev, id int
		want     string
	}{
		{-1, 1, ""},            // BOS
		{5, 2, ""},             // EOS
		{-1, 410, " "},         // the space piece
		{1, 410, ""},           // its space stripped after BOS
		{1, 3 + 'A', "A"},      // byte piece
		{1, 3 + ' ', " "},      // "<0x20>" is not a space piece: not stripped
		{-1, 3 + 0xe4, "\xe4"}, // raw byte
		{-1, 0, "<unk>"},
		{1, 0, "<unk>"},
	} {
		got, err := tok.Piece(c.prev, c.id)
		if err != nil || string(got) != c.want {
			t.Errorf("Piece(%d, %d) = %q, %v; want %q", c.prev, c.id, got, err, c.want)
		}
	}
	for _, id := range []int{-1, 512, math.MaxInt32} {
		if _, err := tok.Piece(-1, id); err == nil {
			t.Errorf("Piece(-1, %d): no error", id)
		}
		if _, err := tok.Decode([]int{1, id}); err == nil {
			t.Errorf("Decode([1 %d]): no error", id)
		}
	}
	// The returned slice is the caller's.
	p, _ := tok.Piece(-1, 261)
	p[0] = 'X'
	if q, _ := tok.Piece(-1, 261); q[0] == 'X' {
		t.Error("Piece returned shared storage")
	}
}

// smallVocab builds a llama2c metadata from pieces, with scores -index.
func smallVocab(pieces []string, bos, eos, unk int64) format.Metadata {
	scores := make([]float32, len(pieces))
	for i := range scores {
		scores[i] = -float32(i)
	}
	return format.Metadata{
		"tokenizer.model":  "llama2c",
		"tokenizer.tokens": pieces,
		"tokenizer.scores": scores,
		"tokenizer.bos_id": bos,
		"tokenizer.eos_id": eos,
		"tokenizer.unk_id": unk,
	}
}

func TestLlama2cFallbacks(t *testing.T) {
	// No byte pieces: an unknown character becomes one unk.
	m := smallVocab([]string{"<unk>", "<s>", "</s>", " ", "a", "b", " a", "ab"}, 1, 2, 0)
	tok, err := FromMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.AddBOS() {
		t.Error("add_bos should default to true with a BOS id")
	}
	if ids, err := tok.Encode("ab中b\xff", false, false); err != nil || !slices.Equal(ids, []int{6, 5, 0, 5, 0}) {
		t.Errorf("Encode = %v, %v; want [6 5 0 5 0]", ids, err)
	}
	// Neither byte pieces nor unk: an error, not a panic.
	m = smallVocab([]string{"<unk>", "<s>", "</s>", " ", "a"}, 1, 2, -1)
	tok, err = FromMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Encode("a中", false, false); err == nil {
		t.Error("no error for an unencodable character")
	}
	// Raw one-byte pieces at 3..258 (a vocabulary whose "<0xXX>" were decoded).
	pieces := []string{"<unk>", "<s>", "</s>"}
	for b := range 256 {
		pieces = append(pieces, string([]byte{byte(b)}))
	}
	pieces = append(pieces, "é")
	tok, err = FromMetadata(smallVocab(pieces, 1, 2, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := []int{3 + ' ', 259, 3 + 0xe4, 3 + 0xb8, 3 + 0xad}
	if ids, err := tok.Encode("é中", false, false); err != nil || !slices.Equal(ids, want) {
		t.Errorf("Encode = %v, %v; want %v", ids, err, want)
	}
	// The raw " " piece is the dummy prefix, stripped after BOS.
	if s, _ := tok.Decode(append([]int{1}, want...)); s != "é中" {
		t.Errorf("Decode = %q", s)
	}
	// No " " piece: no dummy prefix.
	tok, err = FromMetadata(smallVocab([]string{"<unk>", "a"}, -1, -1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := tok.Encode("aa", false, false); err != nil || !slices.Equal(ids, []int{1, 1}) {
		t.Errorf("Encode = %v, %v", ids, err)
	}
	if tok.AddBOS() || tok.BOS() != -1 || tok.EOS() != -1 {
		t.Errorf("specials: %v %d %d", tok.AddBOS(), tok.BOS(), tok.EOS())
	}
	if _, err := tok.Encode("a", true, false); err == nil {
		t.Error("BOS requested without a BOS id: no error")
	}
	if _, err := tok.Encode("a", false, true); err == nil {
		t.Error("EOS requested without an EOS id: no error")
	}
}

func TestLlama2cMergeOrder(t *testing.T) {
	// "ab" and "bc" both apply to "abc"; the higher score wins, and on equal
	// scores the leftmost pair.
	pieces := []string{"<unk>", "a", "b", "c", "ab", "bc"}
	for _, c := range []struct {
		ab, bc float32
		want   []int
	}{
		{-1, -2, []int{4, 3}},
		{-2, -1, []int{1, 5}},
		{-1, -1, []int{4, 3}},
		{-1e10, -1e10, []int{1, 2, 3}}, // not above run.c's initial best score
		{float32(math.Inf(-1)), -1e9, []int{1, 5}},
	} {
		m := smallVocab(pieces, -1, -1, 0)
		m["tokenizer.scores"] = []float32{0, 0, 0, 0, c.ab, c.bc}
		tok, err := FromMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		if ids, _ := tok.Encode("abc", false, false); !slices.Equal(ids, c.want) {
			t.Errorf("scores ab %g bc %g: %v, want %v", c.ab, c.bc, ids, c.want)
		}
	}
}

func TestFromMetadataErrors(t *testing.T) {
	if _, err := FromMetadata(format.Metadata{"lm.dim": int64(8)}); !errors.Is(err, ErrNoTokenizer) {
		t.Errorf("no tokenizer.model: %v, want ErrNoTokenizer", err)
	}
	good := func() format.Metadata { return smallVocab([]string{"<unk>", "<s>", "</s>", " "}, 1, 2, 0) }
	if _, err := FromMetadata(good()); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(format.Metadata){
		"unknown model":   func(m format.Metadata) { m["tokenizer.model"] = "wordpiece" },
		"model type":      func(m format.Metadata) { m["tokenizer.model"] = int64(1) },
		"no tokens":       func(m format.Metadata) { delete(m, "tokenizer.tokens") },
		"empty tokens":    func(m format.Metadata) { m["tokenizer.tokens"] = []string{}; m["tokenizer.scores"] = []float32{} },
		"tokens type":     func(m format.Metadata) { m["tokenizer.tokens"] = "abc" },
		"no scores":       func(m format.Metadata) { delete(m, "tokenizer.scores") },
		"short scores":    func(m format.Metadata) { m["tokenizer.scores"] = []float32{0, 0, 0} },
		"NaN score":       func(m format.Metadata) { m["tokenizer.scores"] = []float32{0, float32(math.NaN()), 0, 0} },
		"bos range":       func(m format.Metadata) { m["tokenizer.bos_id"] = int64(4) },
		"eos range":       func(m format.Metadata) { m["tokenizer.eos_id"] = int64(-2) },
		"unk range":       func(m format.Metadata) { m["tokenizer.unk_id"] = int64(1 << 40) },
		"bos type":        func(m format.Metadata) { m["tokenizer.bos_id"] = 1.0 },
		"add_bos type":    func(m format.Metadata) { m["tokenizer.add_bos"] = int64(1) },
		"add_bos, no bos": func(m format.Metadata) { m["tokenizer.bos_id"] = int64(-1); m["tokenizer.add_bos"] = true },
		"huge piece": func(m format.Metadata) {
			m["tokenizer.tokens"] = []string{"a", "b", "c", strings.Repeat("x", MaxPieceLen+1)}
		},
		"bytes small":      func(m format.Metadata) { m["tokenizer.model"] = "bytes" },
		"bytes bad pieces": func(m format.Metadata) { m["tokenizer.model"] = "bytes"; m["tokenizer.tokens"] = make([]string, 300) },
	} {
		m := good()
		edit(m)
		if _, err := FromMetadata(m); err == nil || errors.Is(err, ErrNoTokenizer) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	tok := loadLlama2c(t, "llama2c/tokenizer.bin")
	cases := readExpected(t, "llama2_expected.json")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				c := cases[(g+i)%len(cases)]
				if ids, err := tok.Encode(c.Text, false, false); err != nil || !slices.Equal(ids, c.IDs) {
					t.Errorf("concurrent Encode(%q) = %v, %v", c.Text, ids, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkEncodeLlama2(b *testing.B) {
	text, err := os.ReadFile(filepath.Join(testdataDir(b), "text", "tinyshakespeare_a.txt"))
	if err != nil {
		b.Fatal(err)
	}
	tok := loadLlama2c(b, "llama2c/tokenizer.bin")
	s := string(text)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Encode(s, false, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeLlama2(b *testing.B) {
	text, err := os.ReadFile(filepath.Join(testdataDir(b), "text", "tinyshakespeare_a.txt"))
	if err != nil {
		b.Fatal(err)
	}
	tok := loadLlama2c(b, "llama2c/tokenizer.bin")
	ids, _ := tok.Encode(string(text), true, false)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Decode(ids); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeLongRun encodes 100 kB with no place to cut (one run of "x"), the
// worst case for the heap.
func BenchmarkEncodeLongRun(b *testing.B) {
	tok := loadLlama2c(b, "llama2c/tokenizer.bin")
	s := strings.Repeat("x", 100_000)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := tok.Encode(s, false, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromMetadataLlama2(b *testing.B) {
	m, err := readLlama2cTokenizer(filepath.Join(testdataDir(b), "llama2c", "tokenizer.bin"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromMetadata(m); err != nil {
			b.Fatal(err)
		}
	}
}
