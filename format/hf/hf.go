// Package hf imports Hugging Face transformers checkpoints (config.json plus safetensors
// weights, single-file or sharded) into lmrun's canonical tensor names and layouts
// (format/SPEC.md).
//
// Each supported model_type has an importer that reads its hyper-parameters from the
// config, checks every tensor's shape against them, and maps the tensors to lmrun names,
// transposing, splitting or permuting rows where the layouts differ. All tensors are
// produced as f32; their data is read and converted only when the checkpoint is written.
package hf

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
)

// ConfigName is the file holding a model's hyper-parameters.
const ConfigName = "config.json"

// importer converts one model_type.
type importer func(c *config, st *safetensors.File) (*format.Checkpoint, error)

// importers maps config.json's model_type to its importer. Adding a model family is
// adding an entry here and a function like importGPT2.
var importers = map[string]importer{
	"gpt2":    importGPT2,
	"gpt_neo": importGPTNeo,
	"llama":   importLlama,
	"mistral": importMistral,
	"opt":     importOPT,
	"phi3":    importPhi3,
	"qwen2":   importQwen2,
}

// SupportedModelTypes returns the model_type values Import understands, sorted.
func SupportedModelTypes() []string {
	return slices.Sorted(maps.Keys(importers))
}

// Import reads a Hugging Face checkpoint. path is a model directory (holding config.json
// and model.safetensors, or model.safetensors.index.json and its shards), a safetensors
// file, or a safetensors index file; for a file, config.json is read from its directory.
// Tokenizer files are not read.
func Import(path string) (*format.Checkpoint, error) {
	ck, err := importPath(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ck, nil
}

func importPath(path string) (*format.Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	dir := path
	open := func() (*safetensors.File, error) { return safetensors.OpenDir(dir) }
	if !st.IsDir() {
		dir = filepath.Dir(path)
		index, err := isIndex(path, st.Size())
		if err != nil {
			return nil, err
		}
		if index {
			open = func() (*safetensors.File, error) { return safetensors.OpenIndex(path) }
		} else {
			open = func() (*safetensors.File, error) { return safetensors.Open(path) }
		}
	}
	cfg, err := readConfig(filepath.Join(dir, ConfigName))
	if err != nil {
		return nil, err
	}
	// The model type is checked before the weights are opened.
	if _, _, err := cfg.importer(); err != nil {
		return nil, err
	}
	sf, err := open()
	if err != nil {
		return nil, err
	}
	defer sf.Close()
	return importConfig(cfg, sf)
}

// importer returns the importer of the config's model_type, and the type.
func (c *config) importer() (importer, string, error) {
	mt, err := c.str("model_type", "")
	if err != nil {
		return nil, "", err
	}
	imp, ok := importers[mt]
	if !ok {
		if mt == "" {
			return nil, "", c.errorf("no model_type (supported: %s)", strings.Join(SupportedModelTypes(), ", "))
		}
		return nil, "", fmt.Errorf("unsupported model_type %s (supported: %s)", mt, strings.Join(SupportedModelTypes(), ", "))
	}
	return imp, mt, nil
}

// importConfig maps a parsed config and the weights it describes to a checkpoint.
func importConfig(c *config, st *safetensors.File) (*format.Checkpoint, error) {
	imp, mt, err := c.importer()
	if err != nil {
		return nil, err
	}
	ck, err := imp(c, st)
	if err != nil {
		return nil, err
	}
	ck.Meta["general.source"] = "Hugging Face " + mt
	return ck, nil
}

// isIndex tells a safetensors index (JSON) from a safetensors file by content.
func isIndex(path string, size int64) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 16)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return false, err
	}
	head = head[:n]
	if safetensors.LooksLike(head, size) {
		return false, nil
	}
	return strings.HasPrefix(strings.TrimLeft(string(head), " \t\r\n"), "{"), nil
}

// builder collects the output tensors of one import, checking each source tensor's
// shape and remembering every problem so that one error can list them all.
type builder struct {
	st      *safetensors.File
	used    map[string]bool
	missing []string
	bad     []string
	out     []format.Source
}

func newBuilder(st *safetensors.File) *builder {
	return &builder{st: st, used: map[string]bool{}}
}

// tensor returns the named source tensor after checking its shape and dtype; a missing
// or mismatched tensor is recorded and nil returned.
func (b *builder) tensor(name string, shape ...int) *safetensors.Tensor {
	t := b.optional(name, shape...)
	if t == nil && b.st.Tensor(name) == nil {
		b.missing = append(b.missing, name)
	}
	return t
}

// optional is tensor for a tensor that may be absent (nil without an error).
func (b *builder) optional(name string, shape ...int) *safetensors.Tensor {
	b.used[name] = true
	t := b.st.Tensor(name)
	if t == nil {
		return nil
	}
	if !sameShape(t.Shape, shape) {
		b.bad = append(b.bad, fmt.Sprintf("tensor %s has shape %v, the config implies %v", name, t.Shape, shape))
		return nil
	}
	if _, ok := t.DType.Format(); !ok {
		b.bad = append(b.bad, fmt.Sprintf("tensor %s has dtype %s (supported: F32, F16, BF16)", name, t.DType))
		return nil
	}
	return t
}

