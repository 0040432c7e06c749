package kernels

import "github.com/lmrun/lmrun/format"

// Half-precision conversions, the ones the file format defines (format/half.go): F16ToF32
// and BF16ToF32 are exact; F32ToF16 and F32ToBF16 round to nearest with ties to even,
// exactly as ggml does.

// F16ToF32 converts an IEEE-754 binary16 value to float32 exactly.
func F16ToF32(h uint16) float32 { return format.F16ToF32(h) }

// F32ToF16 converts a float32 to binary16, rounding to nearest with ties to even.
func F32ToF16(f float32) uint16 { return format.F32ToF16(f) }

// BF16ToF32 converts a bfloat16 value to float32 exactly.
func BF16ToF32(h uint16) float32 { return format.BF16ToF32(h) }

// F32ToBF16 converts a float32 to bfloat16, rounding to nearest with ties to even.
func F32ToBF16(f float32) uint16 { return format.F32ToBF16(f) }
