//go:build !amd64

package avx512

import (
	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/kernels"
)

// On other architectures the backend is listed (lmrun info shows what a build can do
// where) but never available: its Arch does not match, so Resolve refuses it and New,
// a reference fallback, is never called.
func init() {
	backends.Register(backends.Backend{
		Name:     "avx512",
		Priority: 30,
		Arch:     "amd64",
		Requires: requires,
		New:      func() kernels.Kernels { return kernels.Reference{} },
	})
}
