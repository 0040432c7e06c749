package tokenizer

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/lmrun/lmrun/format"
)

// gpt2 is byte-level BPE ("gpt2"): the text is cut into words by GPT-2's
// pre-tokenizer (pretok.go), each word starts as one symbol per byte, and adjacent
// symbols merge, the pair with the lowest merge rank first (the leftmost of equal
// pairs first), until no adjacent pair has a merge. This is the order of Hugging
// Face tokenizers' BPE; OpenAI's bpe() merges every occurrence of the best pair
// before looking again, which gives the same result whenever each merge comes after
// the merges that make its two halves, as in every trained merges list.
//
// Pieces and merges are stored in GPT-2's byte-to-unicode alphabet (bytes_to_unicode
// in OpenAI's encoder.py: printable Latin-1 characters stand for themselves, the
// other bytes for U+0100..U+0143), as in encoder.json, vocab.json, merges.txt and
// GGUF. Entries that are not in that alphabet (added tokens) are kept as written.
//
// Encode treats special tokens in the text as text, as OpenAI's encoder and
// llama.cpp (by default) do. A byte that has no single-byte piece becomes unk, or,
// without one, is left out, as Hugging Face's BPE does (SmolLM2's vocabulary lacks
// nine bytes, \x04 among them).
type gpt2 struct {
	common
	byteTok [256]int32 // the id of each single byte, unk (or -1) if none
	// merges maps left<<32|right to rank<<32|merged: comparing two values compares
	// ranks (which are unique).
	merges pairTable
	types  []TokenType
	pre    int // the pre-tokenizer: one of the pre constants
	// ignoreMerges: a pre-token that is itself a piece is that piece, unmerged
	// (Hugging Face's BPE ignore_merges, llama.cpp's for Llama 3).
	ignoreMerges bool
	nfc          bool     // the text is NFC-normalized first (Qwen2's tokenizer.json)
	stored       strTable // the pieces as stored, for ignoreMerges
	added        addedTokens
}

// The pre-tokenizers of a gpt2 tokenizer.
const (
	preGPT2   = iota // GPT-2's regular expression (gpt2Next)
	preLlama3        // Llama 3's (llama3Next, up to 3 digits)
	preQwen2         // Qwen2's (llama3Next, single digits)
	preSmolLM        // digits isolated, then GPT-2's (smollmNext)
)

// noMerge is the merge value of a pair that does not merge.
const noMerge = math.MaxUint64

// byteToRune is GPT-2's bytes_to_unicode; runeToByte its inverse (-1: not in it).
var byteToRune, runeToByte = func() (b2r [256]rune, r2b [324]int16) {
	for i := range r2b {
		r2b[i] = -1
	}
	n := 0
	for b := range 256 {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = rune(256 + n)
			n++
		}
		r2b[b2r[b]] = int16(b)
	}
	return
}()

// ByteLevelDecode maps a piece in GPT-2's byte-to-unicode alphabet to its bytes; a
// character outside the alphabet stands for its own UTF-8 (as Hugging Face's
// ByteLevel decoder does).
func ByteLevelDecode(piece string) string { return string(appendByteLevel(nil, piece)) }

// ByteLevelEncode maps bytes to GPT-2's byte-to-unicode alphabet.
func ByteLevelEncode(raw string) string {
	var sb strings.Builder
	sb.Grow(2 * len(raw))
	for i := 0; i < len(raw); i++ {
		sb.WriteRune(byteToRune[raw[i]])
	}
	return sb.String()
}

// gpt2Pre maps the `tokenizer.pre` names lmrun implements (llama.cpp's names for
// them) to the pre-tokenizer.
var gpt2Pre = map[string]int{
	"": preGPT2, "gpt2": preGPT2, "gpt-2": preGPT2, "default": preGPT2,
	"llama-bpe": preLlama3, "llama3": preLlama3,
	"qwen2":  preQwen2,
	"smollm": preSmolLM,
}

