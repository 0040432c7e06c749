package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/lmrun/lmrun/format/internal/mmap"
)

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	Name   string
	Dims   []uint64 // ne: fastest-varying first, as stored
	Type   Type
	Offset uint64 // relative to the start of the data section
	Size   uint64 // bytes, from Type and Dims
}

// Shape returns the tensor's lmc shape (slowest-varying first).
func (t *TensorInfo) Shape() []int { return Shape(t.Dims) }

// File is a parsed GGUF header: metadata and tensor index. A File from Open holds the
// file mapped read-only, and View returns tensor data in place; TensorData reads a copy
// through the io.ReaderAt a File was parsed from.
type File struct {
	Version    uint32
	KV         []KV // in file order
	Tensors    []TensorInfo
	Alignment  uint64
	DataOffset int64 // start of the data section
	Size       int64 // file size
	index      map[string]int
	tensors    map[string]int
	r          io.ReaderAt
	data       []byte       // the mapped file (Open), nil for Parse
	unmap      func() error // releases data
}

// Open maps the GGUF file at path read-only and parses its header, reading nothing of
// the tensor data: the pages of a tensor are read from disk when it is first used,
// through View or TensorData. The mapping lasts until Close. As with any mapped file,
// the file must not be truncated while it is open.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close() // the mapping outlives the descriptor
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > math.MaxInt-1 {
		return nil, fmt.Errorf("%s: file of %d bytes is too large to map on this platform", path, st.Size())
	}
	data, unmap, err := mmap.File(fh, int(st.Size()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f, err := Parse(bytes.NewReader(data), st.Size())
	if err != nil {
		_ = unmap()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.data, f.unmap = data, unmap
	return f, nil
}

// Close releases the mapping Open made (nothing for Parse). Slices View returned must
// not be used afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap, f.data, f.r = nil, nil, nil
	return err
}

// View returns the bytes of one of f's tensors in place, a read-only slice of the
// mapping valid until Close, without reading them; ok is false for a File that is not
// mapped (Parse, or after Close) or a t whose bytes lie outside the file.
func (f *File) View(t *TensorInfo) (b []byte, ok bool) {
	start := uint64(f.DataOffset) + t.Offset
	end := start + t.Size
	if f.data == nil || start < t.Offset || end < start || end > uint64(len(f.data)) {
		return nil, false
	}
	return f.data[start:end:end], true
}

// Value returns the metadata value of key.
func (f *File) Value(key string) (any, bool) {
	i, ok := f.index[key]
	if !ok {
		return nil, false
	}
	return f.KV[i].Value, true
}

// Tensor returns the named tensor's description, or nil.
func (f *File) Tensor(name string) *TensorInfo {
	i, ok := f.tensors[name]
	if !ok {
		return nil
	}
	return &f.Tensors[i]
}

// TensorData reads a tensor's bytes.
func (f *File) TensorData(t *TensorInfo) ([]byte, error) {
	if t.Size > math.MaxInt {
		return nil, fmt.Errorf("tensor %s: %d bytes do not fit in memory on this platform", t.Name, t.Size)
	}
	if f.r == nil {
		return nil, fmt.Errorf("tensor %s: the file is closed", t.Name)
	}
	b := make([]byte, t.Size)
	if _, err := f.r.ReadAt(b, f.DataOffset+int64(t.Offset)); err != nil {
		return nil, fmt.Errorf("tensor %s: reading %d bytes: %w", t.Name, t.Size, err)
	}
	return b, nil
}

// Parse reads the header of the GGUF file of size bytes that r holds.
func Parse(r io.ReaderAt, size int64) (*File, error) {
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<16), size: uint64(size)}
	f, err := parse(d)
	if err != nil {
		return nil, err
	}
	f.r = r
	f.Size = size
	return f, nil
}

