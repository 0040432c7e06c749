package format

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format/internal/mmap"
)

// Format limits. They bound what a hostile file can make a reader allocate.
const (
	Magic      = "LMRC"
	Version    = 1
	HeaderSize = 56
	Alignment  = 64
	MaxDims    = dtype.MaxDims // dimensions of a tensor
	MaxNameLen = 256
)

// ErrFormat is wrapped by every error that reports a malformed checkpoint.
var ErrFormat = errors.New("malformed lmc checkpoint")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C of b, the checksum the format uses.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// TensorInfo describes one tensor of a checkpoint.
type TensorInfo struct {
	Name   string
	DType  dtype.DType
	Shape  []int
	Offset int64 // relative to the start of the data section
	Size   int64
	CRC    uint32
}

// Tensor is a tensor of an open checkpoint; Data aliases the file's mapping.
type Tensor struct {
	TensorInfo
	Data []byte
}

// F32 returns the tensor's elements as float32 without copying. It fails for other
// dtypes. On a big-endian host it returns a converted copy.
func (t *Tensor) F32() ([]float32, error) {
	if t.DType != dtype.F32 {
		return nil, fmt.Errorf("tensor %s is %s, want f32", t.Name, t.DType)
	}
	return dtype.BytesToF32(t.Data), nil
}

// File is an open checkpoint: an lmc file read by Open, or a model of another format
// built by NewFile. Its tensors alias a read-only mapping of the file (or memory NewFile
// was given), valid until Close. A File is safe for concurrent use by multiple goroutines.
type File struct {
	Meta    Metadata
	Tensors []*Tensor // in file order
	byName  map[string]*Tensor
	data    []byte // the whole file
	unmap   func() error
	path    string
	// inMemory marks a File built by NewFile: no checksums, tensors from Sources.
	inMemory bool
}

