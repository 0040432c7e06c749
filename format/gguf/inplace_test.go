package gguf

import (
	"bytes"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// within reports whether b lies inside the memory of m.
func within(b, m []byte) bool {
	if len(b) == 0 || len(m) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(m))
}

// openInPlace opens path as a format.File over the GGUF mapping, as running a GGUF
// model does, and returns the GGUF File too.
func openInPlace(t *testing.T, path string) (*format.File, *File) {
	t.Helper()
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := FromFile(g)
	if err != nil {
		g.Close()
		t.Fatal(err)
	}
	f, err := format.NewFile(ck.Meta, ck.Tensors, g.Close)
	if err != nil {
		g.Close()
		t.Fatal(err)
	}
	return f, g
}

// TestOpenInPlace: a GGUF model opened for running uses its tensors where the file is
// mapped — matrices in their type, f32 vectors, the rows of gpt2's attn_qkv — with the
// bytes an import writes; a tensor that must be converted (a vector stored as f16) is
// the only one computed. Closing the File unmaps the GGUF.
func TestOpenInPlace(t *testing.T) {
	for _, c := range []struct {
		path     []string
		computed int // tensors converted on open
	}{
		{[]string{"expected", "llama_tiny.gguf"}, 0},
		{[]string{"expected", "llama_tiny_q8_0.gguf"}, 0},
		{[]string{"expected", "gpt2_tiny.gguf"}, 0},
		{[]string{"gguf", "llama-2-tiny-random.gguf"}, 0},
	} {
		path := fixtures.Path(t, c.path...)
		name := filepath.Base(path)
		f, g := openInPlace(t, path)
		mapping := g.data
		ck, err := Import(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Tensors) != len(ck.Tensors) {
			t.Fatalf("%s: %d tensors, the import has %d", name, len(f.Tensors), len(ck.Tensors))
		}
		computed := 0
		for _, s := range ck.Tensors {
			got := f.Tensor(s.Name)
			want, err := s.Data()
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || got.DType != s.DType || !bytes.Equal(got.Data, want) {
				t.Fatalf("%s: tensor %s differs from the import's", name, s.Name)
			}
			if !within(got.Data, mapping) {
				computed++
			}
		}
		if computed != c.computed {
			t.Errorf("%s: %d tensors copied or computed, want %d", name, computed, c.computed)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if g.data != nil {
			t.Errorf("%s: the mapping outlived the File", name)
		}
	}
}

// TestOpenInPlaceUnaligned: in a GGUF whose general.alignment is 1, f32 tensors at
// addresses that are not multiples of 4 are copied to aligned memory (the kernels view
// them as []float32), and only those.
func TestOpenInPlaceUnaligned(t *testing.T) {
	src, err := Open(fixtures.Path(t, "expected", "llama_tiny_q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	kvs := []KV{{"general.alignment", uint32(1)}}
	for _, kv := range src.KV {
		if kv.Key != "general.alignment" {
			kvs = append(kvs, kv)
		}
	}
	var ts []TensorSource
	for i := range src.Tensors {
		ti := &src.Tensors[i]
		ts = append(ts, TensorSource{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: func() ([]byte, error) { return src.TensorData(ti) }})
	}
	path := filepath.Join(t.TempDir(), "packed.gguf")
	if err := WriteFile(path, kvs, ts, nil); err != nil {
		t.Fatal(err)
	}
	f, g := openInPlace(t, path)
	defer f.Close()
	copied, misaligned := 0, 0
	for _, ti := range g.Tensors {
		view, _ := g.View(&ti)
		odd := uintptr(unsafe.Pointer(unsafe.SliceData(view)))%4 != 0
		got := f.Tensor(ti.Name)
		if got == nil {
			t.Fatalf("tensor %s missing", ti.Name)
		}
		if !bytes.Equal(got.Data, view) {
			t.Fatalf("tensor %s: bytes differ from the file's", ti.Name)
		}
		if odd && ti.Type == TypeF32 {
			misaligned++
		}
		if !within(got.Data, g.data) {
			copied++
			if ti.Type != TypeF32 || !odd {
				t.Errorf("tensor %s (%s) copied though it could be used in place", ti.Name, ti.Type)
			}
		}
		if got.DType == dtype.F32 {
			if _, err := got.F32(); err != nil || uintptr(unsafe.Pointer(unsafe.SliceData(got.Data)))%4 != 0 {
				t.Errorf("tensor %s: f32 data not aligned (%v)", ti.Name, err)
			}
		}
	}
	if misaligned == 0 || copied != misaligned {
		t.Fatalf("%d misaligned f32 tensors, %d copied: the test needs some, and only those copied", misaligned, copied)
	}
}
