package tokenizer

import (
	"fmt"
	"math"
	"sort"
	"unicode/utf8"

	"github.com/lmrun/lmrun/format"
)

// unigram is the "unigram" kind: SentencePiece's Unigram model (unigram_model.cc,
// EncodeOptimized). The text is normalized (normalizer), then segmented by Viterbi:
// the best path ending at each character boundary maximizes the float32 sum of its
// pieces' scores (log-probabilities). Only normal and user-defined pieces are
// candidates; a user-defined piece scores length·max_score − 0.1 so that it always
// wins. A character that no piece starts with becomes an unk candidate scoring
// min_score − 10. Ties keep the candidate found first (the earliest start). Then, as
// SentencePiece reports pieces, an unk piece becomes the byte pieces of its UTF-8
// with byte fallback, and otherwise consecutive unks become one.
type unigram struct {
	common
	spDecoder
	norm     normalizer
	scores   []float32
	types    []TokenType
	trie     trie
	unkScore float32 // min normal score - 10
	maxScore float32 // max normal score
	fallback bool
	byteID   [256]int32
}

// unkPenalty is SentencePiece's kUnkPenalty.
const unkPenalty = 10

func newUnigram(c common, m format.Metadata) (*unigram, error) {
	scores, err := requireFloats(m, KindUnigram, KeyScores)
	if err != nil {
		return nil, err
	}
	if len(scores) != len(c.tokens) {
		return nil, fmt.Errorf("tokenizer: unigram: %d scores for %d tokens", len(scores), len(c.tokens))
	}
	if c.unk < 0 {
		return nil, fmt.Errorf("tokenizer: unigram: no unk id (%s)", KeyUnk)
	}
	if len(c.tokens) > math.MaxInt32 {
		return nil, fmt.Errorf("tokenizer: unigram: vocabulary too large")
	}
	types, fallback, err := readSPTypes(&c, m)
	if err != nil {
		return nil, err
	}
	n, err := readNormalizer(m, true, true)
	if err != nil {
		return nil, err
	}
	t := &unigram{
		common:    c,
		spDecoder: newSPDecoder(c.tokens, types, n.addPrefix || n.removeWS),
		norm:      n,
		scores:    scores,
		types:     types,
		fallback:  fallback,
	}
	minS, maxS := float32(math.MaxFloat32), float32(0x1p-126) // FLT_MAX and FLT_MIN, as SentencePiece starts them
	var keys []string
	var ids []int32
	for i, p := range c.tokens {
		s := scores[i]
		if s != s || math.IsInf(float64(s), 0) {
			return nil, fmt.Errorf("tokenizer: unigram: score of id %d is %v", i, s)
		}
		switch types[i] {
		case TypeNormal:
			minS, maxS = min(minS, s), max(maxS, s)
			fallthrough
		case TypeUserDefined:
			if p != "" {
				keys = append(keys, p)
				ids = append(ids, int32(i))
			}
		}
	}
	t.unkScore, t.maxScore = minS-unkPenalty, maxS
	t.trie = buildTrie(keys, ids)
	for b := range 256 {
		t.byteID[b] = -1
	}
	for i := len(c.tokens) - 1; i >= 0; i-- {
		if b := t.byteOf[i]; b >= 0 {
			t.byteID[b] = int32(i)
		}
	}
	if fallback {
		for b := range 256 {
			if t.byteID[b] < 0 {
				return nil, fmt.Errorf("tokenizer: unigram: byte fallback without a piece for byte %#02x", b)
			}
		}
	}
	return t, nil
}

// Kind returns "unigram".
func (t *unigram) Kind() string { return KindUnigram }

// bestNode is the best path ending at a byte position.
type bestNode struct {
	score float32
	start int32 // -1: not reached yet
	id    int32
}

// Encode normalizes text and returns its Viterbi segmentation.
func (t *unigram) Encode(text string, addBOS, addEOS bool) ([]int, error) {
	if err := t.checkSpecials(addBOS, addEOS); err != nil {
		return nil, err
	}
	s := t.norm.normalize(text)
	out := make([]int, 0, len(s)/3+2)
	if addBOS {
		out = append(out, t.bos)
	}
	if s != "" {
		out = t.viterbi(out, s)
	}
	if addEOS {
		out = append(out, t.eos)
	}
	return out, nil
}