// Open maps the checkpoint at path and validates its index.
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
	if st.Size() < HeaderSize {
		return nil, fmt.Errorf("%s: %w: file is %d bytes, shorter than the %d-byte header", path, ErrFormat, st.Size(), HeaderSize)
	}
	if st.Size() > math.MaxInt-1 {
		return nil, fmt.Errorf("%s: file too large", path)
	}
	data, unmap, err := mmap.File(f, int(st.Size()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	lf, err := parse(data)
	if err != nil {
		_ = unmap()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	lf.unmap = unmap
	lf.path = path
	return lf, nil
}

// Parse reads a checkpoint held in memory. The tensors alias b.
func Parse(b []byte) (*File, error) {
	f, err := parse(b)
	if err != nil {
		return nil, err
	}
	f.unmap = func() error { return nil }
	return f, nil
}

// Close releases the mapping. Tensor data must not be used afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	f.data = nil
	return err
}

// Tensor returns the named tensor, or nil.
func (f *File) Tensor(name string) *Tensor { return f.byName[name] }

// Verify recomputes every tensor's checksum and reports the first mismatch.
// progress, if not nil, is called after each tensor. A File built by NewFile has no
// checksums: Verify returns ErrNoChecksums.
func (f *File) Verify(progress func(done, total int)) error {
	if f.inMemory {
		return ErrNoChecksums
	}
	for i, t := range f.Tensors {
		if got := Checksum(t.Data); got != t.CRC {
			return fmt.Errorf("%w: tensor %s: checksum %08x, index says %08x (file corrupted)", ErrFormat, t.Name, got, t.CRC)
		}
		if progress != nil {
			progress(i+1, len(f.Tensors))
		}
	}
	return nil
}

// DataSize returns the number of bytes of tensor data.
func (f *File) DataSize() int64 {
	var n int64
	for _, t := range f.Tensors {
		n += t.Size
	}
	return n
}

func parse(b []byte) (*File, error) {
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrFormat, len(b))
	}
	if string(b[:4]) != Magic {
		return nil, fmt.Errorf("%w: bad magic %q (not an lmc checkpoint; use lmrun convert)", ErrFormat, b[:4])
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[4:]); v != Version {
		return nil, fmt.Errorf("%w: version %d, this build reads version %d", ErrFormat, v, Version)
	}
	nMeta := le.Uint64(b[8:])
	nTensors := le.Uint64(b[16:])
	indexSize := le.Uint64(b[24:])
	dataOff := le.Uint64(b[32:])
	dataSize := le.Uint64(b[40:])
	indexCRC := le.Uint32(b[48:])
	size := uint64(len(b))
	if indexSize > size-HeaderSize {
		return nil, fmt.Errorf("%w: index of %d bytes runs past the end of the %d-byte file (truncated?)", ErrFormat, indexSize, size)
	}
	if dataOff%Alignment != 0 || dataOff < HeaderSize+indexSize || dataOff > size {
		return nil, fmt.Errorf("%w: bad data offset %d", ErrFormat, dataOff)
	}
	if dataSize != size-dataOff {
		return nil, fmt.Errorf("%w: file is %d bytes, header says %d (truncated or padded)", ErrFormat, size, dataOff+dataSize)
	}
	index := b[HeaderSize : HeaderSize+indexSize]
	if got := Checksum(index); got != indexCRC {
		return nil, fmt.Errorf("%w: index checksum %08x, header says %08x (file corrupted)", ErrFormat, got, indexCRC)
	}
	// Every metadata entry takes at least 9 bytes and every tensor entry at least 37, which
	// bounds the counts by the index size before anything is allocated from them.
	if nMeta > indexSize/9 || nTensors > indexSize/37 {
		return nil, fmt.Errorf("%w: %d metadata entries and %d tensors cannot fit in a %d-byte index", ErrFormat, nMeta, nTensors, indexSize)
	}
	d := decoder{b: index}
	f := &File{Meta: make(Metadata, nMeta), byName: make(map[string]*Tensor, nTensors), data: b}
	for i := uint64(0); i < nMeta; i++ {
		key := d.name("metadata key")
		typ := d.u32()
		var v any
		switch typ {
		case tInt:
			v = int64(d.u64())
		case tFloat:
			v = math.Float64frombits(d.u64())
		case tBool:
			x := d.bytes(1)
			if d.err == nil && x[0] > 1 {
				d.fail("metadata %s: bool byte %d", key, x[0])
			}
			v = d.err == nil && x[0] == 1
		case tString:
			v = d.str()
		case tInts:
			n := d.count(8)
			s := make([]int64, n)
			for j := range s {
				s[j] = int64(d.u64())
			}
			v = s
		case tFloats:
			n := d.count(4)
			s := make([]float32, n)
			for j := range s {
				s[j] = math.Float32frombits(d.u32())
			}
			v = s
		case tStrings:
			n := d.count(8)
			s := make([]string, n)
			for j := range s {
				s[j] = d.str()
			}
			v = s
		default:
			d.fail("metadata %s: unknown value type %d", key, typ)
		}
		if d.err != nil {
			return nil, d.err
		}
		if _, dup := f.Meta[key]; dup {
			return nil, fmt.Errorf("%w: duplicate metadata key %s", ErrFormat, key)
		}
		f.Meta[key] = v
	}
	data := b[dataOff:]
	f.Tensors = make([]*Tensor, 0, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		t := &Tensor{}
		t.Name = d.name("tensor name")
		t.DType = dtype.DType(d.u32())
		nd := d.u32()
		if d.err == nil && (nd == 0 || nd > MaxDims) {
			d.fail("tensor %s: %d dimensions (want 1..%d)", t.Name, nd, MaxDims)
		}
		if d.err != nil {
			return nil, d.err
		}
		t.Shape = make([]int, nd)
		for j := range t.Shape {
			x := d.u64()
			if x > math.MaxInt32 {
				d.fail("tensor %s: dimension %d too large", t.Name, x)
			}
			t.Shape[j] = int(x)
		}
		off, sz := d.u64(), d.u64()
		t.CRC = d.u32()
		if d.err != nil {
			return nil, d.err
		}
		if !t.DType.Valid() {
			return nil, fmt.Errorf("%w: tensor %s: unknown dtype %d", ErrFormat, t.Name, uint32(t.DType))
		}
		want, err := t.DType.ByteSize(t.Shape)
		if err != nil {
			return nil, fmt.Errorf("%w: tensor %s: %v", ErrFormat, t.Name, err)
		}
		if sz != uint64(want) {
			return nil, fmt.Errorf("%w: tensor %s: size %d, shape %v of %s needs %d", ErrFormat, t.Name, sz, t.Shape, t.DType, want)
		}
		if off%Alignment != 0 || off > dataSize || sz > dataSize-off {
			return nil, fmt.Errorf("%w: tensor %s: bytes [%d, %d+%d) outside the %d-byte data section or misaligned", ErrFormat, t.Name, off, off, sz, dataSize)
		}
		t.Offset, t.Size = int64(off), int64(sz)
		t.Data = data[off : off+sz : off+sz]
		if _, dup := f.byName[t.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor %s", ErrFormat, t.Name)
		}
		f.byName[t.Name] = t
		f.Tensors = append(f.Tensors, t)
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("%w: %d unused bytes at the end of the index", ErrFormat, len(d.b)-d.off)
	}
	if err := checkOverlap(f.Tensors); err != nil {
		return nil, err
	}
	return f, nil
}

func checkOverlap(ts []*Tensor) error {
	s := make([]*Tensor, len(ts))
	copy(s, ts)
	sortByOffset(s)
	for i := 1; i < len(s); i++ {
		if s[i].Offset < s[i-1].Offset+s[i-1].Size {
			return fmt.Errorf("%w: tensors %s and %s overlap", ErrFormat, s[i-1].Name, s[i].Name)
		}
	}
	return nil
}

// decoder reads the index with bounds checks; the first error sticks.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return make([]byte, n&7) // small, never used
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("index entry runs past the end of the index (at byte %d, need %d more)", d.off, n)
		return make([]byte, n&7)
	}
	x := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return x
}

func (d *decoder) u32() uint32 {
	x := d.bytes(4)
	if d.err != nil {
		return 0
	}
	return binary.LittleEndian.Uint32(x)
}

func (d *decoder) u64() uint64 {
	x := d.bytes(8)
	if d.err != nil {
		return 0
	}
	return binary.LittleEndian.Uint64(x)
}

// count reads an element count and checks that count elements of at least min bytes
// each fit in the rest of the index.
func (d *decoder) count(min uint64) int {
	n := d.u64()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)-d.off)/min {
		d.fail("array of %d elements cannot fit in the rest of the index", n)
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.u64()
	return string(d.bytes(n))
}

func (d *decoder) name(what string) string {
	n := d.u32()
	if d.err == nil && (n == 0 || n > MaxNameLen) {
		d.fail("%s of length %d (want 1..%d)", what, n, MaxNameLen)
		return ""
	}
	return string(d.bytes(uint64(n)))
}
