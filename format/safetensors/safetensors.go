// Package safetensors reads and writes Hugging Face safetensors files: an 8-byte
// little-endian header length N, N bytes of JSON describing every tensor (dtype, shape and
// byte range of the data area), then the data area.
//
// The parser is written to face hostile input: it never allocates more than the file's
// size, rejects overlapping or out-of-range tensors, and returns an error (never panics)
// on any malformed header. Tensor data is read from the file on demand, one tensor at a
// time, so opening a large checkpoint costs only its header.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"

	"github.com/lmrun/lmrun/dtype"
)

// MaxHeaderSize bounds the JSON header a reader accepts (100 MiB, as the reference
// implementation does).
const MaxHeaderSize = 100 << 20

// ErrFormat is wrapped by every error that reports a malformed safetensors file.
var ErrFormat = errors.New("malformed safetensors file")

// DType is a safetensors element type, spelled as in the header ("F32", "BF16", ...).
type DType string

// The element types of the safetensors format. Every one is accepted by the parser; only
// the floating-point types can be converted with Tensor.Float32.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

var dtypeSizes = map[DType]int{
	BOOL: 1, U8: 1, I8: 1, F8E4M3: 1, F8E5M2: 1,
	I16: 2, U16: 2, F16: 2, BF16: 2,
	I32: 4, U32: 4, F32: 4,
	F64: 8, I64: 8, U64: 8,
}

// Size returns the number of bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int { return dtypeSizes[d] }

// Format returns the lmc dtype with the same encoding (F32, F16, BF16), with ok false for
// the other types.
func (d DType) Format() (dt dtype.DType, ok bool) {
	switch d {
	case F32:
		return dtype.F32, true
	case F16:
		return dtype.F16, true
	case BF16:
		return dtype.BF16, true
	}
	return 0, false
}

// Tensor is one tensor of a safetensors file.
type Tensor struct {
	Name   string
	DType  DType
	Shape  []int // empty for a scalar
	Offset int64 // absolute offset of the tensor's first byte in the file at Path
	Size   int64 // bytes of data
	Path   string

	mem []byte // the tensor's bytes when the file was parsed from memory
}

