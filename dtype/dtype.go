// Package dtype defines the element types of stored tensors (f32, f16, bf16, ggml's q8_0
// and q4_0 blocks and its k-quant super-blocks q4_k, q5_k and q6_k) and their codecs:
// sizes, half-precision conversion, exact quantization and dequantization, and q8_k, the
// activation blocks of the k-quant dot products. It imports nothing from the project.
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
	// The k-quants: ggml's super-blocks of 256 elements, numbered as ggml numbers them.
	Q4_K DType = 12
	Q5_K DType = 13
	Q6_K DType = 14
	// Q8_K is the activation type of the k-quant dot products (ggml's block_q8_K). It is
	// not a storage type: Valid reports false, and no file holds it.
	Q8_K DType = 15
)

// QBlock is the number of elements in one block of q8_0 and q4_0.
const QBlock = 32

// QKBlock is the number of elements in one super-block of the k-quants and q8_k (ggml's
// QK_K).
const QKBlock = 256

var dtypeNames = map[DType]string{F32: "f32", F16: "f16", BF16: "bf16", Q8_0: "q8_0", Q4_0: "q4_0",
	Q4_K: "q4_k", Q5_K: "q5_k", Q6_K: "q6_k"}

// String returns the dtype's name as used on the command line ("f32", "q8_0", ...).
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	if d == Q8_K {
		return "q8_k"
	}
	return fmt.Sprintf("dtype(%d)", uint32(d))
}

// Block returns the number of elements of one block of d and its size in bytes: one
// element for f32, f16 and bf16, QBlock for q8_0 and q4_0, QKBlock for the k-quants and
// q8_k. It returns (0, 0) for an unknown dtype.
func (d DType) Block() (elems, bytes int) {
	switch d {
	case F32:
		return 1, 4
	case F16, BF16:
		return 1, 2
	case Q8_0:
		return QBlock, BlockQ8_0
	case Q4_0:
		return QBlock, BlockQ4_0
	case Q4_K:
		return QKBlock, BlockQ4_K
	case Q5_K:
		return QKBlock, BlockQ5_K
	case Q6_K:
		return QKBlock, BlockQ6_K
	case Q8_K:
		return QKBlock, BlockQ8_K
	}
	return 0, 0
}

// KQuant reports whether d is one of the k-quant storage types (q4_k, q5_k, q6_k).
func (d DType) KQuant() bool { return d == Q4_K || d == Q5_K || d == Q6_K }

// Quantizable reports whether QuantizeRow can write d: every storage type but the
// k-quants, which lmrun reads and computes with but has no quantizer for.
func (d DType) Quantizable() bool { return d.Valid() && !d.KQuant() }

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
	return 0, fmt.Errorf("unknown dtype %q (want f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k)", s)
}

// ErrShape reports a shape that a dtype cannot store or whose size overflows.
var ErrShape = errors.New("invalid tensor shape")

// ByteSize returns the number of bytes a tensor of dtype d and the given shape occupies.
// Block types need the last dimension to be a multiple of their block (Block).
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
	elems, size := d.Block()
	if elems == 0 {
		return 0, fmt.Errorf("unknown dtype %d", uint32(d))
	}
	if shape[len(shape)-1]%elems != 0 {
		return 0, fmt.Errorf("%w: %s needs the last dimension to be a multiple of %d, got %v", ErrShape, d, elems, shape)
	}
	return int64(n/uint64(elems)) * int64(size), nil
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
