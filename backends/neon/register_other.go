//go:build !arm64

package neon

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
		Name:     "neon",
		Priority: 20,
		Arch:     "arm64",
		Requires: []cpuid.FeatureID{cpuid.ASIMD},
		New:      func() kernels.Kernels { return kernels.Reference{} },
	})
}
