package main

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/format/tokfile"
	"github.com/lmrun/lmrun/tokenizer"
)

// loadTokenizer loads the tokenizer of the -m checkpoint (the model's tensors are
// mapped, not read), or, without -m, the --tokenizer file or directory alone. The
// returned closer releases the model (a no-op without one).
func loadTokenizer(c *cli.Context) (io.Closer, tokenizer.Tokenizer, error) {
	if c.String("model") == "" {
		path := c.String("tokenizer")
		if path == "" {
			return nil, nil, errors.New("give a model with -m MODEL or a tokenizer with --tokenizer FILE|DIR")
		}
		tok, err := readTokenizer(path)
		return nopCloser{}, tok, err
	}
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

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// readTokenizer reads a tokenizer without a model: a GGUF file (vocabulary-only ones
// included) by its tokenizer.ggml.* keys, a gzipped tokenizer.json or
// tokenizer.model, or any file or directory tokfile.Read knows.
func readTokenizer(path string) (tokenizer.Tokenizer, error) {
	var head [4]byte
	if f, err := os.Open(path); err == nil {
		n, _ := io.ReadFull(f, head[:])
		f.Close()
		if n < 4 {
			head = [4]byte{}
		}
	}
	var md format.Metadata
	var err error
	switch {
	case string(head[:]) == "GGUF":
		md, err = ggufTokenizer(path)
	case head[0] == 0x1f && head[1] == 0x8b:
		md, err = gzipTokenizer(path)
	default:
		md, err = tokfile.Read(path, tokfile.Options{})
	}
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromMetadata(md)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return tok, nil
}

// ggufTokenizer returns the tokenizer keys of the GGUF file at path.
func ggufTokenizer(path string) (format.Metadata, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	md := format.Metadata{}
	for _, kv := range f.KV {
		// general.name: llama.cpp sets Phi-3's token attributes by it.
		if !strings.HasPrefix(kv.Key, "tokenizer.") && kv.Key != "general.name" {
			continue
		}
		if v, ok := gguf.MetaValue(kv.Value); ok {
			md[kv.Key] = v
		}
	}
	return md, nil
}

// maxGzipTokenizer bounds a decompressed tokenizer file (Qwen2's tokenizer.json
// is 11 MB).
const maxGzipTokenizer = 256 << 20

// gzipTokenizer reads a gzipped tokenizer.json or SentencePiece model.
func gzipTokenizer(path string) (format.Metadata, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, maxGzipTokenizer+1))
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if len(b) > maxGzipTokenizer {
		return nil, fmt.Errorf("tokenizer %s: more than %d bytes decompressed", path, maxGzipTokenizer)
	}
	var md format.Metadata
	switch tokfile.DetectBytes(b) {
	case tokfile.HFTokenizer:
		md, err = tokfile.ParseHFTokenizer(b, nil)
	case tokfile.SentencePiece:
		md, err = tokfile.ParseSentencePiece(b)
	default:
		return nil, fmt.Errorf("tokenizer %s: a gzipped file must be a tokenizer.json or a SentencePiece model", path)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return md, nil
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

// optModelFlag is -m for the commands that can do without a model.
var optModelFlag = &cli.StringFlag{Name: "model", Aliases: []string{"m"},
	Usage: "model `PATH` whose tokenizer to use (see lmrun run); without it, --tokenizer alone"}

func tokenizeCommand() *cli.Command {
	return &cli.Command{
		Name:  "tokenize",
		Usage: "print the token ids of a text, with the model's tokenizer",
		UsageText: "lmrun tokenize (-m MODEL [--tokenizer FILE] | --tokenizer FILE|DIR) (TEXT | -f FILE) [--special] [--pieces] [--json] [--bos=false] [--eos]\n\n" +
			"   lmrun tokenize -m stories260K.lmc \"Once upon a time\"\n" +
			"   lmrun tokenize -m gpt2.gguf --pieces -f story.txt\n" +
			"   lmrun tokenize --tokenizer Meta-Llama-3-8B/tokenizer.json --special \"<|begin_of_text|>Hi\"",
		Description: "Prints the ids on one line, separated by spaces. BOS comes first when the model adds it\n" +
			"to prompts (lmrun info shows tokenizer.add_bos); --bos and --bos=false override that.\n" +
			"Special tokens written in the text (\"<s>\", \"<|endoftext|>\") are encoded as text unless\n" +
			"--special is given (gpt2 and sentencepiece_bpe tokenizers).\n" +
			"Without -m, --tokenizer names the tokenizer alone: a tokenizer.json (gzipped too),\n" +
			"tokenizer.model, llama2.c tokenizer.bin, a GGUF file (vocabulary-only ones too) or a\n" +
			"Hugging Face directory.\n" +
			"--pieces prints one token a line instead: the id and the vocabulary entry, Go-quoted.\n" +
			"--json prints {\"ids\": [...], \"pieces\": [...]}.",
		Flags: []cli.Flag{
			optModelFlag, tokenizerFlag,
			&cli.BoolFlag{Name: "special", Usage: "match special tokens written in the text (\"<|im_start|>\", \"[INST]\")"},
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
			var ids []int
			if c.Bool("special") {
				ids, err = tokenizer.EncodeSpecial(tok, text, bos, c.Bool("eos"))
			} else {
				ids, err = tok.Encode(text, bos, c.Bool("eos"))
			}
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
		UsageText: "lmrun detokenize (-m MODEL [--tokenizer FILE] | --tokenizer FILE|DIR) ID... [--raw]\n\n" +
			"   lmrun detokenize -m stories260K.lmc 1 403 407 261 378\n" +
			"   lmrun detokenize -m gpt2.lmc 15496,995",
		Description: "Ids are separated by spaces or commas. BOS and EOS decode to nothing. The text is\n" +
			"followed by a newline unless --raw is given; bytes of a character split by the ids are\n" +
			"written as they are.",
		Flags: []cli.Flag{
			optModelFlag, tokenizerFlag,
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
