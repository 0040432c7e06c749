package tokenizer

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/lmrun/lmrun/format"
)

// spaceSymbol is SentencePiece's "▁" (U+2581), which stands for a space in pieces.
const spaceSymbol = "\u2581"

// normalizer is SentencePiece's Normalizer (normalizer.cc): it rewrites the text by
// the longest matching rule at each position, turns spaces into "▁", optionally
// drops leading, trailing and repeated white space, and prepends the dummy "▁".
//
// The rules are the model's precompiled_charsmap when it has one: a Darts-clone
// double-array trie from UTF-8 prefixes to replacement strings, exactly what
// SentencePiece (and Hugging Face's Precompiled normalizer) apply, so the Unicode
// version of the rules is the model's own. Without one, the rules are named:
// "identity"; "nfkc" (Unicode NFKC from golang.org/x/text); "nmt_nfkc" (NMT's
// clean-up first: control characters removed, white-space-like characters to a
// space, then NFKC); "nfkc_cf" and "nmt_nfkc_cf" (then case folding). A byte that is
// not valid UTF-8 becomes U+FFFD, as in SentencePiece.
type normalizer struct {
	cm        *charsmap // nil: rule
	rule      string
	addPrefix bool // add_dummy_prefix
	removeWS  bool // remove_extra_whitespaces
}

// normalizerRules lists the rule names a normalizer without charsmap understands.
var normalizerRules = map[string]bool{"": true, "identity": true, "nfkc": true, "nmt_nfkc": true, "nfkc_cf": true, "nmt_nfkc_cf": true}

func readNormalizer(m format.Metadata, defPrefix, defRemoveWS bool) (normalizer, error) {
	var n normalizer
	var err error
	if n.addPrefix, err = optBool(m, KeyAddSpacePrefix, defPrefix); err != nil {
		return n, err
	}
	if n.removeWS, err = optBool(m, KeyRemoveExtraWhitespaces, defRemoveWS); err != nil {
		return n, err
	}
	rule, _, err := m.String(KeyNormalizer)
	if err != nil {
		return n, fmt.Errorf("tokenizer: %w", err)
	}
	cm, ok, err := m.String(KeyCharsmap)
	if err != nil {
		return n, fmt.Errorf("tokenizer: %w", err)
	}
	if ok && cm != "" {
		if n.cm, err = parseCharsmap(cm); err != nil {
			return n, fmt.Errorf("tokenizer: %s: %w", KeyCharsmap, err)
		}
		return n, nil
	}
	if !normalizerRules[rule] {
		return n, fmt.Errorf("tokenizer: %s %q is not supported without a precompiled charsmap", KeyNormalizer, rule)
	}
	n.rule = rule
	return n, nil
}

// identity reports whether the normalizer only maps spaces, adds the prefix and
// replaces invalid bytes: then valid text without "▁" needs no rewriting at all.
func (n *normalizer) identity() bool {
	return n.cm == nil && (n.rule == "" || n.rule == "identity") && !n.removeWS
}

// normalize returns text normalized, with "▁" for every space.
func (n *normalizer) normalize(text string) string {
	if n.cm == nil {
		text = n.applyRule(text)
	}
	var out strings.Builder
	out.Grow(len(text) + len(text)/4 + 3)
	i := 0
	if n.removeWS {
		for i < len(text) {
			r, c := n.prefix(text[i:])
			if r != " " {
				break
			}
			i += c
		}
	}
	if i == len(text) {
		return ""
	}
	if n.addPrefix {
		out.WriteString(spaceSymbol)
	}
	prevSpace := n.removeWS
	for i < len(text) {
		r, c := n.prefix(text[i:])
		if prevSpace {
			r = strings.TrimLeft(r, " ")
		}
		if r != "" {
			for k := 0; k < len(r); k++ {
				if r[k] == ' ' {
					out.WriteString(spaceSymbol)
				} else {
					out.WriteByte(r[k])
				}
			}
			prevSpace = r[len(r)-1] == ' '
		}
		i += c
		if !n.removeWS {
			prevSpace = false
		}
	}
	s := out.String()
	if n.removeWS {
		for strings.HasSuffix(s, spaceSymbol) {
			s = s[:len(s)-len(spaceSymbol)]
		}
	}
	return s
}

// replacementChar is what SentencePiece puts for one byte of invalid UTF-8.
const replacementChar = "\uFFFD"

// prefix returns the replacement of the longest rule matching a prefix of s and the
// number of bytes it consumes (at least 1).
func (n *normalizer) prefix(s string) (string, int) {
	if n.cm != nil {
		if repl, l := n.cm.match(s); l > 0 {
			return repl, l
		}
	}
	if s[0] < utf8.RuneSelf {
		return s[:1], 1
	}
	r, l := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && l == 1 {
		return replacementChar, 1
	}
	return s[:l], l
}

