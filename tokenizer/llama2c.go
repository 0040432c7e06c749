package tokenizer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// llama2c is the "llama2c" tokenizer; the package documentation states what it
// computes.
//
// The merge loop gives run.c's result faster than run.c's O(n²) rescans: the merge
// table (pair of ids -> merged id) is precomputed; the symbols are cut where no merge
// can ever join them (usually before each space: see separates); each run is merged
// with a heap of candidate pairs over a linked list of symbols, as SentencePiece
// does, in O(k log k); and the result of a run is reused for identical runs later in
// the same text.
type llama2c struct {
	common
	scores []float32
	ids    map[string]int32 // piece -> lowest id with that piece
	space  int32            // id of " ", -1 if none
	byteID [256]int32       // byte-fallback id of each byte, -1 if none
	byteOf []int16          // the byte a "<0xXX>" piece stands for, -1 for other pieces
	// joins has bit a<<8|b set when the bytes a, b are adjacent inside some piece.
	// No merge can ever join two symbols when the last byte of the left one and
	// the first byte of the right one are not: Encode merges the runs between
	// such boundaries (usually words) independently, with small heaps.
	joins [65536 / 64]uint64
	// canon maps an id to the lowest id with the same piece, and pairs maps
	// canon[a]<<32|canon[b] to the id of the piece tokens[a]+tokens[b], for every
	// pair whose concatenation is a piece: the merge table, precomputed.
	canon []int32
	pairs pairTable
	// isolated marks the ids that are in no pair of the merge table (such as the
	// byte-fallback pieces): a symbol with such an id never merges with anything.
	isolated []bool
	single   [128]int32 // id of each one-byte ASCII piece, -1 if none
	dummy    bool       // Encode starts a non-empty text with the " " piece (run.c)
}

// minMergeScore is run.c's initial best score: a pair merges only if its piece
// scores strictly more.
const minMergeScore = float32(-1e10)

func newLlama2c(c common, scores []float32) (*llama2c, error) {
	return newBPECore(c, scores, nil, true)
}

// newBPECore builds the merge machinery over c.tokens. With types nil every piece
// takes part, as in run.c (byte fallback to "<0xXX>" pieces or raw bytes at 3+b,
// dummy prefix " "). With types, as in SentencePiece, only normal, user-defined and
// unused pieces are looked up and merged, byte fallback (when byteFallback) uses the
// byte-type pieces, and Encode adds no dummy prefix (the normalizer does).
func newBPECore(c common, scores []float32, types []TokenType, byteFallback bool) (*llama2c, error) {
	if len(scores) != len(c.tokens) {
		return nil, fmt.Errorf("tokenizer: %d scores for %d tokens", len(scores), len(c.tokens))
	}
	if len(c.tokens) > math.MaxInt32 {
		return nil, errors.New("tokenizer: vocabulary too large")
	}
	for i, s := range scores {
		if s != s {
			return nil, fmt.Errorf("tokenizer: score of id %d is NaN", i)
		}
	}
	t := &llama2c{
		common: c,
		scores: scores,
		ids:    make(map[string]int32, len(c.tokens)),
		space:  -1,
		byteOf: make([]int16, len(c.tokens)),
		dummy:  types == nil,
	}
	mergeable := func(i int) bool {
		return types == nil || types[i] == TypeNormal || types[i] == TypeUserDefined || types[i] == TypeUnused
	}
	for i, p := range c.tokens {
		t.byteOf[i] = -1
		if b, ok := parseByteToken(p); ok && (types == nil || types[i] == TypeByte) {
			t.byteOf[i] = int16(b)
		}
		if !mergeable(i) {
			continue
		}
		if _, dup := t.ids[p]; !dup {
			t.ids[p] = int32(i)
		}
		for j := 0; j+1 < len(p); j++ {
			k := uint16(p[j])<<8 | uint16(p[j+1])
			t.joins[k>>6] |= 1 << (k & 63)
		}
	}
	t.canon = make([]int32, len(c.tokens))
	for i, p := range c.tokens {
		t.canon[i] = int32(i)
		if id, ok := t.ids[p]; ok && mergeable(i) {
			t.canon[i] = id
		}
	}
	// A concatenation a+b determines the piece, so each pair has one entry.
	var entries [][2]uint64
	for p, id := range t.ids {
		for k := 0; k <= len(p); k++ { // empty halves too, should "" be a piece
			a, okA := t.ids[p[:k]]
			b, okB := t.ids[p[k:]]
			if okA && okB && scores[id] > minMergeScore {
				entries = append(entries, [2]uint64{uint64(a)<<32 | uint64(b), uint64(id)})
			}
		}
	}
	t.pairs = newPairTable(len(entries))
	t.isolated = make([]bool, len(c.tokens))
	inPair := make([]bool, len(c.tokens))
	for _, e := range entries {
		t.pairs.insert(e[0], e[1])
		inPair[e[0]>>32], inPair[uint32(e[0])] = true, true
	}
	for i, cid := range t.canon {
		t.isolated[i] = !inPair[cid]
	}
	if id, ok := t.ids[" "]; ok {
		t.space = id
	}
	for b := range 128 {
		t.single[b] = -1
		if id, ok := t.ids[string(rune(b))]; ok {
			t.single[b] = id
		}
	}
	for b := range 256 {
		t.byteID[b] = -1
	}
	switch {
	case types == nil:
		for b := range 256 {
			if id, ok := t.ids[byteTokenName(byte(b))]; ok {
				t.byteID[b] = id
			} else if 3+b < len(c.tokens) && c.tokens[3+b] == string([]byte{byte(b)}) {
				t.byteID[b] = int32(3 + b)
			}
		}
	case byteFallback:
		for i := len(c.tokens) - 1; i >= 0; i-- { // the lowest id wins
			if b := t.byteOf[i]; b >= 0 {
				t.byteID[b] = int32(i)
			}
		}
	}
	return t, nil
}

