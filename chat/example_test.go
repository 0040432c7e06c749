package chat_test

import (
	"fmt"
	"log"

	"github.com/lmrun/lmrun/chat"
)

// Example renders a conversation with a built-in template, as a model would read it
// before its reply.
func Example() {
	conv, err := chat.DecodeConversation([]byte(`{"messages": [
		{"role": "system", "content": "You are brief."},
		{"role": "user", "content": "Hi!"}]}`))
	if err != nil {
		log.Fatal(err)
	}
	src, _ := chat.Builtin("chatml") // or a model's tokenizer.chat_template
	tmpl, err := chat.Parse(src)
	if err != nil {
		log.Fatal(err)
	}
	text, err := tmpl.Render(conv, chat.Options{AddGenerationPrompt: true})
	if err != nil {
		log.Fatal(err) // a template's raise_exception is an error too
	}
	fmt.Print(text)
	// Output:
	// <|im_start|>system
	// You are brief.<|im_end|>
	// <|im_start|>user
	// Hi!<|im_end|>
	// <|im_start|>assistant
}
