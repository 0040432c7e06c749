package tokenizer

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/lmrun/lmrun/format"
)

// readGGUFMetadata is a minimal, test-only GGUF (version 2 or 3) metadata reader: it
// returns the key/value section converted as an lmc checkpoint stores it (integers as
// int64, floats as float64, bool, string; arrays of integers as []int64, of float32 as
// []float32, of strings as []string) — what the production importer in format/gguf
// copies into a checkpoint. Tensor infos are not read.
func readGGUFMetadata(path string) (format.Metadata, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &ggufReader{b: b}
	if string(r.take(4)) != "GGUF" {
		return nil, fmt.Errorf("%s: not GGUF", path)
	}
	if v := r.u32(); v != 2 && v != 3 {
		return nil, fmt.Errorf("%s: GGUF version %d", path, v)
	}
	r.u64() // tensor count
	n := r.u64()
	md := format.Metadata{}
	for i := uint64(0); i < n && r.err == nil; i++ {
		key := r.str()
		typ := r.u32()
		md[key] = r.value(typ)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: %w", path, r.err)
	}
	return md, nil
}

type ggufReader struct {
	b   []byte
	off int
	err error
}

func (r *ggufReader) take(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)-r.off) {
		r.err = io.ErrUnexpectedEOF
		return nil
	}
	v := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return v
}

func (r *ggufReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *ggufReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (r *ggufReader) str() string { return string(r.take(r.u64())) }

// GGUF value types.
const (
	gU8, gI8, gU16, gI16, gU32, gI32, gF32, gBool, gString, gArray, gU64, gI64, gF64 = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
)

func (r *ggufReader) scalar(typ uint32) any {
	le := binary.LittleEndian
	switch typ {
	case gU8:
		return int64(r.take(1)[0])
	case gI8:
		return int64(int8(r.take(1)[0]))
	case gU16:
		return int64(le.Uint16(r.take(2)))
	case gI16:
		return int64(int16(le.Uint16(r.take(2))))
	case gU32:
		return int64(r.u32())
	case gI32:
		return int64(int32(r.u32()))
	case gU64:
		return int64(r.u64())
	case gI64:
		return int64(r.u64())
	case gF32:
		return float64(math.Float32frombits(r.u32()))
	case gF64:
		return math.Float64frombits(r.u64())
	case gBool:
		return r.take(1)[0] != 0
	case gString:
		return r.str()
	}
	r.err = fmt.Errorf("GGUF value type %d", typ)
	return nil
}

func (r *ggufReader) value(typ uint32) any {
	if typ != gArray {
		return r.scalar(typ)
	}
	et, n := r.u32(), r.u64()
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("GGUF array of %d", n)
		return nil
	}
	switch et {
	case gString:
		v := make([]string, n)
		for i := range v {
			v[i] = r.str()
		}
		return v
	case gF32:
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(r.u32())
		}
		return v
	case gF64:
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(math.Float64frombits(r.u64()))
		}
		return v
	}
	v := make([]int64, n)
	for i := range v {
		x, _ := r.scalar(et).(int64)
		v[i] = x
		if r.err != nil {
			return nil
		}
	}
	return v
}
