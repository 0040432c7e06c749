package safetensors

import "github.com/lmrun/lmrun/format"

// The half-precision conversions safetensors' F16 and BF16 tensors need are the file
// format's (format/half.go); these names keep the package's API.

// F16ToF32 converts an IEEE-754 binary16 value to float32 exactly.
func F16ToF32(h uint16) float32 { return format.F16ToF32(h) }

// F32ToF16 converts a float32 to binary16, rounding to nearest with ties to even.
func F32ToF16(f float32) uint16 { return format.F32ToF16(f) }

// BF16ToF32 converts a bfloat16 value to float32 exactly.
func BF16ToF32(h uint16) float32 { return format.BF16ToF32(h) }

// F32ToBF16 converts a float32 to bfloat16, rounding to nearest with ties to even.
func F32ToBF16(f float32) uint16 { return format.F32ToBF16(f) }
