//go:build !arm64 || purego

// Package neon is the NEON (Advanced SIMD) backend for arm64. On other architectures,
// and with the purego build tag, it is empty and registers nothing, so the build and the
// generic backend work everywhere.
package neon