// ignore marks a source tensor as deliberately unused (a buffer such as GPT-2's
// attention mask) if it exists.
func (b *builder) ignore(name string) { b.used[name] = true }

// add appends an f32 output tensor computed from src by fn (nil: as is). Nothing is added
// when src is nil (its problem is already recorded).
func (b *builder) add(name string, shape []int, src *safetensors.Tensor, fn func([]float32) []float32) {
	if src == nil {
		return
	}
	b.out = append(b.out, format.Source{Name: name, DType: dtype.F32, Shape: shape, Data: func() ([]byte, error) {
		v, err := src.Float32()
		if err != nil {
			return nil, err
		}
		if fn != nil {
			v = fn(v)
		}
		return dtype.F32ToBytes(v), nil
	}})
}

// finish returns the tensors, or an error listing every missing, mismatched and
// unexpected tensor. Unexpected tensors are an error: dropping weights we do not
// understand would silently give a different model.
func (b *builder) finish(family string) ([]format.Source, error) {
	var unused []string
	for _, t := range b.st.Tensors {
		if !b.used[t.Name] {
			unused = append(unused, t.Name)
		}
	}
	var msgs []string
	if len(b.missing) > 0 {
		msgs = append(msgs, "missing tensors: "+list(b.missing))
	}
	msgs = append(msgs, b.bad...)
	if len(unused) > 0 {
		sort.Strings(unused)
		msgs = append(msgs, fmt.Sprintf("tensors a %s checkpoint should not have (a different variant of the architecture?): %s", family, list(unused)))
	}
	if len(msgs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return b.out, nil
}

// tiedHead handles a classifier that should be tied to the embeddings: absent, or a
// copy of them, it is dropped; different weights become output.weight.
func (b *builder) tiedHead(name string, emb *safetensors.Tensor, rows, cols int) error {
	head := b.optional(name, rows, cols)
	if head == nil || emb == nil {
		return nil
	}
	same, err := safetensors.Equal(head, emb)
	if err != nil {
		return err
	}
	if !same {
		b.add("output.weight", []int{rows, cols}, head, nil)
	}
	return nil
}

// tiedCopy checks that the named classifier, which the config ties to the embeddings,
// is absent or a copy of emb; either way it is left out of the checkpoint.
func (b *builder) tiedCopy(name string, emb *safetensors.Tensor, rows, cols int) error {
	head := b.optional(name, rows, cols)
	if head == nil || emb == nil {
		return nil
	}
	same, err := safetensors.Equal(head, emb)
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("tie_word_embeddings is true, but %s differs from the token embedding it would be tied to", name)
	}
	return nil
}

// list joins names, eliding all but the first 20.
func list(names []string) string {
	const show = 20
	if len(names) <= show {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:show], ", "), len(names)-show)
}

// namePrefix returns prefix when some tensor name starts with it (a model saved with its
// head: "transformer.h.0...", "model.layers.0..."), else "" (a bare base model).
func namePrefix(st *safetensors.File, prefix string) string {
	for _, t := range st.Tensors {
		if strings.HasPrefix(t.Name, prefix) {
			return prefix
		}
	}
	return ""
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// transposeCols returns a function mapping a row-major [rows, cols] matrix to the
// transpose of its columns [c0, c0+n): an [n, rows] matrix. With c0 = 0 and n = cols it
// is the plain transpose (GPT-2's Conv1D [in, out] to [out, in]).
func transposeCols(rows, cols, c0, n int) func([]float32) []float32 {
	return func(in []float32) []float32 {
		out := make([]float32, n*rows)
		for o := 0; o < n; o++ {
			dst := out[o*rows : (o+1)*rows]
			for i := range dst {
				dst[i] = in[i*cols+c0+o]
			}
		}
		return out
	}
}

// slice returns elements [a, b) of a vector.
func slice(a, b int) func([]float32) []float32 {
	return func(in []float32) []float32 { return append([]float32(nil), in[a:b]...) }
}

// unrotateHalf undoes Hugging Face's rotate-half permutation of the rows of a q or k
// projection (or bias, cols = 1): within each head, lmrun row 2i+j is HF row
// j·(headDim/2)+i.
func unrotateHalf(heads, headDim, cols int) func([]float32) []float32 {
	return func(in []float32) []float32 {
		out := make([]float32, len(in))
		half := headDim / 2
		for h := 0; h < heads; h++ {
			base := h * headDim
			for i := 0; i < half; i++ {
				for j := 0; j < 2; j++ {
					dst := (base + 2*i + j) * cols
					src := (base + j*half + i) * cols
					copy(out[dst:dst+cols], in[src:src+cols])
				}
			}
		}
		return out
	}
}
