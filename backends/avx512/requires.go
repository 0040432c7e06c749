package avx512

import "github.com/klauspost/cpuid/v2"

// requires lists the CPU features the backend needs: avx2's (whose kernels it uses for
// everything but the f32 products) and AVX-512 F, BW and VL.
var requires = []cpuid.FeatureID{cpuid.AVX2, cpuid.FMA3, cpuid.F16C, cpuid.AVX512F, cpuid.AVX512BW, cpuid.AVX512VL}
