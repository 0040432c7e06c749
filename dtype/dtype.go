// Package dtype defines the element types of stored tensors (f32, f16, bf16 and ggml's
// q8_0 and q4_0 blocks) and their codecs: sizes, half-precision conversion, exact
// quantization and dequantization. It imports nothing from the project.
package dtype

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// DType is the storage type of a tensor's elements.
type DType uint32

// Tensor storage types. The numbers are part of the file format.
const (
	F32  DType = 0
	F16  DType = 1
	BF16 DType = 2
	Q8_0 DType = 8
	Q4_0 DType = 9
)

// QBlock is the number of elements in one block of a block-quantized type.
const QBlock = 32

var dtypeNames = map[DType]string{F32: "f32", F16: "f16", BF16: "bf16", Q8_0: "q8_0", Q4_0: "q4_0"}

// String returns the dtype's name as used on the command line ("f32", "q8_0", ...).
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", uint32(d))
}

// Valid reports whether d is a dtype version 1 of the format defines.
func (d DType) Valid() bool {
	_, ok := dtypeNames[d]
	return ok
}

// Parse maps a name such as "f16" to its DType.
func Parse(s string) (DType, error) {
	for d, n := range dtypeNames {
		if n == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("unknown dtype %q (want f32, f16, bf16, q8_0 or q4_0)", s)
}

// ErrShape reports a shape that a dtype cannot store or whose size overflows.
var ErrShape = errors.New("invalid tensor shape")

// ByteSize returns the number of bytes a tensor of dtype d and the given shape occupies.
// Block types need the last dimension to be a multiple of QBlock.
func (d DType) ByteSize(shape []int) (int64, error) {
	if len(shape) == 0 || len(shape) > MaxDims {
		return 0, fmt.Errorf("%w: %d dimensions (want 1..%d)", ErrShape, len(shape), MaxDims)
	}
	n := uint64(1)
	for _, s := range shape {
		if s <= 0 {
			return 0, fmt.Errorf("%w: dimension %d in %v", ErrShape, s, shape)
		}
		hi, lo := bits.Mul64(n, uint64(s))
		if hi != 0 || lo > math.MaxInt64/4 {
			return 0, fmt.Errorf("%w: %v has too many elements", ErrShape, shape)
		}
		n = lo
	}
	switch d {
	case F32:
		return int64(n) * 4, nil
	case F16, BF16:
		return int64(n) * 2, nil
	case Q8_0, Q4_0:
		if shape[len(shape)-1]%QBlock != 0 {
			return 0, fmt.Errorf("%w: %s needs the last dimension to be a multiple of %d, got %v", ErrShape, d, QBlock, shape)
		}
		per := int64(34)
		if d == Q4_0 {
			per = 18
		}
		return int64(n/QBlock) * per, nil
	}
	return 0, fmt.Errorf("unknown dtype %d", uint32(d))
}

// NumElements returns the product of shape's dimensions.
func NumElements(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}

// MaxDims is the largest number of dimensions a tensor may have.
const MaxDims = 8