const hexDigits = "0123456789ABCDEF"

// byteTokenName returns "<0xXX>" for b.
func byteTokenName(b byte) string {
	return string([]byte{'<', '0', 'x', hexDigits[b>>4], hexDigits[b&15], '>'})
}

// parseByteToken reports whether p is a byte-fallback piece "<0xXX>" (hex digits of
// either case) and which byte it stands for.
func parseByteToken(p string) (byte, bool) {
	if len(p) != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexVal(p[3])
	lo, ok2 := hexVal(p[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Kind returns "llama2c".
func (t *llama2c) Kind() string { return KindLlama2c }

// symbol is one token of the text being merged, in a doubly linked list.
type symbol struct {
	id         int32
	prev, next int32 // indices into the symbol slice, -1 at the ends
}

// candidate is a mergeable adjacent pair as it was when pushed: the symbol left,
// with id lid, followed by a symbol with id rid, which merge into id.
//
// It is still current if left still has id lid and its successor id rid: a symbol's
// piece only grows when it merges (its id changes) and a symbol only leaves the list
// by merging into its predecessor, so an unchanged left symbol still has the same
// successor. (With empty pieces an id could survive a merge, but then the entry
// describes the current pair exactly as a fresh one would, so applying it is right.)
type candidate struct {
	score        float32
	left         int32 // symbol index
	lid, rid, id int32
}

// before orders the heap: higher score first, then leftmost.
func (a *candidate) before(b *candidate) bool {
	return a.score > b.score || (a.score == b.score && a.left < b.left)
}

type pairHeap []candidate

func (h *pairHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].before(&s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *pairHeap) pop() candidate {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s[r].before(&s[l]) {
			m = r
		}
		if !s[m].before(&s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// encoder holds the per-call scratch state of Encode.
type encoder struct {
	t    *llama2c
	syms []symbol
	heap pairHeap
}

// tryPair pushes the pair (l, r) if their concatenation is a piece that may merge.
func (e *encoder) tryPair(l, r int32) {
	if l < 0 || r < 0 {
		return
	}
	lid, rid := e.syms[l].id, e.syms[r].id
	v, ok := e.t.pairs.get(uint64(e.t.canon[lid])<<32 | uint64(e.t.canon[rid]))
	if !ok {
		return
	}
	id := int32(v)
	score := e.t.scores[id]
	if !(score > minMergeScore) {
		return
	}
	e.heap.push(candidate{score: score, left: l, lid: lid, rid: rid, id: id})
}

// Encode converts text to ids as run.c encode() does (see the type's notes).
func (t *llama2c) Encode(text string, addBOS, addEOS bool) ([]int, error) {
	if err := t.checkSpecials(addBOS, addEOS); err != nil {
		return nil, err
	}
	e := encoder{t: t, syms: make([]symbol, 0, len(text)+1), heap: make(pairHeap, 0, 64)}
	add := func(id int32) {
		n := int32(len(e.syms))
		e.syms = append(e.syms, symbol{id: id, prev: n - 1, next: n + 1})
	}
	if text != "" && t.space >= 0 && t.dummy {
		add(t.space)
	}
	for i := 0; i < len(text); {
		j := i + 1
		for j < len(text) && j-i < 4 && text[j]&0xC0 == 0x80 {
			j++
		}
		if c := text[i]; j == i+1 && c < 0x80 && t.single[c] >= 0 {
			add(t.single[c]) // the common case, without hashing
		} else if id, ok := t.ids[text[i:j]]; ok {
			add(id)
		} else if fallback := t.bytesKnown(text[i:j]); fallback {
			for k := i; k < j; k++ {
				add(t.byteID[text[k]])
			}
		} else if t.unk >= 0 {
			add(int32(t.unk))
		} else {
			return nil, fmt.Errorf("tokenizer: llama2c: cannot encode %q: no piece, no byte fallback and no unk id", text[i:j])
		}
		i = j
	}
	n := len(e.syms)
	out := make([]int, 0, n+2)
	if addBOS {
		out = append(out, t.bos)
	}
	// Merge the runs between separating boundaries one at a time. A run's result
	// depends only on its symbols, and natural text repeats its words, so results
	// are remembered (as spans of out) for the rest of the call.
	var (
		seen = map[string][2]int{}
		key  []byte
	)
	lo := 0
	for i := 1; i <= n; i++ {
		if i < n && !t.separates(e.syms[i-1].id, e.syms[i].id) {
			continue
		}
		if i-lo == 1 {
			out = append(out, int(e.syms[lo].id))
			lo = i
			continue
		}
		key = key[:0]
		for _, s := range e.syms[lo:i] {
			key = binary.LittleEndian.AppendUint32(key, uint32(s.id))
		}
		if span, ok := seen[string(key)]; ok {
			out = append(out, out[span[0]:span[1]]...)
		} else {
			e.merge(lo, i)
			start := len(out)
			for _, s := range e.syms[lo:i] {
				if s.id >= 0 { // merged symbols are dead, with id -1
					out = append(out, int(s.id))
				}
			}
			seen[string(key)] = [2]int{start, len(out)}
		}
		lo = i
	}
	if addEOS {
		out = append(out, t.eos)
	}
	return out, nil
}

// separates reports whether no merge can ever join a symbol that ends with the
// piece of id l to one that starts with the piece of id r, where l and r are the ids
// the two symbols had before merging: either is isolated (so it never changes), or
// no piece has the last byte of l's piece followed by the first byte of r's (a
// piece made by joining across the boundary would).
func (t *llama2c) separates(l, r int32) bool {
	if t.isolated[l] || t.isolated[r] {
		return true
	}
	lp, rp := t.tokens[l], t.tokens[r]
	if lp == "" || rp == "" {
		return false
	}
	k := uint16(lp[len(lp)-1])<<8 | uint16(rp[0])
	return t.joins[k>>6]&(1<<(k&63)) == 0
}

// merge applies run.c's merge loop to the symbols lo..hi-1, which no merge can join
// to their neighbours outside: repeatedly the adjacent pair whose concatenation is
// the piece with the highest score (above minMergeScore), leftmost on ties.
func (e *encoder) merge(lo, hi int) {
	if hi-lo < 2 {
		return
	}
	syms := e.syms
	syms[lo].prev = -1
	syms[hi-1].next = -1
	e.heap = e.heap[:0]
	if n := hi - lo; cap(e.heap) < n+n/2 {
		e.heap = make(pairHeap, 0, n+n/2) // a size hint for long runs: grows if needed
	}
	for i := lo; i+1 < hi; i++ {
		e.tryPair(int32(i), int32(i+1))
	}
	for len(e.heap) > 0 {
		c := e.heap.pop()
		l := &syms[c.left]
		if l.id != c.lid || l.next < 0 || syms[l.next].id != c.rid {
			continue // stale: a side has merged since the pair was pushed
		}
		ri := l.next
		r := &syms[ri]
		l.id = c.id
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = c.left
		}
		r.prev, r.next, r.id = -1, -1, -1 // dead
		e.tryPair(l.prev, c.left)
		e.tryPair(c.left, l.next)
	}
}

// bytesKnown reports whether every byte of s has a byte-fallback id.
func (t *llama2c) bytesKnown(s string) bool {
	for i := 0; i < len(s); i++ {
		if t.byteID[s[i]] < 0 {
			return false
		}
	}
	return true
}

// appendPiece appends what id contributes after prev, as run.c decode() does.
func (t *llama2c) appendPiece(dst []byte, prev, id int) []byte {
	if id == t.bos || id == t.eos {
		return dst
	}
	if b := t.byteOf[id]; b >= 0 {
		return append(dst, byte(b))
	}
	p := t.tokens[id]
	if prev == t.bos && prev >= 0 && len(p) > 0 && p[0] == ' ' {
		p = p[1:]
	}
	return append(dst, p...)
}

// Decode converts ids to text; see the type's notes.
func (t *llama2c) Decode(ids []int) (string, error) { return t.decodeAll(ids, t.appendPiece) }

// Piece returns the bytes id contributes after prev.
func (t *llama2c) Piece(prev, id int) ([]byte, error) {
	if err := t.checkID(id); err != nil {
		return nil, err
	}
	return t.appendPiece(nil, prev, id), nil
}