func newGPT2(c common, m format.Metadata) (*gpt2, error) {
	pre, _, err := m.String(KeyPre)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	preKind, ok := gpt2Pre[pre]
	if !ok {
		return nil, fmt.Errorf("tokenizer: gpt2: %w: pre-tokenizer %q (gpt-2, llama-bpe, qwen2 and smollm are implemented)", ErrUnsupported, pre)
	}
	ignoreMerges, err := optBool(m, KeyIgnoreMerges, preKind == preLlama3)
	if err != nil {
		return nil, err
	}
	normName, _, err := m.String(KeyNormalizer)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if normName != "" && normName != "identity" && normName != "nfc" {
		return nil, fmt.Errorf("tokenizer: gpt2: %w: normalizer %q (identity and nfc are implemented)", ErrUnsupported, normName)
	}
	merges, ok, err := m.Strings(KeyMerges)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("tokenizer: gpt2: missing %s", KeyMerges)
	}
	types, err := readTypes(m, len(c.tokens))
	if err != nil {
		return nil, err
	}
	if len(c.tokens) > math.MaxInt32 || len(merges) > math.MaxInt32 {
		return nil, fmt.Errorf("tokenizer: gpt2: vocabulary too large")
	}
	// Merges name pieces as stored; concatenating stored pieces concatenates
	// their bytes, so everything resolves in one map of the stored pieces.
	stored := newStrTable(c.tokens)
	t := &gpt2{common: c, types: types, pre: preKind, ignoreMerges: ignoreMerges, nfc: normName == "nfc"}
	if ignoreMerges {
		t.stored = stored
	}
	if types != nil {
		if t.added, err = newAddedTokens(c.tokens, types, m); err != nil {
			return nil, err
		}
	}
	for b := range 256 {
		t.byteTok[b] = int32(c.unk)
		if id, ok := stored.get(string(byteToRune[b])); ok {
			t.byteTok[b] = id
		}
	}
	t.merges = newPairTable(len(merges))
	var buf []byte
	guess := int32(-1)
	for rank, mg := range merges {
		sp := strings.IndexByte(mg, ' ')
		if sp < 0 || strings.IndexByte(mg[sp+1:], ' ') >= 0 {
			return nil, fmt.Errorf("tokenizer: gpt2: merge %d %q is not two pieces separated by one space", rank, mg)
		}
		l, r := mg[:sp], mg[sp+1:]
		lid, ok1 := stored.get(l)
		rid, ok2 := stored.get(r)
		// Vocabularies usually number merged pieces in merge order: try the id
		// after the previous merge's before hashing the concatenation.
		mid, ok3 := guess+1, false
		if g := c.tokens; int(mid) < len(g) && len(g[mid]) == len(l)+len(r) && strings.HasPrefix(g[mid], l) && g[mid][len(l):] == r && stored.lowest(mid) {
			ok3 = true
		} else {
			buf = append(append(buf[:0], l...), r...)
			mid, ok3 = stored.get(string(buf))
		}
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("tokenizer: gpt2: merge %d %q: a piece is not in the vocabulary", rank, mg)
		}
		guess = mid
		// The first (best) rank of a repeated merge counts.
		t.merges.insert(uint64(lid)<<32|uint64(rid), uint64(rank)<<32|uint64(mid))
	}
	return t, nil
}

// appendByteLevel appends the bytes piece stands for in GPT-2's byte-to-unicode
// alphabet; a character outside it stands for its own UTF-8 (as Hugging Face's
// ByteLevel decoder has it). Decoding maps pieces as it goes: no table to build at
// load time.
func appendByteLevel(dst []byte, p string) []byte {
	for k := 0; k < len(p); {
		c := p[k]
		if c < utf8.RuneSelf && runeToByte[c] == int16(c) {
			dst = append(dst, c)
			k++
			continue
		}
		// The alphabet's other characters are U+00A1..U+0143: two bytes.
		if k+1 < len(p) && 0xC2 <= c && c <= 0xC5 && p[k+1]&0xC0 == 0x80 {
			if b := runeToByte[rune(c&0x1F)<<6|rune(p[k+1]&0x3F)]; b >= 0 {
				dst = append(dst, byte(b))
				k += 2
				continue
			}
		}
		_, size := utf8.DecodeRuneInString(p[k:])
		dst = append(dst, p[k:k+size]...)
		k += size
	}
	return dst
}

