//go:build !amd64

package avx2

import (
	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/kernels"
)

// On other architectures the backend is listed (lmrun info shows what a build can do
// where) but never available: its Arch does not match, so Resolve refuses it and New,
// a reference fallback, is never called.
func init() {
	backends.Register(backends.Backend{
		Name:     "avx2",
		Priority: 20,
		Arch:     "amd64",
		Requires: []cpuid.FeatureID{cpuid.AVX2, cpuid.FMA3, cpuid.F16C},
		New:      func() kernels.Kernels { return kernels.Reference{} },
	})
}
