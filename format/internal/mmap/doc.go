// Package mmap maps files read-only into memory for the readers of package format and
// its subpackages, which use tensor data in place. Where the platform has no mmap, the
// file is read into memory instead.
package mmap
