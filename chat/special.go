package chat

import (
	"fmt"
	"sort"
	"strings"
)

// Special is a token a template writes as text ("<|im_start|>") and its id.
type Special struct {
	Text string
	ID   int
}

// Specials returns the control and user-defined tokens (token types 3 and 4 of a
// vocabulary's types) as templates write them, longest first; token returns a token's
// vocabulary entry.
func Specials(types []int64, vocab int, token func(id int) (string, error)) []Special {
	var out []Special
	for id, t := range types {
		if (t != 3 && t != 4) || id >= vocab {
			continue
		}
		s, err := token(id)
		if err != nil || strings.TrimSpace(s) == "" {
			continue
		}
		out = append(out, Special{strings.TrimSpace(s), id})
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Text) > len(out[j].Text) })
	return out
}

// Encode tokenizes rendered text: the special tokens (longest first, as Specials
// returns them) written in it are their ids, the text between them is given to encode.
// A part encode fails on adds no ids.
func Encode(text string, specials []Special, encode func(string) ([]int, error)) []int {
	var ids []int
	for text != "" {
		at, sp := len(text), Special{}
		for _, s := range specials {
			if i := strings.Index(text, s.Text); i >= 0 && i < at { // longest first: ties keep the longest
				at, sp = i, s
			}
		}
		if at > 0 {
			if part, err := encode(text[:at]); err == nil {
				ids = append(ids, part...)
			}
		}
		if sp.Text == "" {
			break
		}
		ids = append(ids, sp.ID)
		text = text[at+len(sp.Text):]
	}
	return ids
}

// Ends returns what ends a reply rendered with t: the end-of-turn strings (EndOfTurn,
// and o.EOS) that t writes after a user and an assistant message, as token ids when
// specials has them, else as text.
func Ends(t *Template, o Options, specials []Special) (ids []int, texts []string, err error) {
	probe := &Conversation{}
	probe.Append("user", "x")
	probe.Append("assistant", "y")
	rendered, err := t.Render(probe, Options{BOS: o.BOS, EOS: o.EOS, Now: o.Now})
	if err != nil {
		return nil, nil, fmt.Errorf("rendering a user and an assistant message: %w", err)
	}
	ends := EndOfTurn()
	if o.EOS != "" {
		ends = append(ends, o.EOS)
	}
next:
	for _, e := range ends {
		if !strings.Contains(rendered, e) {
			continue
		}
		for _, sp := range specials {
			if sp.Text == e {
				ids = append(ids, sp.ID)
				continue next
			}
		}
		texts = append(texts, e)
	}
	return ids, texts, nil
}
