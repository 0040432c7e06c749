// Package engine runs decoder-only transformer language models stored as lmrun
// checkpoints. A Model holds the immutable weights and is safe to share between
// goroutines; a Session owns one conversation's KV cache and position. A Batch runs
// several sessions' next tokens as one forward pass (continuous batching, as a server
// does): the weights are read once per step for all of them, and each session gets the
// logits it would get alone, bit for bit.
//
// Load opens an lmc file. Models of other formats reach the engine through package
// convert, which the engine does not import: convert.Open returns a GGUF file mapped and
// used in place, or a Hugging Face or llama2.c model converted in memory, as an open
// *format.File, and FromFile runs it (ExampleFromFile).
//
// The engine links no kernel backend itself: a program imports the backends it wants,
// usually all of them with
//
//	import _ "github.com/lmrun/lmrun/backends/all"
//
// and without that runs on the pure-Go reference. The runnable examples show loading,
// tokenizing, generating with streamed text and stop strings, perplexity and a second
// session on the same model.
package engine
