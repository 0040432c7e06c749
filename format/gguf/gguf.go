// Package gguf reads and writes GGUF files, the model format of ggml and llama.cpp, and
// converts between them and lmrun checkpoints.
//
// A GGUF file (versions 2 and 3 are read, version 3 is written) is
//
//	"GGUF", u32 version, u64 tensor_count, u64 kv_count
//	kv_count × (string key, u32 value_type, value)
//	tensor_count × (string name, u32 n_dims, n_dims × u64 ne, u32 ggml_type, u64 offset)
//	zero padding to general.alignment (default 32)
//	tensor data, each tensor at data start + offset, offsets multiples of the alignment
//
// with strings as u64 length + bytes and arrays as u32 element type + u64 count +
// elements. The dimensions ne list the fastest-varying first: a GGUF [ne0, ne1] matrix is
// an lmc [ne1, ne0] one with the same bytes.
//
// Parse bounds every count and length by the bytes left in the file before allocating,
// so a corrupt or hostile file costs at most a small multiple of its own size in memory.
package gguf

import (
	"errors"
	"fmt"

	"github.com/lmrun/lmrun/dtype"
)

// Magic is the first four bytes of a GGUF file.
const Magic = "GGUF"

// Version is the GGUF version Write produces.
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// MaxDims is the largest number of dimensions a GGUF tensor has (ggml's GGML_MAX_DIMS).
const MaxDims = 4

// MaxNameLen is the longest tensor name ggml accepts (GGML_MAX_NAME is 64, with the NUL).
const MaxNameLen = 63

// maxDepth bounds the nesting of arrays of arrays.
const maxDepth = 8

// ErrFormat is wrapped by every error that reports a malformed GGUF file.
var ErrFormat = errors.New("malformed GGUF file")

// ValueType is the type code of a metadata value.
type ValueType uint32

// Metadata value types. The numbers are part of the file format.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

// String returns the type's name ("uint32", "array", ...).
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("value_type(%d)", uint32(t))
}

