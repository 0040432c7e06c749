package convert

import (
	"fmt"
	"strings"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/format/hf"
	"github.com/lmrun/lmrun/format/llama2c"
)

// Open opens the model at path for running, whatever its format, detected from the
// content as Import detects it, and returns it as an open checkpoint for
// engine.FromFile:
//
//   - an lmc file is mapped and used in place (format.Open);
//   - a GGUF file is mapped and used in place too: opening reads its header, and a
//     tensor's pages are read from disk when the model first uses them. Only tensors
//     whose type changes (vectors stored as f16, say) are converted, into memory;
//   - a Hugging Face directory or safetensors file and a llama2.c checkpoint are
//     imported and converted in memory, which costs the time of an import and memory
//     for all the weights at every open: for repeated use, convert them to an lmc file
//     once.
//
// opts.TokenizerPath stores a tokenizer as Import does — needed for text with a
// llama2.c checkpoint, which carries none — replacing the model's own (an lmc file's
// too, in memory). Errors name the file and the format it was taken for. The File must
// be closed (by the engine.Model that takes it, or Close).
func Open(path string, opts Options) (*format.File, error) {
	kind, err := Detect(path)
	if err != nil {
		return nil, err
	}
	f, err := open(path, kind)
	if err != nil {
		return nil, &OpenError{Path: path, Kind: kind, Err: err}
	}
	if err := addTokenizer(f.Meta, path, kind, opts.TokenizerPath); err != nil {
		f.Close()
		return nil, &OpenError{Path: path, Kind: kind, Err: err}
	}
	return f, nil
}

// open opens path, of the given kind, without a tokenizer from elsewhere.
func open(path string, kind Kind) (*format.File, error) {
	var ck *format.Checkpoint
	var err error
	switch kind {
	case KindLMC:
		return format.Open(path)
	case KindGGUF:
		g, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		ck, err := gguf.FromFile(g)
		if err != nil {
			g.Close()
			return nil, err
		}
		f, err := format.NewFile(ck.Meta, ck.Tensors, g.Close)
		if err != nil {
			g.Close()
			return nil, err
		}
		return f, nil
	case KindLlama2C:
		ck, err = llama2c.Import(path, "")
	case KindHF, KindSafetensors:
		ck, err = hf.Import(path)
	default:
		return nil, fmt.Errorf("cannot open format %s", kind)
	}
	if err != nil {
		return nil, err
	}
	return format.NewFile(ck.Meta, ck.Tensors, nil)
}

// OpenError is the error of Open: the file, the format its content was taken for, and
// what went wrong.
type OpenError struct {
	Path string
	Kind Kind
	Err  error
}

// Error names the file once, with its format: "m.gguf (GGUF file): ...".
func (e *OpenError) Error() string {
	msg := strings.TrimPrefix(e.Err.Error(), e.Path+": ")
	return fmt.Sprintf("%s (%s): %s", e.Path, e.Kind.Description(), msg)
}

// Unwrap returns the underlying error.
func (e *OpenError) Unwrap() error { return e.Err }

// Description names the kind for people: "GGUF file", "llama2.c checkpoint".
func (k Kind) Description() string {
	switch k {
	case KindLMC:
		return "lmc checkpoint"
	case KindHF:
		return "Hugging Face model directory"
	case KindSafetensors:
		return "safetensors model"
	case KindGGUF:
		return "GGUF file"
	case KindLlama2C:
		return "llama2.c checkpoint"
	case KindUnknown:
		return "unknown format"
	}
	return k.String()
}
