//go:build !amd64 || purego

// Package avx2 is the AVX2+FMA backend for amd64. On other architectures, and with the
// purego build tag, it is empty and registers nothing, so the build and the generic
// backend work everywhere.
package avx2