// size returns the encoded size of a scalar of type t, 0 for strings and arrays.
func (t ValueType) size() uint64 {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// KV is one metadata entry. Value has the Go type of its GGUF type: uint8, int8, uint16,
// int16, uint32, int32, float32, bool, string, uint64, int64 or float64 for scalars, a
// slice of one of them for an array, and []any (each element itself an array value) for
// an array of arrays.
type KV struct {
	Key   string
	Value any
}

// TypeOf returns the GGUF type of a metadata value and, for arrays, the type of its
// elements.
func TypeOf(v any) (t, elem ValueType, err error) {
	switch v.(type) {
	case uint8:
		return TypeUint8, 0, nil
	case int8:
		return TypeInt8, 0, nil
	case uint16:
		return TypeUint16, 0, nil
	case int16:
		return TypeInt16, 0, nil
	case uint32:
		return TypeUint32, 0, nil
	case int32:
		return TypeInt32, 0, nil
	case float32:
		return TypeFloat32, 0, nil
	case bool:
		return TypeBool, 0, nil
	case string:
		return TypeString, 0, nil
	case uint64:
		return TypeUint64, 0, nil
	case int64:
		return TypeInt64, 0, nil
	case float64:
		return TypeFloat64, 0, nil
	case []uint8:
		return TypeArray, TypeUint8, nil
	case []int8:
		return TypeArray, TypeInt8, nil
	case []uint16:
		return TypeArray, TypeUint16, nil
	case []int16:
		return TypeArray, TypeInt16, nil
	case []uint32:
		return TypeArray, TypeUint32, nil
	case []int32:
		return TypeArray, TypeInt32, nil
	case []float32:
		return TypeArray, TypeFloat32, nil
	case []bool:
		return TypeArray, TypeBool, nil
	case []string:
		return TypeArray, TypeString, nil
	case []uint64:
		return TypeArray, TypeUint64, nil
	case []int64:
		return TypeArray, TypeInt64, nil
	case []float64:
		return TypeArray, TypeFloat64, nil
	case []any:
		return TypeArray, TypeArray, nil
	}
	return 0, 0, fmt.Errorf("no GGUF type for a Go %T", v)
}

// Type is a ggml tensor type.
type Type uint32

// The ggml tensor types. Numbers missing here were removed from ggml and are rejected.
const (
	TypeF32     Type = 0
	TypeF16     Type = 1
	TypeQ4_0    Type = 2
	TypeQ4_1    Type = 3
	TypeQ5_0    Type = 6
	TypeQ5_1    Type = 7
	TypeQ8_0    Type = 8
	TypeQ8_1    Type = 9
	TypeQ2_K    Type = 10
	TypeQ3_K    Type = 11
	TypeQ4_K    Type = 12
	TypeQ5_K    Type = 13
	TypeQ6_K    Type = 14
	TypeQ8_K    Type = 15
	TypeIQ2_XXS Type = 16
	TypeIQ2_XS  Type = 17
	TypeIQ3_XXS Type = 18
	TypeIQ1_S   Type = 19
	TypeIQ4_NL  Type = 20
	TypeIQ3_S   Type = 21
	TypeIQ2_S   Type = 22
	TypeIQ4_XS  Type = 23
	TypeI8      Type = 24
	TypeI16     Type = 25
	TypeI32     Type = 26
	TypeI64     Type = 27
	TypeF64     Type = 28
	TypeIQ1_M   Type = 29
	TypeBF16    Type = 30
	TypeTQ1_0   Type = 34
	TypeTQ2_0   Type = 35
	TypeMXFP4   Type = 39
)

// typeTraits gives the elements per block and bytes per block of each ggml type.
var typeTraits = map[Type]struct {
	name        string
	block, size uint64
}{
	TypeF32: {"F32", 1, 4}, TypeF16: {"F16", 1, 2}, TypeQ4_0: {"Q4_0", 32, 18},
	TypeQ4_1: {"Q4_1", 32, 20}, TypeQ5_0: {"Q5_0", 32, 22}, TypeQ5_1: {"Q5_1", 32, 24},
	TypeQ8_0: {"Q8_0", 32, 34}, TypeQ8_1: {"Q8_1", 32, 36}, TypeQ2_K: {"Q2_K", 256, 84},
	TypeQ3_K: {"Q3_K", 256, 110}, TypeQ4_K: {"Q4_K", 256, 144}, TypeQ5_K: {"Q5_K", 256, 176},
	TypeQ6_K: {"Q6_K", 256, 210}, TypeQ8_K: {"Q8_K", 256, 292}, TypeIQ2_XXS: {"IQ2_XXS", 256, 66},
	TypeIQ2_XS: {"IQ2_XS", 256, 74}, TypeIQ3_XXS: {"IQ3_XXS", 256, 98}, TypeIQ1_S: {"IQ1_S", 256, 50},
	TypeIQ4_NL: {"IQ4_NL", 32, 18}, TypeIQ3_S: {"IQ3_S", 256, 110}, TypeIQ2_S: {"IQ2_S", 256, 82},
	TypeIQ4_XS: {"IQ4_XS", 256, 136}, TypeI8: {"I8", 1, 1}, TypeI16: {"I16", 1, 2},
	TypeI32: {"I32", 1, 4}, TypeI64: {"I64", 1, 8}, TypeF64: {"F64", 1, 8},
	TypeIQ1_M: {"IQ1_M", 256, 56}, TypeBF16: {"BF16", 1, 2}, TypeTQ1_0: {"TQ1_0", 256, 54},
	TypeTQ2_0: {"TQ2_0", 256, 66}, TypeMXFP4: {"MXFP4", 32, 17},
}

// String returns ggml's name for the type ("F16", "Q8_0", ...).
func (t Type) String() string {
	if tr, ok := typeTraits[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Known reports whether t is a ggml type this package can size (it need not be one lmrun
// computes with).
func (t Type) Known() bool {
	_, ok := typeTraits[t]
	return ok
}

// DType returns the lmc dtype with the same storage, ok false when lmc has none.
func (t Type) DType() (dtype.DType, bool) {
	switch t {
	case TypeF32:
		return dtype.F32, true
	case TypeF16:
		return dtype.F16, true
	case TypeBF16:
		return dtype.BF16, true
	case TypeQ8_0:
		return dtype.Q8_0, true
	case TypeQ4_0:
		return dtype.Q4_0, true
	case TypeQ4_K:
		return dtype.Q4_K, true
	case TypeQ5_K:
		return dtype.Q5_K, true
	case TypeQ6_K:
		return dtype.Q6_K, true
	}
	return 0, false
}

// TypeFor returns the ggml type storing an lmc dtype.
func TypeFor(d dtype.DType) (Type, error) {
	switch d {
	case dtype.F32:
		return TypeF32, nil
	case dtype.F16:
		return TypeF16, nil
	case dtype.BF16:
		return TypeBF16, nil
	case dtype.Q8_0:
		return TypeQ8_0, nil
	case dtype.Q4_0:
		return TypeQ4_0, nil
	case dtype.Q4_K:
		return TypeQ4_K, nil
	case dtype.Q5_K:
		return TypeQ5_K, nil
	case dtype.Q6_K:
		return TypeQ6_K, nil
	}
	return 0, fmt.Errorf("no ggml type for dtype %s", d)
}

// ByteSize returns the bytes of a tensor of type t with dimensions ne (fastest first),
// checking that ne[0] is a multiple of the block size and that nothing overflows.
func (t Type) ByteSize(ne []uint64) (uint64, error) {
	tr, ok := typeTraits[t]
	if !ok {
		return 0, fmt.Errorf("unknown ggml type %d", uint32(t))
	}
	if len(ne) > 0 && ne[0]%tr.block != 0 {
		return 0, fmt.Errorf("%s rows of %d elements are not whole blocks of %d", tr.name, ne[0], tr.block)
	}
	n := uint64(1)
	for _, d := range ne {
		if d != 0 && n > (1<<62)/d {
			return 0, fmt.Errorf("dimensions %v have too many elements", ne)
		}
		n *= d
	}
	return n / tr.block * tr.size, nil
}

// Shape converts GGUF dimensions (fastest first) to an lmc shape (slowest first).
func Shape(ne []uint64) []int {
	s := make([]int, len(ne))
	for i, d := range ne {
		s[len(ne)-1-i] = int(d)
	}
	return s
}

// Dims converts an lmc shape (slowest first) to GGUF dimensions (fastest first).
func Dims(shape []int) []uint64 {
	ne := make([]uint64, len(shape))
	for i, d := range shape {
		ne[len(shape)-1-i] = uint64(d)
	}
	return ne
}
