package chat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lmrun/lmrun/internal/fixtures"
)

// corpusDate is the date the expected renders were made at (SOURCE_DATE_EPOCH=1768435200).
var corpusDate = time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)

type corpusCase struct {
	Template            string  `json:"template"`
	Conversation        string  `json:"conversation"`
	AddGenerationPrompt bool    `json:"add_generation_prompt"`
	Output              *string `json:"output"`
	Error               *string `json:"error"`
}

// TestCorpus renders every template × conversation × add_generation_prompt of
// testdata/chat and compares with Python jinja2's renders (gen_expected.py): the same
// bytes where Python renders, an error where Python raises.
func TestCorpus(t *testing.T) {
	dir := fixtures.Path(t, "chat")
	var cases []corpusCase
	readJSON(t, filepath.Join(dir, "expected.json"), &cases)
	var special map[string]struct {
		BOS string `json:"bos_token"`
		EOS string `json:"eos_token"`
	}
	readJSON(t, filepath.Join(dir, "special_tokens.json"), &special)
	identical, failed := 0, 0
	for _, c := range cases {
		src, err := os.ReadFile(filepath.Join(dir, "templates", c.Template))
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, "conversations", c.Conversation))
		if err != nil {
			t.Fatal(err)
		}
		conv, err := DecodeConversation(data)
		if err != nil {
			t.Fatal(err)
		}
		name := c.Template + "/" + c.Conversation
		if c.AddGenerationPrompt {
			name += "/gen"
		}
		got, err := func() (string, error) {
			tmpl, err := Parse(string(src))
			if err != nil {
				return "", err
			}
			tok := special[c.Template]
			return tmpl.Render(conv, Options{AddGenerationPrompt: c.AddGenerationPrompt, BOS: tok.BOS, EOS: tok.EOS, Now: corpusDate})
		}()
		switch {
		case c.Error != nil && err != nil:
			failed++
		case c.Error != nil:
			t.Errorf("%s: rendered, Python raised %s", name, *c.Error)
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case got != *c.Output:
			t.Errorf("%s: render differs\n got %q\nwant %q", name, got, *c.Output)
		default:
			identical++
		}
	}
	t.Logf("%d cases: %d renders identical, %d errors where Python raises", len(cases), identical, failed)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
