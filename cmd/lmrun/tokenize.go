package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/tokenizer"
)

// loadTokenizer loads a checkpoint's tokenizer (the model's tensors are mapped, not
// read).
func loadTokenizer(c *cli.Context) (*engine.Model, tokenizer.Tokenizer, error) {
	m, err := openModel(c, engine.Options{Threads: 1})
	if err != nil {
		return nil, nil, err
	}
	if m.Tokenizer() == nil {
		m.Close()
		return nil, nil, fmt.Errorf("%s carries no tokenizer; give one with --tokenizer FILE", c.String("model"))
	}
	return m, m.Tokenizer(), nil
}

// readText returns the -f file ("-" for standard input), else the arguments joined by
// spaces.
func readText(c *cli.Context) (string, error) {
	if f := c.String("file"); f != "" {
		if c.NArg() > 0 {
			return "", errors.New("give the text as arguments or with -f FILE, not both")
		}
		b, err := readFileArg(c, f)
		return string(b), err
	}
	if c.NArg() == 0 {
		return "", errors.New("no text: give it as arguments or with -f FILE")
	}
	return strings.Join(c.Args().Slice(), " "), nil
}

func tokenizeCommand() *cli.Command {
	return &cli.Command{
		Name:  "tokenize",
		Usage: "print the token ids of a text, with the model's tokenizer",
		UsageText: "lmrun tokenize -m MODEL [--tokenizer FILE] (TEXT | -f FILE) [--pieces] [--json] [--bos=false] [--eos]\n\n" +
			"   lmrun tokenize -m stories260K.lmc \"Once upon a time\"\n" +
			"   lmrun tokenize -m gpt2.gguf --pieces -f story.txt",
		Description: "Prints the ids on one line, separated by spaces. BOS comes first when the model adds it\n" +
			"to prompts (lmrun info shows tokenizer.add_bos); --bos and --bos=false override that.\n" +
			"Special tokens written in the text (\"<s>\", \"<|endoftext|>\") are encoded as text.\n" +
			"--pieces prints one token a line instead: the id and the vocabulary entry, Go-quoted.\n" +
			"--json prints {\"ids\": [...], \"pieces\": [...]}.",
		Flags: []cli.Flag{
			modelFlag, tokenizerFlag,
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the text from `FILE` (- for standard input)"},
			&cli.BoolFlag{Name: "pieces", Usage: "print each token's id and vocabulary entry, one a line"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "bos", Usage: "start with BOS", DefaultText: "as the model does"},
			&cli.BoolFlag{Name: "eos", Usage: "end with EOS"},
		},
		Action: func(c *cli.Context) error {
			text, err := readText(c)
			if err != nil {
				return err
			}
			m, tok, err := loadTokenizer(c)
			if err != nil {
				return err
			}
			defer m.Close()
			bos := tok.AddBOS()
			if c.IsSet("bos") {
				bos = c.Bool("bos")
			}
			ids, err := tok.Encode(text, bos, c.Bool("eos"))
			if err != nil {
				return err
			}
			pieces := make([]string, len(ids))
			for i, id := range ids {
				if pieces[i], err = tok.Token(id); err != nil {
					return err
				}
			}
			out := c.App.Writer
			switch {
			case c.Bool("json"):
				return writeJSON(out, struct {
					IDs    []int    `json:"ids"`
					Pieces []string `json:"pieces"`
				}{ids, pieces})
			case c.Bool("pieces"):
				for i, id := range ids {
					fmt.Fprintf(out, "%d\t%s\n", id, strconv.Quote(pieces[i]))
				}
			default:
				s := make([]string, len(ids))
				for i, id := range ids {
					s[i] = strconv.Itoa(id)
				}
				fmt.Fprintln(out, strings.Join(s, " "))
			}
			fmt.Fprintf(c.App.ErrWriter, "%d tokens (%s tokenizer, %d ids)\n", len(ids), tok.Kind(), tok.VocabSize())
			return nil
		},
	}
}

func detokenizeCommand() *cli.Command {
	return &cli.Command{
		Name:  "detokenize",
		Usage: "print the text of token ids, with the model's tokenizer",
		UsageText: "lmrun detokenize -m MODEL [--tokenizer FILE] ID... [--raw]\n\n" +
			"   lmrun detokenize -m stories260K.lmc 1 403 407 261 378\n" +
			"   lmrun detokenize -m gpt2.lmc 15496,995",
		Description: "Ids are separated by spaces or commas. BOS and EOS decode to nothing. The text is\n" +
			"followed by a newline unless --raw is given; bytes of a character split by the ids are\n" +
			"written as they are.",
		Flags: []cli.Flag{
			modelFlag, tokenizerFlag,
			&cli.BoolFlag{Name: "raw", Usage: "write exactly the decoded bytes, without a final newline"},
		},
		Action: func(c *cli.Context) error {
			var ids []int
			for _, a := range c.Args().Slice() {
				for _, f := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' }) {
					id, err := strconv.Atoi(f)
					if err != nil {
						return fmt.Errorf("%q is not a token id", f)
					}
					ids = append(ids, id)
				}
			}
			if len(ids) == 0 {
				return errors.New("no token ids given")
			}
			m, tok, err := loadTokenizer(c)
			if err != nil {
				return err
			}
			defer m.Close()
			text, err := tok.Decode(ids)
			if err != nil {
				return err
			}
			if !c.Bool("raw") {
				text += "\n"
			}
			_, err = io.WriteString(c.App.Writer, text)
			return err
		},
	}
}

// writeJSON writes v as one line of JSON, without escaping <, > and &.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