func (t *unigram) viterbi(out []int, s string) []int {
	size := len(s)
	best := make([]bestNode, size+1)
	for i := range best {
		best[i].start = -1
	}
	best[0].start = 0
	for start := 0; start < size; {
		base := best[start].score
		mblen := 1
		if s[start] >= utf8.RuneSelf {
			_, mblen = utf8.DecodeRuneInString(s[start:])
		}
		single := false
		node := int32(0)
		for pos := start; pos < size; pos++ {
			node = t.trie.next(node, s[pos])
			if node < 0 {
				break
			}
			id := t.trie.value[node]
			if id < 0 {
				continue
			}
			length := pos + 1 - start
			score := t.scores[id]
			if t.types[id] == TypeUserDefined {
				score = float32(length)*t.maxScore - 0.1
			}
			cand := score + base
			if e := &best[pos+1]; e.start < 0 || cand > e.score {
				*e = bestNode{score: cand, start: int32(start), id: id}
			}
			if length == mblen {
				single = true
			}
		}
		if !single {
			cand := t.unkScore + base
			if e := &best[start+mblen]; e.start < 0 || cand > e.score {
				*e = bestNode{score: cand, start: int32(start), id: int32(t.unk)}
			}
		}
		start += mblen
	}
	// Backtrack, then emit in order.
	n := 0
	for end := size; end > 0; end = int(best[end].start) {
		n++
	}
	path := make([]int32, n) // path[k] = end of the k-th piece
	for end, k := size, n-1; end > 0; end, k = int(best[end].start), k-1 {
		path[k] = int32(end)
	}
	prevUnk := false
	start := 0
	for _, e := range path {
		id := int(best[e].id)
		isUnk := id == t.unk
		switch {
		case isUnk && t.fallback:
			for i := start; i < int(e); i++ {
				out = append(out, int(t.byteID[s[i]]))
			}
		case isUnk && prevUnk:
			// merged into the previous unk
		default:
			out = append(out, id)
		}
		prevUnk = isUnk
		start = int(e)
	}
	return out
}

// Decode converts ids to text as SentencePiece does (see spDecoder).
func (t *unigram) Decode(ids []int) (string, error) { return t.decodeAll(ids, t.appendPiece) }

// Piece returns the bytes id contributes after prev.
func (t *unigram) Piece(prev, id int) ([]byte, error) {
	if err := t.checkID(id); err != nil {
		return nil, err
	}
	if prev >= len(t.tokens) {
		prev = -1
	}
	return t.appendPiece(nil, prev, id), nil
}

// trie is a byte trie over pieces with its edges in one sorted array per node:
// node n's children are labels/child[first[n]:first[n+1]].
type trie struct {
	value  []int32 // id of the piece ending at the node, -1 if none
	first  []int32 // len(value)+1
	labels []byte
	child  []int32
	root   [256]int32 // child of the root by byte, -1 if none (the hot path)
}

// buildTrie builds the trie of keys (non-empty; the first of equal keys keeps its id).
func buildTrie(keys []string, ids []int32) trie {
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return keys[order[a]] < keys[order[b]] })
	sk := make([]string, len(keys))
	sid := make([]int32, len(keys))
	for i, o := range order {
		sk[i], sid[i] = keys[o], ids[o]
	}
	var t trie
	t.value = append(t.value, -1)
	t.first = append(t.first, 0)
	// Breadth-first: a queue of (node, key range, depth), each node's edges
	// appended contiguously when the node is expanded.
	type item struct {
		node, lo, hi, depth int
	}
	queue := []item{{0, 0, len(sk), 0}}
	for qi := 0; qi < len(queue); qi++ {
		it := queue[qi]
		t.first[it.node] = int32(len(t.labels))
		lo := it.lo
		if lo < it.hi && len(sk[lo]) == it.depth {
			lo++ // the key ending here (its value was set by the parent); duplicates follow
			for lo < it.hi && len(sk[lo]) == it.depth {
				lo++
			}
		}
		for lo < it.hi {
			b := sk[lo][it.depth]
			hi := lo
			for hi < it.hi && sk[hi][it.depth] == b {
				hi++
			}
			child := len(t.value)
			v := int32(-1)
			if len(sk[lo]) == it.depth+1 {
				v = sid[lo]
			}
			t.value = append(t.value, v)
			t.first = append(t.first, 0)
			t.labels = append(t.labels, b)
			t.child = append(t.child, int32(child))
			queue = append(queue, item{child, lo, hi, it.depth + 1})
			lo = hi
		}
	}
	// Nodes are numbered in queue order, so node n+1 is expanded right after node
	// n and first[n+1] is where node n's edges end; a sentinel closes the last.
	t.first = append(t.first, int32(len(t.labels)))
	for i := range t.root {
		t.root[i] = -1
	}
	for k := t.first[0]; k < t.first[1]; k++ {
		t.root[t.labels[k]] = t.child[k]
	}
	return t
}

// next returns the child of node by b, or -1.
func (t *trie) next(node int32, b byte) int32 {
	if node == 0 {
		return t.root[b]
	}
	lo, hi := t.first[node], t.first[node+1]
	for lo < hi {
		m := (lo + hi) / 2
		switch l := t.labels[m]; {
		case l == b:
			return t.child[m]
		case l < b:
			lo = m + 1
		default:
			hi = m
		}
	}
	return -1
}