// nmtSpace lists the characters NMT's clean-up turns into a space; nmtDrop
// reports the control characters it removes. (Hugging Face's Nmt also turns U+200D
// into a space; SentencePiece's nmt_nfkc keeps the zero-width joiner of emoji.)
func nmtSpace(r rune) bool {
	switch r {
	case 0x09, 0x0A, 0x0C, 0x0D, 0x1680, 0x200B, 0x200C, 0x200E, 0x200F, 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD:
		return true
	}
	return false
}

func nmtDrop(r rune) bool {
	return (0x01 <= r && r <= 0x08) || r == 0x0B || (0x0E <= r && r <= 0x1F) || r == 0x7F || r == 0x8F || r == 0x9F
}

// applyRule applies a named rule set to the whole text (NFKC is not a per-prefix
// rewriting). A byte of invalid UTF-8 becomes U+FFFD after the rules, as the
// charsmap path gives it.
func (n *normalizer) applyRule(text string) string {
	if utf8.ValidString(text) {
		return n.applyRuleValid(text)
	}
	var sb strings.Builder
	for len(text) > 0 {
		i := 0
		for i < len(text) {
			r, size := utf8.DecodeRuneInString(text[i:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			i += size
		}
		sb.WriteString(n.applyRuleValid(text[:i]))
		if i < len(text) {
			sb.WriteString(replacementChar)
			i++
		}
		text = text[i:]
	}
	return sb.String()
}

func (n *normalizer) applyRuleValid(text string) string {
	rule := n.rule
	if strings.HasPrefix(rule, "nmt_") {
		text = strings.Map(func(r rune) rune {
			switch {
			case nmtDrop(r):
				return -1
			case nmtSpace(r):
				return ' '
			}
			return r
		}, text)
		rule = rule[4:]
	}
	switch rule {
	case "nfkc":
		text = nfkc(text)
	case "nfkc_cf":
		text = nfkc(cases.Fold().String(nfkc(text)))
	}
	return text
}

// fullwidthTilde is the one character SentencePiece's NFKC rules leave alone
// (Japanese uses it differently from "~").
const fullwidthTilde = "～"

func nfkc(s string) string {
	if !strings.Contains(s, fullwidthTilde) {
		return norm.NFKC.String(s)
	}
	parts := strings.Split(s, fullwidthTilde)
	for i, p := range parts {
		parts[i] = norm.NFKC.String(p)
	}
	return strings.Join(parts, fullwidthTilde)
}

// charsmap is SentencePiece's precompiled_charsmap: a u32 byte length, a
// Darts-clone double array of that many bytes (u32 units), then the NUL-terminated
// replacement strings the trie's values point into.
type charsmap struct {
	units []uint32
	repl  string
	// first marks the bytes some rule starts with; other bytes skip the trie.
	first [256]bool
}

// maxTrieResults is how many prefix matches SentencePiece considers (the longest
// of the first 32 wins).
const maxTrieResults = 32

func parseCharsmap(b string) (*charsmap, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%d bytes, shorter than the header", len(b))
	}
	size := uint64(binary.LittleEndian.Uint32([]byte(b[:4])))
	if size%4 != 0 || size > uint64(len(b)-4) || size == 0 {
		return nil, fmt.Errorf("trie of %d bytes in %d", size, len(b)-4)
	}
	c := &charsmap{units: make([]uint32, size/4), repl: b[4+size:]}
	for i := range c.units {
		c.units[i] = binary.LittleEndian.Uint32([]byte(b[4+4*i : 8+4*i]))
	}
	root := dartsOffset(c.units[0])
	for x := range 256 {
		pos := root ^ uint32(x)
		c.first[x] = int(pos) < len(c.units) && dartsLabel(c.units[pos]) == uint32(x)
	}
	return c, nil
}

func dartsOffset(u uint32) uint32 { return (u >> 10) << ((u & (1 << 9)) >> 6) }
func dartsLabel(u uint32) uint32  { return u & ((1 << 31) | 0xFF) }
func dartsLeaf(u uint32) bool     { return (u>>8)&1 == 1 }
func dartsValue(u uint32) uint32  { return u & (1<<31 - 1) }

// match returns the replacement of the longest rule that is a prefix of s, and its
// length (0 when none matches), as Darts' commonPrefixSearch finds them.
func (c *charsmap) match(s string) (string, int) {
	if !c.first[s[0]] {
		return "", 0
	}
	units := c.units
	pos := dartsOffset(units[0])
	best, bestLen, found := uint32(0), 0, 0
	for i := 0; i < len(s); i++ {
		pos ^= uint32(s[i])
		if int(pos) >= len(units) {
			break
		}
		u := units[pos]
		if dartsLabel(u) != uint32(s[i]) {
			break
		}
		pos ^= dartsOffset(u)
		if dartsLeaf(u) {
			if int(pos) >= len(units) {
				break
			}
			if found < maxTrieResults {
				best, bestLen = dartsValue(units[pos]), i+1
			}
			found++
		}
	}
	if bestLen == 0 || int(best) >= len(c.repl) {
		return "", 0
	}
	r := c.repl[best:]
	if z := strings.IndexByte(r, 0); z >= 0 {
		r = r[:z]
	}
	return r, bestLen
}
