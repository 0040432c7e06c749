package format

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/lmrun/lmrun/dtype"
)

// Source is a tensor to be written (or, with NewFile, held in memory). Data is called
// once, when the writer reaches the tensor, so a converter can produce one tensor at a
// time instead of holding them all. The bytes it returns may belong to someone else — a
// slice of a read-only mapped file, used in place by NewFile — and must not be modified.
type Source struct {
	Name  string
	DType dtype.DType
	Shape []int
	Data  func() ([]byte, error)
}

// Bytes returns a Source whose data is already in memory.
func Bytes(name string, dt dtype.DType, shape []int, b []byte) Source {
	return Source{Name: name, DType: dt, Shape: shape, Data: func() ([]byte, error) { return b, nil }}
}

// Float32s returns an f32 Source over v.
func Float32s(name string, shape []int, v []float32) Source {
	return Bytes(name, dtype.F32, shape, dtype.F32ToBytes(v))
}

// Write streams a checkpoint to w: the index first (with zero tensor checksums), then each
// tensor's data, then it seeks back to fill in the checksums and the index checksum.
// progress, if not nil, is called after each tensor.
func Write(w io.WriteSeeker, meta Metadata, tensors []Source, progress func(done, total int)) error {
	if err := meta.Validate(); err != nil {
		return err
	}
	infos := make([]TensorInfo, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var off int64
	for i, s := range tensors {
		if len(s.Name) == 0 || len(s.Name) > MaxNameLen {
			return fmt.Errorf("tensor name %q: length must be 1..%d", s.Name, MaxNameLen)
		}
		if seen[s.Name] {
			return fmt.Errorf("duplicate tensor %s", s.Name)
		}
		seen[s.Name] = true
		if !s.DType.Valid() {
			return fmt.Errorf("tensor %s: unknown dtype %d", s.Name, uint32(s.DType))
		}
		size, err := s.DType.ByteSize(s.Shape)
		if err != nil {
			return fmt.Errorf("tensor %s: %w", s.Name, err)
		}
		infos[i] = TensorInfo{Name: s.Name, DType: s.DType, Shape: s.Shape, Offset: off, Size: size}
		off = align(off + size)
	}
	index := encodeIndex(meta, infos)
	dataOff := align(int64(HeaderSize + len(index)))
	var dataSize int64
	if n := len(infos); n > 0 {
		dataSize = infos[n-1].Offset + infos[n-1].Size
	}

	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := bw.Write(header(len(meta), len(infos), len(index), dataOff, dataSize, 0)); err != nil {
		return err
	}
	if _, err := bw.Write(index); err != nil {
		return err
	}
	pos := int64(HeaderSize + len(index))
	for i, s := range tensors {
		if err := pad(bw, dataOff+infos[i].Offset-pos); err != nil {
			return err
		}
		b, err := s.Data()
		if err != nil {
			return fmt.Errorf("tensor %s: %w", s.Name, err)
		}
		if int64(len(b)) != infos[i].Size {
			return fmt.Errorf("tensor %s: %d bytes of data, shape %v of %s needs %d", s.Name, len(b), s.Shape, s.DType, infos[i].Size)
		}
		if _, err := bw.Write(b); err != nil {
			return err
		}
		infos[i].CRC = Checksum(b)
		pos = dataOff + infos[i].Offset + infos[i].Size
		if progress != nil {
			progress(i+1, len(tensors))
		}
	}
	if err := pad(bw, dataOff+dataSize-pos); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	// The checksums are known now: rewrite header and index in place (same sizes).
	index = encodeIndex(meta, infos)
	if _, err := w.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := w.Write(header(len(meta), len(infos), len(index), dataOff, dataSize, Checksum(index))); err != nil {
		return err
	}
	if _, err := w.Write(index); err != nil {
		return err
	}
	_, err := w.Seek(0, io.SeekEnd)
	return err
}

// WriteFile writes a checkpoint to path atomically: to a temporary file in the same
// directory, renamed over path once complete.
func WriteFile(path string, meta Metadata, tensors []Source, progress func(done, total int)) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, meta, tensors, progress); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func align(n int64) int64 { return (n + Alignment - 1) &^ (Alignment - 1) }

var zeros [Alignment]byte

func pad(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, Alignment)
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func header(nMeta, nTensors, indexSize int, dataOff, dataSize int64, crc uint32) []byte {
	h := make([]byte, HeaderSize)
	le := binary.LittleEndian
	copy(h, Magic)
	le.PutUint32(h[4:], Version)
	le.PutUint64(h[8:], uint64(nMeta))
	le.PutUint64(h[16:], uint64(nTensors))
	le.PutUint64(h[24:], uint64(indexSize))
	le.PutUint64(h[32:], uint64(dataOff))
	le.PutUint64(h[40:], uint64(dataSize))
	le.PutUint32(h[48:], crc)
	return h
}

func encodeIndex(meta Metadata, infos []TensorInfo) []byte {
	var e encoder
	for _, k := range meta.Keys() {
		e.name(k)
		switch v := meta[k].(type) {
		case int64:
			e.u32(tInt)
			e.u64(uint64(v))
		case float64:
			e.u32(tFloat)
			e.u64(math.Float64bits(v))
		case bool:
			e.u32(tBool)
			if v {
				e.b = append(e.b, 1)
			} else {
				e.b = append(e.b, 0)
			}
		case string:
			e.u32(tString)
			e.str(v)
		case []int64:
			e.u32(tInts)
			e.u64(uint64(len(v)))
			for _, x := range v {
				e.u64(uint64(x))
			}
		case []float32:
			e.u32(tFloats)
			e.u64(uint64(len(v)))
			for _, x := range v {
				e.u32(math.Float32bits(x))
			}
		case []string:
			e.u32(tStrings)
			e.u64(uint64(len(v)))
			for _, x := range v {
				e.str(x)
			}
		}
	}
	for _, t := range infos {
		e.name(t.Name)
		e.u32(uint32(t.DType))
		e.u32(uint32(len(t.Shape)))
		for _, s := range t.Shape {
			e.u64(uint64(s))
		}
		e.u64(uint64(t.Offset))
		e.u64(uint64(t.Size))
		e.u32(t.CRC)
	}
	return e.b
}

type encoder struct{ b []byte }

func (e *encoder) u32(x uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, x) }
func (e *encoder) u64(x uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, x) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) name(s string) {
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
}

func sortByOffset(ts []*Tensor) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Offset < ts[j].Offset })
}