func parse(d *decoder) (*File, error) {
	magic := d.bytes(4)
	if d.err != nil || string(magic) != Magic {
		return nil, fmt.Errorf("%w: bad magic %q (not a GGUF file)", ErrFormat, magic)
	}
	f := &File{Version: d.u32()}
	switch {
	case d.err != nil:
		return nil, d.err
	case f.Version == 1:
		return nil, fmt.Errorf("%w: GGUF version 1 is obsolete and not supported (versions 2 and 3 are)", ErrFormat)
	case f.Version&0xffff == 0 && f.Version != 0:
		return nil, fmt.Errorf("%w: version %#x: a big-endian GGUF file? Only little-endian files are supported", ErrFormat, f.Version)
	case f.Version != 2 && f.Version != 3:
		return nil, fmt.Errorf("%w: unsupported GGUF version %d (versions 2 and 3 are)", ErrFormat, f.Version)
	}
	nTensors, nKV := d.u64(), d.u64()
	if d.err != nil {
		return nil, d.err
	}
	// A key-value pair takes at least 13 bytes (8 key length, 4 type, 1 value) and a tensor
	// info at least 24 (8 name length, 4 n_dims, 4 type, 8 offset).
	if nKV > d.left()/13 {
		return nil, fmt.Errorf("%w: %d metadata entries cannot fit in the %d bytes left of the file", ErrFormat, nKV, d.left())
	}
	f.KV = make([]KV, 0, nKV)
	f.index = make(map[string]int, nKV)
	for i := uint64(0); i < nKV; i++ {
		key := d.str()
		typ := ValueType(d.u32())
		if d.err != nil {
			return nil, fmt.Errorf("metadata entry %d: %w", i, d.err)
		}
		v := d.value(typ, 0)
		if d.err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, d.err)
		}
		if _, dup := f.index[key]; dup {
			return nil, fmt.Errorf("%w: duplicate metadata key %q", ErrFormat, key)
		}
		f.index[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	f.Alignment = DefaultAlignment
	if v, ok := f.Value("general.alignment"); ok {
		a, isU32 := v.(uint32)
		if !isU32 {
			return nil, fmt.Errorf("%w: general.alignment is a %T, must be a uint32", ErrFormat, v)
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%w: general.alignment %d is not a power of two", ErrFormat, a)
		}
		f.Alignment = uint64(a)
	}

	if nTensors > d.left()/24 {
		return nil, fmt.Errorf("%w: %d tensors cannot fit in the %d bytes left of the file", ErrFormat, nTensors, d.left())
	}
	f.Tensors = make([]TensorInfo, 0, nTensors)
	f.tensors = make(map[string]int, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		var t TensorInfo
		t.Name = d.str()
		nd := d.u32()
		if d.err != nil {
			return nil, fmt.Errorf("tensor %d: %w", i, d.err)
		}
		if nd > MaxDims {
			return nil, fmt.Errorf("%w: tensor %q has %d dimensions (at most %d)", ErrFormat, t.Name, nd, MaxDims)
		}
		t.Dims = make([]uint64, nd)
		for j := range t.Dims {
			t.Dims[j] = d.u64()
			if d.err == nil && t.Dims[j] > math.MaxInt32 {
				return nil, fmt.Errorf("%w: tensor %q: dimension %d is too large", ErrFormat, t.Name, t.Dims[j])
			}
		}
		t.Type = Type(d.u32())
		t.Offset = d.u64()
		if d.err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, d.err)
		}
		if !t.Type.Known() {
			return nil, fmt.Errorf("%w: tensor %q: unknown ggml type %d", ErrFormat, t.Name, uint32(t.Type))
		}
		size, err := t.Type.ByteSize(t.Dims)
		if err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, t.Name, err)
		}
		t.Size = size
		if t.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("%w: tensor %q: offset %d is not a multiple of the alignment %d", ErrFormat, t.Name, t.Offset, f.Alignment)
		}
		if _, dup := f.tensors[t.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor %q", ErrFormat, t.Name)
		}
		f.tensors[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	// The data section starts at the next multiple of the alignment.
	start := d.off
	if rem := start % f.Alignment; rem != 0 {
		start += f.Alignment - rem
	}
	if len(f.Tensors) > 0 && start > d.size {
		return nil, fmt.Errorf("%w: the data section would start at byte %d, past the end of the %d-byte file (truncated?)", ErrFormat, start, d.size)
	}
	f.DataOffset = int64(start)
	room := uint64(0)
	if start < d.size {
		room = d.size - start
	}
	for _, t := range f.Tensors {
		if t.Offset > room || t.Size > room-t.Offset {
			return nil, fmt.Errorf("%w: tensor %q: bytes [%d, %d) of the data section run past the end of the file (%d bytes of data; truncated?)", ErrFormat, t.Name, t.Offset, t.Offset+t.Size, room)
		}
	}
	return f, nil
}

// decoder reads the header sequentially; the first error sticks.
type decoder struct {
	r    *bufio.Reader
	off  uint64
	size uint64
	err  error
}

func (d *decoder) left() uint64 { return d.size - d.off }

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
	}
}

// bytes reads n bytes, n bounded by the rest of the file.
func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > d.left() || n > math.MaxInt {
		d.fail("%d bytes needed at byte %d, past the end of the %d-byte file (truncated?)", n, d.off, d.size)
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.err = fmt.Errorf("reading at byte %d: %w", d.off, err)
		return nil
	}
	d.off += n
	return b
}