// Kind returns "gpt2".
func (t *gpt2) Kind() string { return KindGPT2 }

func (t *gpt2) rank(l, r int32) uint64 {
	if l < 0 || r < 0 {
		return noMerge
	}
	if v, ok := t.merges.get(uint64(l)<<32 | uint64(uint32(r))); ok {
		return v
	}
	return noMerge
}

// gpt2Scratch is the per-call state of Encode.
type gpt2Scratch struct {
	syms  []int32
	ranks []uint64
	list  []symbol
	heap  u64Heap
}

// Encode converts text to ids (see the type's notes).
func (t *gpt2) Encode(text string, addBOS, addEOS bool) ([]int, error) {
	return t.encodeAdded(text, addBOS, addEOS, false)
}

// encodeAdded encodes text, its added tokens matched whole (the special ones only
// if special), the text between them on its own.
func (t *gpt2) encodeAdded(text string, addBOS, addEOS, special bool) ([]int, error) {
	if err := t.checkSpecials(addBOS, addEOS); err != nil {
		return nil, err
	}
	out := make([]int, 0, len(text)/3+2)
	if addBOS {
		out = append(out, t.bos)
	}
	var err error
	if t.added.any(special) {
		err = t.added.split(text, special, func(seg string, _ bool) error {
			out, err = t.encodeText(out, seg)
			return err
		}, func(id int) error {
			out = append(out, id)
			return nil
		})
	} else {
		out, err = t.encodeText(out, text)
	}
	if err != nil {
		return nil, err
	}
	if addEOS {
		out = append(out, t.eos)
	}
	return out, nil
}

// next returns the end of the pre-token that starts at s[i] (i < len(s)); seg is
// the pre-tokenizer's state, 0 at the start of s.
func (t *gpt2) next(s string, i int, seg *int) int {
	switch t.pre {
	case preLlama3:
		return llama3Next(s, i, 3)
	case preQwen2:
		return llama3Next(s, i, 1)
	case preSmolLM:
		return smollmNext(s, i, seg)
	}
	return gpt2Next(s, i)
}

// encodeText appends the ids of text, which contains no added token.
func (t *gpt2) encodeText(out []int, text string) ([]int, error) {
	if t.nfc && !norm.NFC.IsNormalString(text) {
		text = norm.NFC.String(text)
	}
	var sc gpt2Scratch
	// Natural text repeats its words: each distinct word is merged once per call,
	// its ids copied from the first occurrence (a span of out).
	seen := make(map[string][2]int32, min(len(text)/32, 1<<14))
	seg := 0
	for i := 0; i < len(text); {
		j := t.next(text, i, &seg)
		w := text[i:j]
		i = j
		if len(w) == 1 {
			if id := t.byteTok[w[0]]; id >= 0 {
				out = append(out, int(id))
			}
			continue
		}
		if span, ok := seen[w]; ok {
			out = append(out, out[span[0]:span[1]]...)
			continue
		}
		start := len(out)
		var err error
		out, err = t.encodeWord(out, w, &sc)
		if err != nil {
			return nil, err
		}
		if len(out) <= math.MaxInt32 {
			seen[w] = [2]int32{int32(start), int32(len(out))}
		}
	}
	return out, nil
}

// naiveMax is the longest word merged by rescanning; longer ones use a heap.
const naiveMax = 48

