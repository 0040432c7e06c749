package format

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/lmrun/lmrun/dtype"
)

// ErrNoChecksums is returned by Verify for a File built by NewFile: only an lmc file
// stores its tensors' checksums.
var ErrNoChecksums = errors.New("no checksums to verify: the checkpoint was built in memory, not read from an lmc file")

// NewFile builds an open checkpoint in memory from metadata and tensor sources, for
// running a model straight from another format (GGUF, Hugging Face, llama2.c) without
// writing an lmc file. The metadata and the tensor list are checked as Open checks a
// file's index: valid metadata, names of 1..MaxNameLen bytes and unique, known dtypes,
// shapes whose byte size Data matches.
//
// Each Source's Data is called once, in order, and the bytes it returns become the
// tensor's Data as they are: a Source that returns a slice of a mapped file costs no copy
// and no read, one that computes its tensor costs that memory. Bytes are copied only
// when they are not aligned for their elements (4 bytes for f32, 2 for f16 and bf16),
// which the kernels' typed views need; aligned mappings never are.
//
// release, if not nil, is what the bytes alias (the unmapping of a file): Close calls it,
// once. When NewFile fails it does not call it; the caller still owns it. The tensors'
// Offset is where Write would put them, and their CRC is 0 (Verify reports
// ErrNoChecksums).
func NewFile(meta Metadata, tensors []Source, release func() error) (*File, error) {
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	f := &File{Meta: meta, Tensors: make([]*Tensor, 0, len(tensors)), byName: make(map[string]*Tensor, len(tensors)), inMemory: true}
	var off int64
	for _, s := range tensors {
		if len(s.Name) == 0 || len(s.Name) > MaxNameLen {
			return nil, fmt.Errorf("tensor name %q: length must be 1..%d", s.Name, MaxNameLen)
		}
		if _, dup := f.byName[s.Name]; dup {
			return nil, fmt.Errorf("duplicate tensor %s", s.Name)
		}
		if !s.DType.Valid() {
			return nil, fmt.Errorf("tensor %s: unknown dtype %d", s.Name, uint32(s.DType))
		}
		if len(s.Shape) == 0 || len(s.Shape) > MaxDims {
			return nil, fmt.Errorf("tensor %s: %d dimensions (want 1..%d)", s.Name, len(s.Shape), MaxDims)
		}
		size, err := s.DType.ByteSize(s.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", s.Name, err)
		}
		if s.Data == nil {
			return nil, fmt.Errorf("tensor %s: no data", s.Name)
		}
		b, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", s.Name, err)
		}
		if int64(len(b)) != size {
			return nil, fmt.Errorf("tensor %s: %d bytes of data, shape %v of %s needs %d", s.Name, len(b), s.Shape, s.DType, size)
		}
		t := &Tensor{TensorInfo: TensorInfo{Name: s.Name, DType: s.DType, Shape: append([]int(nil), s.Shape...), Offset: off, Size: size},
			Data: aligned(b, s.DType)}
		off = align(off + size)
		f.byName[t.Name] = t
		f.Tensors = append(f.Tensors, t)
	}
	f.unmap = release
	if f.unmap == nil {
		f.unmap = func() error { return nil }
	}
	return f, nil
}

// elemAlign returns the alignment in bytes the kernels' typed views of dt need.
func elemAlign(dt dtype.DType) uintptr {
	switch dt {
	case dtype.F32:
		return 4
	case dtype.F16, dtype.BF16:
		return 2
	}
	return 1
}

// aligned returns b, or a copy of it in memory aligned for dt when b is not. The result
// has no spare capacity, so appending to it never writes past the tensor.
func aligned(b []byte, dt dtype.DType) []byte {
	if len(b) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%elemAlign(dt) == 0 {
		return b[:len(b):len(b)]
	}
	words := make([]uint64, (len(b)+7)/8) // 8-byte aligned
	c := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(b))
	copy(c, b)
	return c
}
