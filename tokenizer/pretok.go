package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// GPT-2's pre-tokenizer is the regular expression
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// applied left to right, each match the first alternative that matches at the
// current position. gpt2Next implements it by hand with Unicode classes: \p{L} is
// unicode.L, \p{N} unicode.N, \s the White_Space property (unicode.White_Space, what
// Rust's regex, Oniguruma and Python's regex module use). A byte that is not part of
// valid UTF-8 counts as one [^\s\p{L}\p{N}] character, so every byte string splits
// into words that concatenate back to it.

// Character classes of the pre-tokenizer.
const (
	clsOther  = iota // [^\s\p{L}\p{N}], and invalid bytes
	clsLetter        // \p{L}
	clsNumber        // \p{N}
	clsSpace         // \s
)

// asciiClass is the class of every ASCII byte.
var asciiClass = func() (t [128]uint8) {
	for b := range 128 {
		r := rune(b)
		switch {
		case unicode.IsLetter(r):
			t[b] = clsLetter
		case unicode.IsNumber(r):
			t[b] = clsNumber
		case unicode.Is(unicode.White_Space, r):
			t[b] = clsSpace
		default:
			t[b] = clsOther
		}
	}
	return t
}()

// classAt returns the class of the character at s[i] and its length in bytes.
func classAt(s string, i int) (int, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return int(asciiClass[c]), 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && n == 1 {
		return clsOther, 1
	}
	switch {
	case unicode.IsLetter(r):
		return clsLetter, n
	case unicode.IsNumber(r):
		return clsNumber, n
	case unicode.Is(unicode.White_Space, r):
		return clsSpace, n
	}
	return clsOther, n
}

// gpt2Next returns the end of the pre-token that starts at s[i] (i < len(s)).
func gpt2Next(s string, i int) int {
	// 's|'t|'re|'ve|'m|'ll|'d
	if s[i] == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v':
			if i+2 < len(s) && s[i+2] == 'e' {
				return i + 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2] == 'l' {
				return i + 3
			}
		}
	}
	start := i
	cls, n := classAt(s, i)
	// " ?X+" for X a letter, a number or other: an optional U+0020 joins the run
	// that follows it.
	if s[i] == ' ' && i+1 < len(s) {
		if c2, n2 := classAt(s, i+1); c2 != clsSpace {
			cls, n = c2, n2
			i++
		}
	}
	if cls != clsSpace {
		j := i + n
		for j < len(s) {
			c, m := classAt(s, j)
			if c != cls {
				break
			}
			j += m
		}
		return j
	}
	// A white-space run [start, j). \s+(?!\S): the whole run when nothing but the
	// end follows it, else the run without its last character, provided that leaves
	// at least one; otherwise \s+ takes the single character.
	j, last := i+n, start
	for j < len(s) {
		c, m := classAt(s, j)
		if c != clsSpace {
			break
		}
		last = j
		j += m
	}
	if j == len(s) || last == start {
		return j
	}
	return last
}

// Llama 3's pre-tokenizer (`tokenizer.pre` "llama-bpe") is the regular expression
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// and Qwen2's ("qwen2") the same with \p{N} for \p{N}{1,3}. llama3Next implements
// both by hand, with the classes of gpt2Next; maxDigits is 3 or 1. The contractions
// are case-insensitive for ASCII letters.
func llama3Next(s string, i, maxDigits int) int {
	c := s[i]
	if c == '\'' && i+1 < len(s) {
		switch s[i+1] | 0x20 {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v':
			if i+2 < len(s) && s[i+2]|0x20 == 'e' {
				return i + 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2]|0x20 == 'l' {
				return i + 3
			}
		}
	}
	cls, n := classAt(s, i)
	switch cls {
	case clsLetter: // \p{L}+
		return runOf(s, i+n, clsLetter)
	case clsNumber: // \p{N}{1,maxDigits}
		j := i + n
		for k := 1; k < maxDigits && j < len(s); k++ {
			c2, m := classAt(s, j)
			if c2 != clsNumber {
				break
			}
			j += m
		}
		return j
	}
	// [^\r\n\p{L}\p{N}]\p{L}+: one other or white-space character (not a line
	// break) joins the letters that follow it.
	if c != '\r' && c != '\n' && i+n < len(s) {
		if c2, m := classAt(s, i+n); c2 == clsLetter {
			return runOf(s, i+n+m, clsLetter)
		}
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	j := i
	if c == ' ' && i+1 < len(s) {
		if c2, _ := classAt(s, i+1); c2 == clsOther {
			j = i + 1
			cls = clsOther
		}
	}
	if cls == clsOther {
		j = runOf(s, j, clsOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// A white-space run [i, j). \s*[\r\n]+: up to its last line break, if it has
	// one; else \s+(?!\S) and \s+ as in gpt2Next.
	j, last, nl := i+n, i, -1
	if c == '\r' || c == '\n' {
		nl = i + 1
	}
	for j < len(s) {
		c2, m := classAt(s, j)
		if c2 != clsSpace {
			break
		}
		if s[j] == '\r' || s[j] == '\n' {
			nl = j + 1
		}
		last = j
		j += m
	}
	switch {
	case nl >= 0:
		return nl
	case j == len(s) || last == i:
		return j
	}
	return last
}

// runOf returns the end of the run of class cls characters starting at s[j].
func runOf(s string, j, cls int) int {
	for j < len(s) {
		c, m := classAt(s, j)
		if c != cls {
			break
		}
		j += m
	}
	return j
}

// smollmNext is SmolLM's pre-tokenizer (`tokenizer.pre` "smollm"): Hugging Face's
// Digits(individual_digits) isolates every \p{N} character, then GPT-2's regular
// expression splits the text between them. *segEnd caches the end of the current
// digit-free segment, so a long segment is scanned once.
func smollmNext(s string, i int, segEnd *int) int {
	cls, n := classAt(s, i)
	if cls == clsNumber {
		return i + n
	}
	if *segEnd <= i {
		e := i
		for e < len(s) {
			c, m := classAt(s, e)
			if c == clsNumber {
				break
			}
			e += m
		}
		*segEnd = e
	}
	return gpt2Next(s[:*segEnd], i)
}
