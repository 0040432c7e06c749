//go:build !amd64 || purego

package avx2

// Nothing here: without amd64 assembly the backend is not built, the registry never
// lists it, and the generic backend serves every kernel.
