package engine_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"sync"

	_ "github.com/lmrun/lmrun/backends/all" // link every kernel backend this build has
	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/engine"
)

// The model of the examples: Karpathy's stories260K (llama2.c), converted to .lmc with
// `lmrun convert stories260K.bin --tokenizer tok512.bin -o stories260K.lmc`.
const modelPath = "../testdata/stories260K.lmc"

// Load a model, tokenize a prompt and stream the generated text. This is the README's
// example.
func Example() {
	m, err := engine.Load(modelPath, engine.Options{}) // memory-mapped, shared by every session
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	const text = "Once upon a time"
	prompt, err := m.Tokenizer().Encode(text, true, false) // with BOS
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(text)
	s := m.NewSession(engine.SessionOptions{})    // one KV cache per conversation
	opts := engine.GenerateOptions{MaxTokens: 30} // greedy: Sampler nil
	_, err = s.GenerateText(context.Background(), prompt, opts, func(text string) error {
		fmt.Print(text) // whole UTF-8 characters only
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day,
}

// Sample with llama.cpp's chain and stop at a stop string: the text before it is
// emitted, the stop string is not.
func ExampleSession_GenerateText() {
	m, err := engine.Load(modelPath, engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	prompt, _ := m.Tokenizer().Encode("Once upon a time", true, false)
	smp, err := engine.NewSampler(engine.SamplerConfig{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05,
		RepeatPenalty: 1.1, RepeatLastN: 64, Seed: 42})
	if err != nil {
		log.Fatal(err)
	}
	var out strings.Builder
	st, err := m.NewSession(engine.SessionOptions{}).GenerateText(context.Background(), prompt,
		engine.GenerateOptions{MaxTokens: 200, Sampler: smp, StopStrings: []string{"."}},
		func(text string) error { out.WriteString(text); return nil })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q ends before the stop string: %v\n", out.String(), !strings.Contains(out.String(), "."))
	fmt.Println("prompt tokens:", st.PromptTokens)
	// Output:
	// ", there was a boy named Tim" ends before the stop string: true
	// prompt tokens: 5
}

// Token ids and text: Encode adds BOS when asked, Decode drops it.
func ExampleModel_Tokenizer() {
	m, err := engine.Load(modelPath, engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	tok := m.Tokenizer()
	ids, err := tok.Encode("Hello, world", true, false)
	if err != nil {
		log.Fatal(err)
	}
	text, err := tok.Decode(ids)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ids, tok.BOS(), tok.VocabSize())
	fmt.Printf("%q\n", text)
	// Output:
	// [1 346 306 414 432 263 304 341] 1 512
	// "Hello, world"
}

// Perplexity of a text: every token after the first is scored once.
func ExampleModel_Perplexity() {
	m, err := engine.Load(modelPath, engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	text := "Once upon a time, there was a little girl named Lily. She loved to play outside."
	ids, _ := m.Tokenizer().Encode(text, true, false)
	res, err := m.Perplexity(context.Background(), ids, engine.PerplexityOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d tokens scored, perplexity %.2f\n", res.Tokens, res.Perplexity())
	// Output:
	// 26 tokens scored, perplexity 1.32
}

// One Model, two conversations at once: the weights are shared read-only, each Session
// has its own KV cache.
func ExampleModel_NewSession() {
	m, err := engine.Load(modelPath, engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	prompts := []string{"Once upon a time", "The cat"}
	outs := make([]string, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids, _ := m.Tokenizer().Encode(p, true, false)
			var b strings.Builder
			_, err := m.NewSession(engine.SessionOptions{}).GenerateText(context.Background(), ids,
				engine.GenerateOptions{MaxTokens: 12}, func(t string) error { b.WriteString(t); return nil })
			if err != nil {
				log.Fatal(err)
			}
			outs[i] = p + b.String()
		}()
	}
	wg.Wait()
	for _, o := range outs {
		fmt.Println(o)
	}
	// Output:
	// Once upon a time, there was a little girl named Lily. She
	// The cat and a boy were playing in the p
}

// Run a model without converting it first: convert.Open takes a GGUF file (mapped and
// used in place, as an lmc file is), a Hugging Face directory or a llama2.c checkpoint
// (converted in memory), detected by content; FromFile runs what it returns. This
// llama2.c checkpoint carries no vocabulary, so the tokenizer is given beside it.
func ExampleFromFile() {
	f, err := convert.Open("../testdata/llama2c/stories260K.bin",
		convert.Options{TokenizerPath: "../testdata/llama2c/tok512.bin"})
	if err != nil {
		log.Fatal(err)
	}
	m, err := engine.FromFile(f, engine.Options{})
	if err != nil {
		f.Close()
		log.Fatal(err)
	}
	defer m.Close() // closes f too
	const text = "Once upon a time"
	prompt, err := m.Tokenizer().Encode(text, true, false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(text)
	_, err = m.NewSession(engine.SessionOptions{}).GenerateText(context.Background(), prompt,
		engine.GenerateOptions{MaxTokens: 30}, func(text string) error {
			fmt.Print(text)
			return nil
		})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day,
}