// encodeWord appends the ids of one pre-token.
func (t *gpt2) encodeWord(dst []int, w string, sc *gpt2Scratch) ([]int, error) {
	if t.ignoreMerges {
		if id, ok := t.stored.get(ByteLevelEncode(w)); ok {
			return append(dst, int(id)), nil
		}
	}
	syms := sc.syms[:0]
	if cap(syms) < len(w) {
		syms = make([]int32, 0, len(w))
	}
	for i := 0; i < len(w); i++ {
		if id := t.byteTok[w[i]]; id >= 0 {
			syms = append(syms, id)
		}
	}
	sc.syms = syms
	if len(syms) == 0 {
		return dst, nil
	}
	if len(syms) > naiveMax {
		return t.mergeHeap(dst, sc), nil
	}
	ranks := sc.ranks[:0]
	for i := 0; i+1 < len(syms); i++ {
		ranks = append(ranks, t.rank(syms[i], syms[i+1]))
	}
	for len(ranks) > 0 {
		best, bi := uint64(noMerge), -1
		for i, r := range ranks {
			if r < best {
				best, bi = r, i
			}
		}
		if bi < 0 {
			break
		}
		syms[bi] = int32(uint32(best))
		syms = append(syms[:bi+1], syms[bi+2:]...)
		ranks = append(ranks[:bi], ranks[bi+1:]...)
		if bi > 0 {
			ranks[bi-1] = t.rank(syms[bi-1], syms[bi])
		}
		if bi < len(ranks) {
			ranks[bi] = t.rank(syms[bi], syms[bi+1])
		}
	}
	sc.ranks = ranks
	for _, s := range syms {
		dst = append(dst, int(s))
	}
	return dst, nil
}

// u64Heap is a min-heap of uint64.
type u64Heap []uint64

func (h *u64Heap) push(v uint64) {
	*h = append(*h, v)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p] <= s[i] {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *u64Heap) down(i int) {
	s := *h
	n := len(s)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s[r] < s[l] {
			m = r
		}
		if s[i] <= s[m] {
			return
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
}

func (h *u64Heap) pop() uint64 {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	*h = s[:n]
	h.down(0)
	return top
}

// mergeHeap merges sc.syms with a heap of candidate pairs over a linked list, in
// O(n log n), in the same order as the rescanning loop (lowest rank, then
// leftmost). A candidate is rank<<32 | left symbol; it is still current if the pair
// now starting at that symbol merges with that rank (ranks are unique to a pair, so
// it is the same pair, and applying it is what a fresh candidate would do).
func (t *gpt2) mergeHeap(dst []int, sc *gpt2Scratch) []int {
	n := len(sc.syms)
	list := sc.list[:0]
	if cap(list) < n {
		list = make([]symbol, 0, n)
	}
	for i, id := range sc.syms {
		list = append(list, symbol{id: id, prev: int32(i - 1), next: int32(i + 1)})
	}
	list[n-1].next = -1
	sc.list = list
	h := sc.heap[:0]
	if cap(h) < n+n/2 {
		h = make(u64Heap, 0, n+n/2)
	}
	for i := 0; i+1 < n; i++ {
		if v := t.rank(list[i].id, list[i+1].id); v != noMerge {
			h = append(h, v>>32<<32|uint64(i))
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	try := func(l int32) {
		if l < 0 || list[l].next < 0 {
			return
		}
		if v := t.rank(list[l].id, list[list[l].next].id); v != noMerge {
			h.push(v>>32<<32 | uint64(l))
		}
	}
	for len(h) > 0 {
		c := h.pop()
		li := int32(uint32(c))
		l := &list[li]
		if l.id < 0 || l.next < 0 {
			continue // merged away
		}
		v := t.rank(l.id, list[l.next].id)
		if v>>32 != c>>32 {
			continue // stale: a side has merged since
		}
		r := &list[l.next]
		l.id = int32(uint32(v))
		l.next = r.next
		if r.next >= 0 {
			list[r.next].prev = li
		}
		r.id, r.prev, r.next = -1, -1, -1
		try(l.prev)
		try(li)
	}
	sc.heap = h
	for i := int32(0); i >= 0; i = list[i].next {
		dst = append(dst, int(list[i].id))
	}
	return dst
}

func (t *gpt2) appendPiece(dst []byte, _, id int) []byte {
	if id == t.bos || id == t.eos {
		return dst
	}
	return appendByteLevel(dst, t.tokens[id])
}

// Decode concatenates the bytes of ids (BOS and EOS give nothing).
func (t *gpt2) Decode(ids []int) (string, error) { return t.decodeAll(ids, t.appendPiece) }

// Piece returns the bytes of id; prev does not matter.
func (t *gpt2) Piece(prev, id int) ([]byte, error) {
	if err := t.checkID(id); err != nil {
		return nil, err
	}
	return t.appendPiece(nil, prev, id), nil
}
