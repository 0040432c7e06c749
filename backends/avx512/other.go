//go:build !amd64 || purego

package avx512

// Nothing here: without amd64 assembly the backend is not built (on amd64 with purego
// the registry never lists it), and the other backends serve every kernel.
