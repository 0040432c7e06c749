package chat_test

import (
	"slices"
	"testing"

	"github.com/lmrun/lmrun/chat"
)

// TestSpecialsEncodeEnds checks that special tokens are found by type, longest first,
// written text is split at them, and the template's end of turn is found as an id when
// the vocabulary has it and as text when not.
func TestSpecialsEncodeEnds(t *testing.T) {
	vocab := []string{"a", "<|im_start|>", "<|im_end|>", "<|im", "b"}
	types := []int64{1, 3, 3, 4, 1}
	sp := chat.Specials(types, len(vocab), func(id int) (string, error) { return vocab[id], nil })
	want := []chat.Special{{"<|im_start|>", 1}, {"<|im_end|>", 2}, {"<|im", 3}}
	if !slices.Equal(sp, want) {
		t.Fatalf("Specials = %v, want %v", sp, want)
	}
	bytes := func(s string) ([]int, error) {
		ids := make([]int, len(s))
		for i := range s {
			ids[i] = 100 + int(s[i])
		}
		return ids, nil
	}
	got := chat.Encode("<|im_start|>ab<|im_end|><|imx", sp, bytes)
	if w := []int{1, 100 + 'a', 100 + 'b', 2, 3, 100 + 'x'}; !slices.Equal(got, w) {
		t.Errorf("Encode = %v, want %v", got, w)
	}
	src, _ := chat.Builtin("chatml")
	tmpl, err := chat.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		specials []chat.Special
		ids      []int
		texts    []string
	}{{sp, []int{2}, nil}, {nil, nil, []string{"<|im_end|>"}}} {
		ids, texts, err := chat.Ends(tmpl, chat.Options{}, tc.specials)
		if err != nil || !slices.Equal(ids, tc.ids) || !slices.Equal(texts, tc.texts) {
			t.Errorf("Ends with %d specials = %v, %v, %v; want %v, %v", len(tc.specials), ids, texts, err, tc.ids, tc.texts)
		}
	}
}