// NumElements returns the number of elements (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// Bytes returns the tensor's raw little-endian bytes. For a file opened with Open they are
// read from the file at each call into a new buffer; for one from Parse they alias the
// parsed buffer.
func (t *Tensor) Bytes() ([]byte, error) {
	if t.mem != nil || t.Path == "" {
		return t.mem, nil
	}
	b := make([]byte, t.Size)
	if err := t.readAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// readAt fills b with the tensor's bytes starting at byte off of the tensor.
func (t *Tensor) readAt(b []byte, off int64) error {
	if t.mem != nil || t.Path == "" {
		if off < 0 || off > int64(len(t.mem)) || int64(len(b)) > int64(len(t.mem))-off {
			return fmt.Errorf("tensor %s: read of %d bytes at %d out of range", t.Name, len(b), off)
		}
		copy(b, t.mem[off:])
		return nil
	}
	f, err := os.Open(t.Path)
	if err != nil {
		return fmt.Errorf("tensor %s: %w", t.Name, err)
	}
	defer f.Close()
	n, err := f.ReadAt(b, t.Offset+off)
	if n == len(b) {
		return nil
	}
	if err == io.EOF || err == nil {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("tensor %s: reading %s: %w (file changed or truncated since it was opened?)", t.Name, t.Path, err)
}

// Float32 returns the tensor's elements converted to float32 in a new slice. It supports
// F32, F16, BF16 and F64 tensors.
func (t *Tensor) Float32() ([]float32, error) {
	switch t.DType {
	case F32, F16, BF16, F64:
	default:
		return nil, fmt.Errorf("tensor %s: dtype %s cannot be converted to float32", t.Name, t.DType)
	}
	b, err := t.Bytes()
	if err != nil {
		return nil, err
	}
	return DecodeFloat32(t.DType, b)
}

// DecodeFloat32 converts little-endian F32, F16, BF16 or F64 bytes to float32.
func DecodeFloat32(d DType, b []byte) ([]float32, error) {
	size := d.Size()
	if size == 0 || len(b)%size != 0 {
		return nil, fmt.Errorf("%d bytes are not a whole number of %s elements", len(b), d)
	}
	out := make([]float32, len(b)/size)
	le := binary.LittleEndian
	switch d {
	case F32:
		copy(dtype.F32ToBytes(out), b)
	case F16:
		for i := range out {
			out[i] = dtype.F16ToF32(le.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = dtype.BF16ToF32(le.Uint16(b[2*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	default:
		return nil, fmt.Errorf("dtype %s cannot be converted to float32", d)
	}
	return out, nil
}

// File is a set of tensors: one safetensors file, or all the shards of a sharded
// checkpoint (OpenIndex). It holds no open file: tensor data is read on demand.
type File struct {
	Tensors  []*Tensor         // in file order (shard by shard for a sharded set)
	Metadata map[string]string // the __metadata__ object (merged over shards)
	byName   map[string]*Tensor
}

// Tensor returns the named tensor, or nil.
func (f *File) Tensor(name string) *Tensor { return f.byName[name] }

// Names returns the tensor names in sorted order.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for _, t := range f.Tensors {
		names = append(names, t.Name)
	}
	sort.Strings(names)
	return names
}

// Close releases the file's resources. None are held open at present (data is read on
// demand), but callers should Close a File they no longer need.
func (f *File) Close() error { return nil }

// Parse reads a safetensors file held in memory. The tensors' Bytes alias b.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the 8-byte header length", ErrFormat, len(b))
	}
	n, err := headerLen(binary.LittleEndian.Uint64(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	data := b[8+n:]
	ts, meta, err := parseHeader(b[8:8+n], int64(len(data)))
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		begin := t.Offset
		t.mem = data[begin : begin+t.Size : begin+t.Size]
		if t.mem == nil {
			t.mem = []byte{}
		}
		t.Offset += 8 + n
	}
	return newFile(ts, meta), nil
}

// Open reads the header of the safetensors file at path and validates it against the
// file's size. Tensor data is read when asked for.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("%s: %w: %d bytes, shorter than the 8-byte header length", path, ErrFormat, size)
	}
	var lb [8]byte
	if _, err := io.ReadFull(f, lb[:]); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	n, err := headerLen(binary.LittleEndian.Uint64(lb[:]), size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", path, err)
	}
	ts, meta, err := parseHeader(hdr, size-8-n)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, t := range ts {
		t.Offset += 8 + n
		t.Path = path
	}
	return newFile(ts, meta), nil
}

func newFile(ts []*Tensor, meta map[string]string) *File {
	f := &File{Tensors: ts, Metadata: meta, byName: make(map[string]*Tensor, len(ts))}
	for _, t := range ts {
		f.byName[t.Name] = t
	}
	return f
}

// headerLen checks the header length n read from a file of size bytes.
func headerLen(n uint64, size int64) (int64, error) {
	if n > uint64(size-8) {
		return 0, fmt.Errorf("%w: header of %d bytes runs past the end of the %d-byte file (truncated, or not safetensors)", ErrFormat, n, size)
	}
	if n > MaxHeaderSize {
		return 0, fmt.Errorf("%w: header of %d bytes is larger than the %d-byte limit", ErrFormat, n, MaxHeaderSize)
	}
	if n < 2 {
		return 0, fmt.Errorf("%w: header of %d bytes cannot hold a JSON object", ErrFormat, n)
	}
	return int64(n), nil
}

// entry is one tensor of the JSON header. Numbers are kept as text so that negative,
// fractional or huge values are reported rather than silently converted.
type entry struct {
	DType       *string       `json:"dtype"`
	Shape       []json.Number `json:"shape"`
	DataOffsets []json.Number `json:"data_offsets"`
}

// parseHeader decodes the JSON header and checks every tensor against a data area of
// dataLen bytes. Tensor offsets are returned relative to the data area, sorted.
func parseHeader(hdr []byte, dataLen int64) ([]*Tensor, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: header is not JSON: %v", ErrFormat, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("%w: header is not a JSON object", ErrFormat)
	}
	var (
		ts   []*Tensor
		meta map[string]string
		seen = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: header JSON: %v", ErrFormat, err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("%w: header JSON: object key is not a string", ErrFormat)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("%w: header names %q twice", ErrFormat, name)
		}
		seen[name] = true
		if name == "__metadata__" {
			if err := dec.Decode(&meta); err != nil {
				return nil, nil, fmt.Errorf("%w: __metadata__ must map strings to strings: %v", ErrFormat, err)
			}
			continue
		}
		var e entry
		if err := dec.Decode(&e); err != nil {
			return nil, nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		t, err := checkEntry(name, &e, dataLen)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		ts = append(ts, t)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, fmt.Errorf("%w: header JSON: %v", ErrFormat, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, fmt.Errorf("%w: data after the header's JSON object", ErrFormat)
	}
	// Tensors may not overlap. (Holes are tolerated; they cost nothing to read around.)
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].Offset != ts[j].Offset {
			return ts[i].Offset < ts[j].Offset
		}
		return ts[i].Size < ts[j].Size
	})
	for i := 1; i < len(ts); i++ {
		if ts[i].Offset < ts[i-1].Offset+ts[i-1].Size {
			return nil, nil, fmt.Errorf("%w: tensors %q and %q overlap", ErrFormat, ts[i-1].Name, ts[i].Name)
		}
	}
	return ts, meta, nil
}

