package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// TensorSource is a tensor to be written. Data is called once, when the writer reaches
// the tensor, and must return exactly the bytes Type and Dims imply.
type TensorSource struct {
	Name string
	Type Type
	Dims []uint64 // ne: fastest-varying first
	Data func() ([]byte, error)
}

// Write writes a GGUF version 3 file: the metadata in the order given, the tensor index,
// then each tensor's data in the order given, every tensor padded to the alignment
// (general.alignment when kvs set it, a uint32 power of two; else 32). Offsets are
// consecutive, as llama.cpp requires. progress, if not nil, is called after each tensor.
func Write(w io.Writer, kvs []KV, tensors []TensorSource, progress func(done, total int)) error {
	align := uint64(DefaultAlignment)
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		if seen[kv.Key] {
			return fmt.Errorf("duplicate metadata key %q", kv.Key)
		}
		seen[kv.Key] = true
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("general.alignment must be a uint32 power of two, got %T %v", kv.Value, kv.Value)
			}
			align = uint64(a)
		}
	}
	var e encoder
	e.b = append(e.b, Magic...)
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		if err := e.value(kv.Value, true); err != nil {
			return fmt.Errorf("metadata %s: %w", kv.Key, err)
		}
	}
	sizes := make([]uint64, len(tensors))
	names := make(map[string]bool, len(tensors))
	var off uint64
	for i, t := range tensors {
		if len(t.Name) == 0 || len(t.Name) > MaxNameLen {
			return fmt.Errorf("tensor name %q: length must be 1..%d", t.Name, MaxNameLen)
		}
		if names[t.Name] {
			return fmt.Errorf("duplicate tensor %s", t.Name)
		}
		names[t.Name] = true
		if len(t.Dims) == 0 || len(t.Dims) > MaxDims {
			return fmt.Errorf("tensor %s: %d dimensions (want 1..%d)", t.Name, len(t.Dims), MaxDims)
		}
		size, err := t.Type.ByteSize(t.Dims)
		if err != nil {
			return fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		sizes[i] = size
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(off)
		off += padLen(size, align) + size
	}
	e.b = append(e.b, make([]byte, padLen(uint64(len(e.b)), align))...)

	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := bw.Write(e.b); err != nil {
		return err
	}
	for i, t := range tensors {
		b, err := t.Data()
		if err != nil {
			return fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		if uint64(len(b)) != sizes[i] {
			return fmt.Errorf("tensor %s: %d bytes of data, %s %v needs %d", t.Name, len(b), t.Type, t.Dims, sizes[i])
		}
		if _, err := bw.Write(b); err != nil {
			return err
		}
		if _, err := bw.Write(make([]byte, padLen(sizes[i], align))); err != nil {
			return err
		}
		if progress != nil {
			progress(i+1, len(tensors))
		}
	}
	return bw.Flush()
}

// WriteFile writes a GGUF file to path atomically: to a temporary file in the same
// directory, renamed over path once complete.
func WriteFile(path string, kvs []KV, tensors []TensorSource, progress func(done, total int)) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, kvs, tensors, progress); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func padLen(n, align uint64) uint64 { return (align - n%align) % align }

type encoder struct{ b []byte }

func (e *encoder) u32(x uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, x) }
func (e *encoder) u64(x uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, x) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.b = append(e.b, s...) }

// value appends a value; withType writes its type code first (array elements of a
// nested array carry only their element type and count).
func (e *encoder) value(v any, withType bool) error {
	t, elem, err := TypeOf(v)
	if err != nil {
		return err
	}
	if withType {
		e.u32(uint32(t))
	}
	le := binary.LittleEndian
	switch x := v.(type) {
	case uint8:
		e.b = append(e.b, x)
	case int8:
		e.b = append(e.b, byte(x))
	case uint16:
		e.b = le.AppendUint16(e.b, x)
	case int16:
		e.b = le.AppendUint16(e.b, uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		if x {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	default:
		e.u32(uint32(elem))
		return e.array(v)
	}
	return nil
}

func (e *encoder) array(v any) error {
	le := binary.LittleEndian
	switch x := v.(type) {
	case []uint8:
		e.u64(uint64(len(x)))
		e.b = append(e.b, x...)
	case []int8:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.b = append(e.b, byte(y))
		}
	case []uint16:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.b = le.AppendUint16(e.b, y)
		}
	case []int16:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.b = le.AppendUint16(e.b, uint16(y))
		}
	case []uint32:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u32(y)
		}
	case []int32:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u32(uint32(y))
		}
	case []float32:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u32(math.Float32bits(y))
		}
	case []bool:
		e.u64(uint64(len(x)))
		for _, y := range x {
			if y {
				e.b = append(e.b, 1)
			} else {
				e.b = append(e.b, 0)
			}
		}
	case []string:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.str(y)
		}
	case []uint64:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u64(y)
		}
	case []int64:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u64(uint64(y))
		}
	case []float64:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u64(math.Float64bits(y))
		}
	case []any:
		e.u64(uint64(len(x)))
		for i, y := range x {
			t, elem, err := TypeOf(y)
			if err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
			if t != TypeArray {
				return fmt.Errorf("element %d of an array of arrays is a %s", i, t)
			}
			e.u32(uint32(elem))
			if err := e.array(y); err != nil {
				return err
			}
		}
	}
	return nil
}
