package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lmrun/lmrun/chat"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/tokenizer"
)

// chatTemplateKey is the metadata key of a model's chat template.
const chatTemplateKey = "tokenizer.chat_template"

// chatTemplateFlag names a template file or a built-in template.
var chatTemplateFlag = &cli.StringFlag{Name: "chat-template",
	Usage: "chat template `FILE` (Jinja) or built-in NAME (" + strings.Join(chat.BuiltinNames(), ", ") + ") instead of the model's"}

func renderCommand() *cli.Command {
	return &cli.Command{
		Name:  "render",
		Usage: "print a conversation rendered with a chat template, as the model would read it",
		UsageText: "lmrun render (-m MODEL | --chat-template FILE) --messages FILE.json [--add-generation-prompt] [--bos-token S] [--eos-token S]\n\n" +
			"   lmrun render -m model.gguf --messages conv.json --add-generation-prompt\n" +
			"   lmrun render --chat-template chatml --messages conv.json",
		Description: "FILE.json is {\"messages\": [{\"role\": ..., \"content\": ...}, ...], \"tools\": [...]} (tools optional).\n" +
			"The template is --chat-template (a file, or a built-in name), else the model's\n" +
			"tokenizer.chat_template (GGUF's key; tokenizer_config.json's chat_template for Hugging Face\n" +
			"models). It is rendered as Hugging Face transformers' apply_chat_template does; bos_token and\n" +
			"eos_token are the model's, unless --bos-token/--eos-token say otherwise. strftime_now\n" +
			"formats the clock, or SOURCE_DATE_EPOCH (seconds, UTC) when it is set.\n\n" +
			"Prints the rendered text byte for byte, with no newline added. A template error (a\n" +
			"raise_exception, a bad expression) is an error: nothing is printed, the exit status is 1.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "model `PATH` whose template and special tokens to use"},
			tokenizerFlag, chatTemplateFlag,
			&cli.StringFlag{Name: "messages", Required: true, Usage: "conversation `FILE` (JSON; - for standard input)"},
			&cli.BoolFlag{Name: "add-generation-prompt", Usage: "end with the opening of the assistant's reply"},
			&cli.StringFlag{Name: "bos-token", Usage: "bos_token `STRING`", DefaultText: "the model's, else empty"},
			&cli.StringFlag{Name: "eos-token", Usage: "eos_token `STRING`", DefaultText: "the model's, else empty"},
		},
		Action: renderAction,
	}
}

func renderAction(c *cli.Context) error {
	data, err := readFileArg(c, c.String("messages"))
	if err != nil {
		return fmt.Errorf("--messages: %w", err)
	}
	conv, err := chat.DecodeConversation(data)
	if err != nil {
		return fmt.Errorf("--messages %s: %w", c.String("messages"), err)
	}
	var m *engine.Model
	if c.String("model") != "" {
		if m, err = openModel(c, engine.Options{Threads: 1}); err != nil {
			return err
		}
		defer m.Close()
	} else if c.String("chat-template") == "" {
		return errors.New("give a model (-m MODEL) or a template (--chat-template FILE|NAME)")
	}
	tmpl, err := chatTemplate(c, m)
	if err != nil {
		return err
	}
	opts, err := renderOptions(m, c.Bool("add-generation-prompt"))
	if err != nil {
		return err
	}
	if c.IsSet("bos-token") {
		opts.BOS = c.String("bos-token")
	}
	if c.IsSet("eos-token") {
		opts.EOS = c.String("eos-token")
	}
	text, err := tmpl.Render(conv, opts)
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write([]byte(text))
	return err
}

// chatTemplate returns the --chat-template (a file, else a built-in name), else the
// template the model carries.
func chatTemplate(c *cli.Context, m *engine.Model) (*chat.Template, error) {
	if name := c.String("chat-template"); name != "" {
		src, err := os.ReadFile(name)
		if err != nil {
			b, ok := chat.Builtin(name)
			if !ok {
				return nil, fmt.Errorf("--chat-template %s: not a file (%v) nor a built-in template (%s)", name, err, strings.Join(chat.BuiltinNames(), ", "))
			}
			src = []byte(b)
		}
		t, err := chat.Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("--chat-template %s: %w", name, err)
		}
		return t, nil
	}
	src, _ := m.Metadata(chatTemplateKey).(string)
	if src == "" {
		return nil, fmt.Errorf("%s carries no chat template (%s): give one with --chat-template FILE or a built-in NAME (%s)",
			c.String("model"), chatTemplateKey, strings.Join(chat.BuiltinNames(), ", "))
	}
	t, err := chat.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.String("model"), err)
	}
	return t, nil
}

// renderOptions returns the render options of a model (nil: none): its BOS and EOS
// strings, and the time strftime_now formats.
func renderOptions(m *engine.Model, addGenerationPrompt bool) (chat.Options, error) {
	now, err := templateNow(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return chat.Options{}, err
	}
	o := chat.Options{AddGenerationPrompt: addGenerationPrompt, Now: now}
	if m != nil && m.Tokenizer() != nil {
		tok := m.Tokenizer()
		o.BOS = tokenString(tok, tok.BOS())
		o.EOS = tokenString(tok, tok.EOS())
	}
	return o, nil
}

// templateNow returns the time strftime_now formats: SOURCE_DATE_EPOCH (the
// reproducible-builds convention) when set, else the clock.
func templateNow(epoch string) (time.Time, error) {
	if epoch == "" {
		return time.Now(), nil
	}
	s, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970-01-01 UTC", epoch)
	}
	return time.Unix(s, 0).UTC(), nil
}

// tokenString returns the vocabulary entry of a special token, "" when id is -1.
func tokenString(tok tokenizer.Tokenizer, id int) string {
	if id < 0 {
		return ""
	}
	s, err := tok.Token(id)
	if err != nil {
		return ""
	}
	if tok.Kind() == tokenizer.KindLlama2c {
		s = strings.TrimSpace(s) // llama2.c stores "\n<s>\n"
	}
	return s
}