func (d *decoder) fixed(n int) []byte {
	var buf [8]byte
	if d.err != nil {
		return buf[:n]
	}
	if uint64(n) > d.left() {
		d.fail("%d bytes needed at byte %d, past the end of the %d-byte file (truncated?)", n, d.off, d.size)
		return buf[:n]
	}
	if _, err := io.ReadFull(d.r, buf[:n]); err != nil {
		d.err = fmt.Errorf("reading at byte %d: %w", d.off, err)
	}
	d.off += uint64(n)
	return buf[:n]
}

func (d *decoder) u8() uint8   { return d.fixed(1)[0] }
func (d *decoder) u16() uint16 { return binary.LittleEndian.Uint16(d.fixed(2)) }
func (d *decoder) u32() uint32 { return binary.LittleEndian.Uint32(d.fixed(4)) }
func (d *decoder) u64() uint64 { return binary.LittleEndian.Uint64(d.fixed(8)) }

func (d *decoder) str() string {
	n := d.u64()
	if d.err == nil && n > d.left() {
		d.fail("string of %d bytes at byte %d runs past the end of the %d-byte file", n, d.off, d.size)
	}
	return string(d.bytes(n))
}

// count reads an array length and checks that that many elements of at least min bytes
// fit in the rest of the file.
func (d *decoder) count(min uint64) int {
	n := d.u64()
	if d.err == nil && (n > d.left()/min || n > math.MaxInt) {
		d.fail("array of %d elements cannot fit in the %d bytes left of the file", n, d.left())
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

// value reads a value of type t; depth counts enclosing arrays.
func (d *decoder) value(t ValueType, depth int) any {
	switch t {
	case TypeUint8:
		return d.u8()
	case TypeInt8:
		return int8(d.u8())
	case TypeUint16:
		return d.u16()
	case TypeInt16:
		return int16(d.u16())
	case TypeUint32:
		return d.u32()
	case TypeInt32:
		return int32(d.u32())
	case TypeFloat32:
		return math.Float32frombits(d.u32())
	case TypeBool:
		return d.u8() != 0 // as ggml reads it
	case TypeString:
		return d.str()
	case TypeUint64:
		return d.u64()
	case TypeInt64:
		return int64(d.u64())
	case TypeFloat64:
		return math.Float64frombits(d.u64())
	case TypeArray:
		if depth >= maxDepth {
			d.fail("arrays nested deeper than %d", maxDepth)
			return nil
		}
		return d.array(ValueType(d.u32()), depth+1)
	}
	d.fail("unknown value type %d", uint32(t))
	return nil
}

func (d *decoder) array(elem ValueType, depth int) any {
	if d.err != nil {
		return nil
	}
	min := elem.size()
	switch elem {
	case TypeString:
		min = 8
	case TypeArray:
		min = 12
	case TypeUint8, TypeInt8, TypeUint16, TypeInt16, TypeUint32, TypeInt32, TypeFloat32, TypeBool, TypeUint64, TypeInt64, TypeFloat64:
	default:
		d.fail("array of unknown value type %d", uint32(elem))
		return nil
	}
	n := d.count(min)
	if d.err != nil {
		return nil
	}
	switch elem {
	case TypeUint8:
		return d.bytes(uint64(n))
	case TypeInt8:
		return readSlice(d, n, func(d *decoder) int8 { return int8(d.u8()) })
	case TypeUint16:
		return readSlice(d, n, (*decoder).u16)
	case TypeInt16:
		return readSlice(d, n, func(d *decoder) int16 { return int16(d.u16()) })
	case TypeUint32:
		return readSlice(d, n, (*decoder).u32)
	case TypeInt32:
		return readSlice(d, n, func(d *decoder) int32 { return int32(d.u32()) })
	case TypeFloat32:
		return readSlice(d, n, func(d *decoder) float32 { return math.Float32frombits(d.u32()) })
	case TypeBool:
		return readSlice(d, n, func(d *decoder) bool { return d.u8() != 0 })
	case TypeString:
		return readSlice(d, n, (*decoder).str)
	case TypeUint64:
		return readSlice(d, n, (*decoder).u64)
	case TypeInt64:
		return readSlice(d, n, func(d *decoder) int64 { return int64(d.u64()) })
	case TypeFloat64:
		return readSlice(d, n, func(d *decoder) float64 { return math.Float64frombits(d.u64()) })
	}
	return readSlice(d, n, func(d *decoder) any { return d.value(TypeArray, depth) })
}

func readSlice[T any](d *decoder, n int, read func(*decoder) T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = read(d)
		if d.err != nil {
			return nil
		}
	}
	return s
}

// describe summarizes a value for error messages.
func describe(v any) string {
	s := fmt.Sprintf("%v", v)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return strings.ReplaceAll(s, "\n", " ")
}