func checkEntry(name string, e *entry, dataLen int64) (*Tensor, error) {
	if name == "" {
		return nil, fmt.Errorf("empty tensor name")
	}
	if e.DType == nil {
		return nil, fmt.Errorf("no dtype")
	}
	dt := DType(*e.DType)
	size := dt.Size()
	if size == 0 {
		return nil, fmt.Errorf("unknown dtype %q", *e.DType)
	}
	if e.Shape == nil {
		return nil, fmt.Errorf("no shape")
	}
	if len(e.Shape) > 64 {
		return nil, fmt.Errorf("%d dimensions", len(e.Shape))
	}
	shape := make([]int, len(e.Shape))
	n := uint64(1)
	overflow := false
	for i, s := range e.Shape {
		d, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bad dimension %s in shape", s)
		}
		if d > math.MaxInt32*(1<<16) {
			return nil, fmt.Errorf("dimension %d too large", d)
		}
		shape[i] = int(d)
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 {
			overflow = true
		}
		n = lo
	}
	if len(e.DataOffsets) != 2 {
		return nil, fmt.Errorf("data_offsets must hold 2 numbers, has %d", len(e.DataOffsets))
	}
	begin, err1 := strconv.ParseUint(string(e.DataOffsets[0]), 10, 64)
	end, err2 := strconv.ParseUint(string(e.DataOffsets[1]), 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("bad data_offsets [%s, %s]", e.DataOffsets[0], e.DataOffsets[1])
	}
	if begin > end {
		return nil, fmt.Errorf("data_offsets [%d, %d] end before they begin", begin, end)
	}
	if end > uint64(dataLen) {
		return nil, fmt.Errorf("data_offsets [%d, %d] run past the %d-byte data area (truncated file?)", begin, end, dataLen)
	}
	hi, want := bits.Mul64(n, uint64(size))
	if overflow || hi != 0 || want != end-begin {
		return nil, fmt.Errorf("shape %v of %s needs %s bytes, data_offsets [%d, %d] hold %d", shape, dt, bytesNeeded(overflow || hi != 0, want), begin, end, end-begin)
	}
	return &Tensor{Name: name, DType: dt, Shape: shape, Offset: int64(begin), Size: int64(end - begin)}, nil
}

func bytesNeeded(overflow bool, n uint64) string {
	if overflow {
		return "more than 2^64"
	}
	return strconv.FormatUint(n, 10)
}

// Equal reports whether two tensors have the same dtype, shape and bytes. It compares the
// data a chunk at a time.
func Equal(a, b *Tensor) (bool, error) {
	if a.DType != b.DType || a.Size != b.Size || len(a.Shape) != len(b.Shape) {
		return false, nil
	}
	for i := range a.Shape {
		if a.Shape[i] != b.Shape[i] {
			return false, nil
		}
	}
	const chunk = 1 << 20
	ba := make([]byte, min(chunk, a.Size))
	bb := make([]byte, len(ba))
	for off := int64(0); off < a.Size; off += chunk {
		n := min(chunk, a.Size-off)
		if err := a.readAt(ba[:n], off); err != nil {
			return false, err
		}
		if err := b.readAt(bb[:n], off); err != nil {
			return false, err
		}
		if !bytes.Equal(ba[:n], bb[:n]) {
			return false, nil
		}
	}
	return true, nil
}

// LooksLike reports whether head, the first bytes (at least 9) of a file of size bytes,
// starts like a safetensors file: a header length that fits the file and the limit,
// followed by the JSON object's opening brace.
func LooksLike(head []byte, size int64) bool {
	if len(head) < 9 || size < 10 {
		return false
	}
	n := binary.LittleEndian.Uint64(head)
	return n >= 2 && n <= uint64(size-8) && n <= MaxHeaderSize && head[8] == '{'
}
